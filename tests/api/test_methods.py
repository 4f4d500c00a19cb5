"""Every method behind ``prune(model, inputs, method, sparsity=...)``: exact counts, same
report, honest comparisons on a small trained teacher network."""
import pytest
import torch
from torch import nn

from nettrim import DC, LOBS, METHODS, ADMMSettings, NetTrim, NettrimError, RunOptions, SparseGPT, Threshold, Wanda, prune
from recompute import all_hold

F64 = ADMMSettings(dtype="float64")
QUIET = RunOptions(progress=False)


def teacher_net(seed=0):
    """A ReLU net whose layers have real structure: sparse random weights, 30-40-20-5."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 20), nn.ReLU(),
                        nn.Linear(20, 5)).double()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                mask = torch.rand(m.weight.shape, generator=g) < 0.35
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=torch.float64) * mask
                               + 0.05 * torch.randn(m.weight.shape, generator=g, dtype=torch.float64))
    return net


def inputs(seed=0, P=400):
    return torch.randn(P, 30, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("method, options", [
    ("threshold", {}), ("lobs", {}), ("lobs", {"greedy": False}), ("dc", {}),
    ("nettrim", {"settings": F64}), ("nettrim", {"settings": F64, "margin": None}),
])
def test_each_method_reaches_the_requested_sparsity(method, options):
    net, X = teacher_net(), inputs()
    res = prune(net, X, METHODS[method](**options), sparsity=0.7, run=QUIET)
    rep = res.report
    assert rep.method["name"] == method and len(rep.layers) == 3
    for r in rep.layers:
        k = round(r.total * 0.3)
        if method == "dc":  # lambda search: lands within its tolerance, says where
            assert abs(r.nnz_after - k) <= 0.02 * r.total
            assert r.info["sparsity"] == pytest.approx(1 - r.nnz_after / r.total)
        else:
            assert r.nnz_after == k
    if method == "nettrim":  # refit values: the hinge ball on ReLU layers, every layer exact
        assert [r.certificate.inactive for r in rep.layers] == ["hinge", "hinge", "none"]
        assert all(r.certified for r in rep.layers) and all_hold(net, res.model, X, rep)
    else:  # the rivals make no claim
        assert all(r.certificate is None for r in rep.layers)
    assert [type(m) for m in res.model] == [type(m) for m in net]
    out = res.model(X)
    assert out.shape == (400, 5) and bool(torch.isfinite(out).all())


def test_lobs_fits_better_than_thresholding_at_equal_sparsity():
    net, X = teacher_net(1), inputs(1)
    errors = {m: prune(net, X, m, sparsity=0.8, run=QUIET).report.output_error
              for m in ("threshold", "lobs")}
    assert errors["lobs"] < errors["threshold"]


def test_nettrim_at_a_sparsity_lands_on_the_count_and_measures_its_certificate():
    """Every layer keeps exactly k non-zeros; at a count the claim is the value reached
    ("measured"), which every layer meets, measured again here from the two models alone."""
    net, X = teacher_net(1), inputs(1)
    res = prune(net, X, NetTrim(settings=F64), sparsity=0.6, run=QUIET)
    for r in res.report.layers:
        assert r.nnz_after == round(r.total * 0.4)
        assert r.certified == (r.status == "solved")
        assert r.certificate.rule == "measured"
    assert all(r.certified for r in res.report.layers)
    assert all_hold(net, res.model, X, res.report)


def test_counts_match_another_methods_layers():
    net, X = teacher_net(2), inputs(2)
    nt = prune(net, X, NetTrim(epsilon=0.1, settings=F64), run=QUIET).report
    counts = {r.name: r.nnz_after for r in nt.layers}
    th = prune(net, X, "threshold", counts=counts, run=QUIET).report
    assert {r.name: r.nnz_after for r in th.layers} == counts


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="threshold"), "method 'threshold' needs a target: pass sparsity="),
    (dict(method="lobs", sparsity=1.0), r"sparsity must lie in \(0, 1\), got 1.0"),
    (dict(method="dc", sparsity=0.0), r"sparsity must lie in \(0, 1\), got 0.0"),
    (dict(method="lobs", sparsity=0.5, colour="red"), "^prune\\(\\) has no option 'colour'"),
    (dict(method=NetTrim(), epsilon=0.1), "must be set on the method object, e.g. nettrim.NetTrim\\(epsilon="),
    (dict(method=LOBS(), sparsity=0.5, epsilon=0.1), "LOBS has no option 'epsilon'"),
    (dict(method="threshold", sparsity=0.5, epsilon=0.1), "Threshold has no option 'epsilon'"),
    (dict(method="magic"), "unknown method 'magic'"),
])
def test_bad_requests_get_one_line_errors(kwargs, match):
    with pytest.raises(NettrimError, match=match) as info:
        prune(teacher_net(), inputs(), run=QUIET, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("build, match", [
    (lambda: NetTrim(epsilon=-1), "NetTrim.epsilon must be a finite number > 0, got -1"),
    (lambda: NetTrim(gamma=0.5), "NetTrim.gamma must be a finite number >= 1, got 0.5"),
    (lambda: NetTrim(kappa=0), "NetTrim.kappa must be a finite number > 0 and <= 1, got 0"),
    (lambda: NetTrim(reweight=-1), "NetTrim.reweight must be an integer >= 0, got -1"),
    (lambda: NetTrim(greedy=True), "NetTrim has no option 'greedy'"),
    (lambda: LOBS(damp=-1.0), "LOBS.damp must be a finite number >= 0, got -1.0"),
    (lambda: LOBS(epsilon=0.1), "LOBS has no option 'epsilon'"),
    (lambda: DC(theta=0), "DC.theta must be a finite number > 0, got 0"),
    (lambda: DC(outer=0), "DC.outer must be an integer >= 1, got 0"),
    (lambda: Threshold(keep=3), "Threshold has no option 'keep'"),
    (lambda: ADMMSettings(check_every=0), "ADMMSettings.check_every must be an integer >= 1"),
    (lambda: ADMMSettings(abs_tol=-1e-6), "ADMMSettings.abs_tol must be a finite number > 0"),
    (lambda: ADMMSettings(rel_tol=float("nan")), "ADMMSettings.rel_tol must be a finite number > 0"),
    (lambda: ADMMSettings(relaxation=2.5), "ADMMSettings.relaxation must be a finite number >= 1 and < 2"),
])
def test_method_objects_and_settings_are_validated_when_built(build, match):
    with pytest.raises(NettrimError, match=match) as info:
        build()
    assert "\n" not in str(info.value)


def test_method_objects_are_frozen_and_name_the_registry():
    from dataclasses import FrozenInstanceError

    assert METHODS == {"nettrim": NetTrim, "threshold": Threshold, "dc": DC, "lobs": LOBS,
                       "sparsegpt": SparseGPT, "wanda": Wanda}
    assert all(cls.name == name for name, cls in METHODS.items())
    with pytest.raises(FrozenInstanceError):
        NetTrim().epsilon = 0.3
    assert NetTrim.paper(epsilon=0.2).record()["epsilon"] == 0.2


def test_a_string_and_its_default_object_prune_alike():
    net, X = teacher_net(3), inputs(3)
    a = prune(net, X, "nettrim", run=QUIET).model.state_dict()
    b = prune(net, X, NetTrim(), run=QUIET).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = prune(net, X, "lobs", sparsity=0.5, run=QUIET).model.state_dict()
    d = prune(net, X, LOBS(), sparsity=0.5, run=QUIET).model.state_dict()
    assert all(torch.equal(c[k], d[k]) for k in c)
