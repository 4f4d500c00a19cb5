"""Net-Trim on conv nets through the network driver (patch form of Conv2d layers)."""

import pytest
import torch
from torch import nn

import nettrim
from nettrim.capture import fold_batchnorm
from nettrim.layer import ADMMSettings
from nettrim.pruners import run_scheme
from nettrim.pruners.nettrim import NetTrimMethod


def _net(bn: bool = False):
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1)] + ([nn.BatchNorm2d(4)] if bn else []) + [
        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, stride=1, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 16, 16), nn.ReLU(), nn.Linear(16, 3)]
    return nn.Sequential(*layers).eval()


def _inputs(n=48):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


class Recorder:
    """Wraps a layer method and keeps each job (to check the bounds afterwards)."""

    def __init__(self, method):
        self.method, self.jobs = method, {}

    def __call__(self, job):
        self.jobs[job.spec.name] = job
        return self.method(job)


def _check(result, rec, epsilon, mode, tol):
    rep = result.report
    assert [r.status for r in rep.layers] == ["solved"] * 4
    assert [r.kind for r in rep.layers] == ["conv2d", "conv2d", "linear", "linear"]
    for r in rep.layers:
        job = rec.jobs[r.name]
        if mode == "parallel" or job.first:
            # Proposition 1 (V = 0): ||relu(U^T X) - Y|| <= eps
            assert r.response_error <= r.epsilon * (1 + 2 * tol)
        elif job.spec.relu:
            # cascade (V = W^T Xhat): off Omega 0 <= relu(U^T Xhat) <= relu(V), so
            # ||relu(U^T Xhat) - Y||^2 <= eps^2 + ||relu(V)_{Omega^c}||^2
            off = float((torch.relu(job.Z) * ~job.active).norm())
            assert r.response_error ** 2 <= (r.epsilon * (1 + 2 * tol)) ** 2 + off ** 2
        else:
            assert r.response_error <= r.epsilon * (1 + 2 * tol)
    model = result.model
    assert model[0].weight.shape == (4, 1, 3, 3) and model[3].weight.shape == (6, 4, 3, 3)
    out = model(_inputs(5))
    assert out.shape == (5, 3) and bool(torch.isfinite(out).all())
    assert rep.nnz_after < rep.nnz_before


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_prune_conv_net_all_positions(mode):
    net, x = _net(), _inputs()
    rec = Recorder(NetTrimMethod(mode=mode, epsilon=0.1))
    res = run_scheme(net, x, rec, mode=mode, method_name="nettrim", settings={}, progress=False)
    _check(res, rec, 0.1, mode, ADMMSettings().feasibility_tol)
    samples = [r.samples for r in res.report.layers]
    assert samples == [48 * 64, 48 * 16, 48, 48]  # every position (budget far above)


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_prune_conv_net_with_row_budget(mode):
    net, x = _net(), _inputs()
    rec = Recorder(NetTrimMethod(mode=mode, epsilon=0.1))
    res = run_scheme(net, x, rec, mode=mode, method_name="nettrim", settings={}, progress=False,
                     capture=dict(max_rows=700, seed=0))
    _check(res, rec, 0.1, mode, ADMMSettings().feasibility_tol)
    assert [r.samples for r in res.report.layers] == [700, 700, 48, 48]


def test_public_prune_on_conv_net():
    res = nettrim.prune(_net(), _inputs(), epsilon=0.1, progress=False)
    assert all(r.certified for r in res.report.layers)
    assert res.model[0].weight.shape == (4, 1, 3, 3)
    assert [r.shape for r in res.report.layers][:2] == [[4, 1, 3, 3], [6, 4, 3, 3]]
    assert res.report.layers[0].info["images"] == 48


def test_public_prune_passes_the_capture_budget():
    res = nettrim.prune(_net(), _inputs(), epsilon=0.1, progress=False,
                        capture={"max_rows": 500, "seed": 1})
    assert [r.samples for r in res.report.layers] == [500, 500, 48, 48]
    assert res.report.settings["capture"] == {"max_rows": 500, "seed": 1}


def test_prune_after_folding_batchnorm():
    net = _net(bn=True)
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
    folded, pairs = fold_batchnorm(net)
    assert pairs == [("0", "1")]
    res = nettrim.prune(folded, _inputs(), epsilon=0.1, progress=False)
    assert [r.relu for r in res.report.layers] == [True, True, True, False]
    assert all(r.certified for r in res.report.layers)
    assert isinstance(res.model[1], nn.Identity)
