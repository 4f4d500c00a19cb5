"""``nettrim.api.prune`` end to end on small trained-shape networks: exact counts for every
method, certificates that hold when recomputed from the returned model alone, and Net-Trim's
OBS-started program against SparseGPT on held-out rows."""
import pytest
import torch
from torch import nn

from nettrim import api
from nettrim.errors import NettrimError
from nettrim.methods import METHODS, NetTrim, SparseGPT, Wanda

QUIET = api.RunOptions(progress=False)


def mlp(seed=0, widths=(24, 48, 32, 6)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def inputs(n, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g) @ (torch.randn(dim, dim, generator=g) / dim ** 0.5)


def nonzeros(module):
    return int((module.weight != 0).sum()) + (int((module.bias != 0).sum()) if module.bias is not None else 0)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_keeps_exactly_the_asked_count(name):
    model, x = mlp(), inputs(300, 24)
    result = api.prune(model, x, name, sparsity=0.7, run=QUIET)
    for report in result.report.layers:
        module = result.model.get_submodule(report.name)
        total = module.weight.numel() + module.bias.numel()
        assert nonzeros(module) == report.nnz_after
        if name == "dc":  # DC's lambda is searched to the count within its tolerance
            assert abs(report.nnz_after - round(total * 0.3)) <= METHODS["dc"]().tol * total
        else:
            assert report.nnz_after == round(total * 0.3)
    assert all(nonzeros(m) == m.weight.numel() + m.bias.numel() for m in model if isinstance(m, nn.Linear))


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_certificates_hold_when_recomputed_from_the_returned_model(mode):
    model, x = mlp(1), inputs(400, 24, seed=1)
    result = api.prune(model, x, NetTrim(epsilon=0.3), mode=mode, run=QUIET)
    pruned = result.model
    seen_original, seen_pruned = x, x
    for i, (a, b) in enumerate(zip(model, pruned)):
        if isinstance(a, nn.Linear):
            report = next(r for r in result.report.layers if r.name == str(i))
            source = seen_pruned if mode == "cascade" else seen_original
            target, got = a(seen_original), b(source)
            if report.relu:
                target, got = torch.relu(target), torch.relu(got)
            assert report.certified
            assert float((got - target).detach().norm()) <= report.certificate.limit
            assert report.nnz_after == nonzeros(b) < nonzeros(a)
        seen_original, seen_pruned = a(seen_original), b(seen_pruned)


def test_nettrim_beats_sparsegpt_and_wanda_on_held_out_rows_at_the_same_count():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 32))
    x = inputs(1280, 32, seed=2)
    calibration, held = x[:768], x[768:]
    with torch.no_grad():
        reference = block(held)
        errors = {}
        for method in (NetTrim(support="obs"), SparseGPT(), Wanda()):
            pruned = api.prune(block, calibration, method, sparsity=0.5, run=QUIET).model
            errors[type(method).__name__] = float((pruned(held) - reference).norm() / reference.norm())
    assert errors["NetTrim"] < errors["SparseGPT"] < errors["Wanda"]


def test_bad_calls_get_one_line():
    model, x = mlp(), inputs(50, 24)
    for call in (lambda: api.prune(model, x, "sideways"),
                 lambda: api.prune(model, x, "sparsegpt"),
                 lambda: api.prune(model, x, "wanda", sparsity=1.5),
                 lambda: api.prune(model, x, mode="diagonal"),
                 lambda: api.prune(model, x, counts={"9": 3}, sparsity=0.5),
                 lambda: api.prune(model, x[:, :5], sparsity=0.5),
                 lambda: api.RunOptions(max_memory="lots")):
        with pytest.raises(NettrimError) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("allocation", ["global", "owl"])
@pytest.mark.parametrize("method", [SparseGPT, Wanda])
def test_allocations_keep_the_network_count_and_move_it_between_layers(method, allocation):
    model, x = mlp(3), inputs(400, 24, seed=3)
    uniform = api.prune(model, x, method(), sparsity=0.8, run=QUIET).report
    allocated = api.prune(model, x, method(allocation=allocation), sparsity=0.8, run=QUIET).report
    total = sum(r.total for r in allocated.layers)
    assert abs(allocated.nnz_after - round(0.2 * total)) <= len(allocated.layers)
    assert [r.nnz_after for r in allocated.layers] != [r.nnz_after for r in uniform.layers]


def test_global_allocation_keeps_the_entries_of_largest_relative_cost():
    from nettrim.methods.allocation import global_counts, owl_counts

    costs = {"a": torch.tensor([[5.0, 1.0], [0.5, 4.0]]), "b": torch.tensor([[3.0, 0.1, 0.2]])}
    assert global_counts(costs, sparsity=3 / 7) == {"a": 3, "b": 1}
    scores = {"a": torch.ones(100, 10), "b": torch.cat([torch.ones(990), torch.full((10,), 100.0)]).reshape(100, 10)}
    counts = owl_counts(scores, sparsity=0.5)
    assert counts["b"] > counts["a"]  # more outliers, lower sparsity
    assert abs(sum(counts.values()) - 1000) <= 1


def test_batchnorm_comes_back_in_the_pruned_model_and_computes_what_was_pruned():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 4))
    x = torch.randn(64, 2, 8, 8)
    model.train()
    model(x)  # running statistics
    model.eval()
    result = api.prune(model, x, SparseGPT(), sparsity=0.5, run=QUIET)
    assert isinstance(result.model[1], nn.BatchNorm2d)
    assert set(result.model.state_dict()) == set(model.state_dict())
    with torch.no_grad():
        error = float((result.model(x) - model(x)).norm())
    assert abs(error - result.report.output_error) <= 1e-3 * max(result.report.output_norm, 1)
