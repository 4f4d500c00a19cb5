"""Net-Trim on conv nets through ``nettrim.prune`` (patch form of Conv2d layers): every layer
solved, the response bounds of Proposition 1 and of the cascade, every position or a row
budget, BatchNorm folded first."""

import pytest
import torch
from torch import nn

import nettrim
from nettrim import NetTrim, RunOptions
from nettrim.graph.batchnorm import fold_batchnorm
from nettrim.graph.model import ModelGraph
from recompute import all_hold, inactive_response

QUIET = RunOptions(progress=False)
TOL = nettrim.ADMMSettings().feasibility_tol
SOLVE = NetTrim(epsilon=0.1)


def _net(bn: bool = False):
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1)] + ([nn.BatchNorm2d(4)] if bn else []) + [
        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, stride=1, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 16, 16), nn.ReLU(), nn.Linear(16, 3)]
    return nn.Sequential(*layers).eval()


def _inputs(n=48):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _check(net, x, result, mode, every_position):
    """Every layer solved and certified; the response bounds: Proposition 1 (parallel, the
    first layer, a linear layer), and for a later cascade ReLU layer, whose inactive entries
    may rise to relu(W^T Xhat) (the hinge ball charges the excess to eps),
    ||relu(U^T Xhat) - Y|| <= eps' + ||relu(W^T Xhat)_{Omega^c}|| (checked where every position
    was used, the only case where r is recomputed on the layer's own rows)."""
    rep = result.report
    # every layer certified; a layer whose support-choosing l1 solve stopped at the iteration
    # cap (the cascade's second conv: its eps = sqrt(gamma) gap ball takes ~30,000 ADMM
    # iterations to converge) says max_iterations, its refit values certified all the same
    assert all(r.status in ("solved", "max_iterations") for r in rep.layers)
    assert mode == "cascade" or [r.status for r in rep.layers] == ["solved"] * 4
    assert [r.kind for r in rep.layers] == ["conv2d", "conv2d", "linear", "linear"]
    assert all(r.certified for r in rep.layers)
    for i, r in enumerate(rep.layers):
        eps = r.certificate.epsilon * (1 + 2 * TOL)
        if mode == "parallel" or i == 0 or not r.relu:
            assert r.response_error <= eps
        elif every_position:
            assert r.response_error <= eps + inactive_response(net, result.model, x, r.name)
    model = result.model
    assert model[0].weight.shape == (4, 1, 3, 3) and model[3].weight.shape == (6, 4, 3, 3)
    out = model(_inputs(5))
    assert out.shape == (5, 3) and bool(torch.isfinite(out).all())
    assert rep.nnz_after < rep.nnz_before


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_prune_conv_net_all_positions(mode):
    net, x = _net(), _inputs()
    res = nettrim.prune(net, x, SOLVE, mode=mode, run=QUIET)
    _check(net, x, res, mode, every_position=True)
    assert [r.rows for r in res.report.layers] == [48 * 64, 48 * 16, 48, 48]  # every position
    assert [r.rows_total for r in res.report.layers] == [48 * 64, 48 * 16, 48, 48]
    assert [r.shape for r in res.report.layers][:2] == [[4, 1, 3, 3], [6, 4, 3, 3]]
    assert res.report.run["inputs"] == 48
    assert all_hold(net, res.model, x, res.report)  # the certificates, recomputed on every row


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_prune_conv_net_with_row_budget(mode):
    net, x = _net(), _inputs()
    res = nettrim.prune(net, x, SOLVE, mode=mode, run=RunOptions(max_rows=700, seed=1, progress=False))
    _check(net, x, res, mode, every_position=False)
    assert [r.rows for r in res.report.layers] == [700, 700, 48, 48]
    assert [r.rows_total for r in res.report.layers] == [48 * 64, 48 * 16, 48, 48]
    options = res.report.run["options"]
    assert (options["max_rows"], options["seed"]) == (700, 1)


def test_prune_after_folding_batchnorm():
    net = _net(bn=True)
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
    pairs = ModelGraph.build(net, _inputs(2)).bn_pairs
    assert pairs == [("0", "1")]
    folded = fold_batchnorm(net, pairs)
    with torch.no_grad():
        torch.testing.assert_close(folded(_inputs()), net(_inputs()), rtol=1e-5, atol=1e-5)
    res = nettrim.prune(folded, _inputs(), NetTrim(epsilon=0.1), run=QUIET)
    assert [r.relu for r in res.report.layers] == [True, True, True, False]
    assert all(r.certified for r in res.report.layers)
    assert isinstance(res.model[1], nn.Identity)
    # pruning the model itself folds the same pair, prunes the same layers, and gives the BN back
    # (in parallel: the fold is the same, the run shorter)
    direct = nettrim.prune(net, _inputs(), NetTrim(epsilon=0.1), mode="parallel", run=QUIET)
    assert direct.report.run["folded_batchnorm"] == [["0", "1"]]
    assert [r.relu for r in direct.report.layers] == [True, True, True, False]
    assert isinstance(direct.model[1], nn.BatchNorm2d)
    assert all_hold(net, direct.model, _inputs(), direct.report)
