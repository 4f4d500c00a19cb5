"""nettrim.prune on whole networks: schemes, guarantees, report, model hygiene, bad input."""
import copy
import re

import pytest
import torch
from torch import nn

from nettrim import ADMMSettings, NetTrim, NettrimError, RunOptions, prune
from recompute import all_hold, layer_checks

F64 = ADMMSettings(dtype="float64")
QUIET = RunOptions(progress=False)


def nt(settings=F64, **options):
    """The papers' program in float64, with ``options`` changed."""
    return NetTrim.paper(settings=settings).replace(**options)


def small_net(seed=0, widths=(20, 30, 15, 4)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


def data(seed=0, P=300, n=20):
    return torch.randn(P, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("mode, per_neuron", [("cascade", False), ("parallel", False),
                                              ("cascade", True), ("parallel", True)])
def test_every_layer_solved_and_bound_holds(mode, per_neuron):
    net, X = small_net(), data()
    before = copy.deepcopy(net.state_dict())
    res = prune(net, X, nt(epsilon=0.05, per_neuron=per_neuron), mode=mode, run=QUIET)
    rep = res.report
    assert [r.status for r in rep.layers] == ["solved"] * 3
    assert rep.nnz_after < rep.nnz_before
    # original untouched; pruned copy has the same classes
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert [type(m) for m in res.model.modules()] == [type(m) for m in net.modules()]
    # the network-level bound (Theorems 1 and 2, general form) holds on the pruning samples
    assert rep.output_error <= rep.bound
    with torch.no_grad():
        assert float((res.model(X) - net(X)).norm()) == pytest.approx(rep.output_error, rel=1e-9)


def test_the_recomputed_claims_catch_a_changed_model():
    """The reference recomputation (tests/recompute.py) the tests lean on: it confirms every
    claim of an honest run, and refutes the one layer whose weights were changed afterwards."""
    net, X = small_net(), data()
    res = prune(net, X, nt(epsilon=0.05), mode="parallel", run=QUIET)
    assert all_hold(net, res.model, X, res.report)
    with torch.no_grad():
        res.model[2].weight.mul_(1.2)
    assert [c.holds for c in layer_checks(net, res.model, X, res.report)] == [True, False, True]
    assert not all_hold(net, res.model, X, res.report)


def test_parallel_layers_satisfy_proposition_1():
    net, X = small_net(1), data(1)
    rep = prune(net, X, nt(epsilon=0.1), mode="parallel", run=QUIET).report
    for r in rep.layers:
        assert r.response_error <= r.certificate.epsilon * (1 + 2 * F64.feasibility_tol)


def test_cascade_uses_gamma_budget():
    net, X = small_net(2), data(2)
    rep = prune(net, X, nt(epsilon=0.05, gamma=1.5), mode="cascade", run=QUIET).report
    assert rep.layers[0].certificate.epsilon == pytest.approx(0.05 * rep.layers[0].target_norm)
    for r in rep.layers[1:]:
        assert r.certificate.epsilon == pytest.approx(1.5 ** 0.5 * r.certificate.gap)
        assert r.discrepancy <= r.certificate.epsilon * (1 + F64.feasibility_tol)


def test_layer_epsilon_floors_prune_later_layers_and_the_bound_holds():
    """Floors raise eps_l above sqrt(gamma) gap_l; the measured cascade recursion still bounds
    the output (and every tolerance used is at least the gamma rule's)."""
    net, X = small_net(3), data(3)
    base = prune(net, X, nt(epsilon=0.05), run=QUIET).report
    floors = {"2": 0.2, "4": 0.1}
    rep = prune(net, X, nt(epsilon=0.05, layer_epsilon=floors), run=QUIET).report
    assert [r.status for r in rep.layers] == ["solved"] * 3
    for r, name in zip(rep.layers[1:], ("2", "4")):
        assert r.certificate.epsilon >= floors[name] * r.target_norm * (1 - 1e-12)
        assert r.certificate.epsilon >= 1.1 ** 0.5 * r.certificate.gap * (1 - 1e-12)
    assert rep.nnz_after < base.nnz_after
    assert rep.output_error <= rep.bound


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_margin_keeps_inactive_units_below_a_fraction_of_their_pre_activation(mode):
    """margin=theta: on the first layer's inactive entries U^T X <= theta W^T X (< 0), the
    original weights stay feasible (fewer zeros than margin 0, never an infeasible layer), and
    the network-level bound still holds (relu(V) is unchanged)."""
    net, X = small_net(5), data(5)
    loose = prune(net, X, nt(epsilon=0.1, margin=0.0), mode=mode, run=QUIET)
    kept = prune(net, X, nt(epsilon=0.1, margin=0.5), mode=mode, run=QUIET)
    assert kept.report.method["margin"] == 0.5
    assert [r.status for r in kept.report.layers] == ["solved"] * 3
    assert kept.report.output_error <= kept.report.bound
    assert kept.report.nnz_after > loose.report.nnz_after
    first_orig, first_new = net[0], kept.model[0]
    with torch.no_grad():
        Z, Zhat = first_orig(X), first_new(X)
    off = Z <= 0
    slack = F64.feasibility_tol * float(Z.norm())
    assert float((Zhat - 0.5 * Z)[off].clamp_min(0).norm()) <= slack
    assert float(Zhat[off].max()) < 0  # a margin below zero, not just zero
    # margin 0 only asks for <= 0: its inactive entries come closer to zero
    with torch.no_grad():
        Zloose = loose.model[0](X)
    assert float(Zloose[off].max()) > float(Zhat[off].max())


def test_margin_with_the_refit_keeps_the_bound():
    net, X = small_net(6), data(6)
    rep = prune(net, X, nt(epsilon=0.1, margin=1.0, refit=True), run=QUIET).report
    assert all(r.certified for r in rep.layers)
    assert rep.layers[0].response_error <= rep.layers[0].certificate.epsilon * (1 + 2 * F64.feasibility_tol)
    assert rep.output_error <= rep.bound


@pytest.mark.parametrize("kwargs, message", [
    (dict(margin=1.5), "NetTrim.margin must be a finite number >= 0 and <= 1 or None, got 1.5"),
    (dict(margin=-0.1), "NetTrim.margin must be a finite number >= 0 and <= 1 or None, got -0.1"),
])
def test_margin_bad_input(kwargs, message):
    with pytest.raises(NettrimError, match=re.escape(message)) as info:
        NetTrim(**kwargs)
    assert "\n" not in str(info.value)


def test_layer_epsilon_with_a_sparsity_target_is_refused():
    with pytest.raises(NettrimError, match="not to a sparsity or counts target"):
        prune(small_net(), data(), NetTrim(layer_epsilon={"2": 0.1}), sparsity=0.5, run=QUIET)


def test_nested_model_and_passthrough_modules():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act, self.drop = nn.Linear(20, 16), nn.ReLU(), nn.Dropout(0.3)

        def forward(self, x):
            return self.drop(self.act(self.fc(x)))

    net = nn.Sequential(nn.Flatten(), Block(), nn.Identity(), nn.Linear(16, 3)).double()
    X = data(3).reshape(300, 4, 5)
    res = prune(net, X, nt(epsilon=0.1), run=QUIET)
    assert [r.name for r in res.report.layers] == ["1.fc", "3"]
    assert [r.relu for r in res.report.layers] == [True, False]


def test_dead_units_are_removed_exactly():
    """Units feeding nothing lose their inputs; constant units fold into the next bias."""
    from nettrim.pruners.cleanup import remove_dead_units

    net, X = small_net(4), data(4)
    first, second = net[0], net[2]
    with torch.no_grad():
        second.weight[:, :5] = 0          # units 0..4 feed nothing
        first.weight[5:8] = 0             # units 5..7 are constant relu(b)
        first.bias[5:8] = torch.tensor([0.5, -0.2, 0.3], dtype=first.bias.dtype)
        before = net(X)
    removed = remove_dead_units(first, second)
    with torch.no_grad():
        after = net(X)
    assert removed == 5 * 21 + 3 * 15 + 3  # 5 rows of (20 weights + bias), 3 columns, 3 biases
    assert torch.allclose(before, after, atol=1e-12)
    assert bool((first.weight[:5] == 0).all()) and bool((second.weight[:, 5:8] == 0).all())


def test_layer_before_another_activation_gets_the_linear_program():
    """A Tanh is passed through: the layer before it is pruned on its pre-activation (relu=False,
    certified), and with no plain ReLU chain there is no network bound."""
    net = nn.Sequential(nn.Linear(20, 10), nn.Tanh(), nn.Linear(10, 2)).double()
    rep = prune(net, data(), NetTrim(epsilon=0.1, settings=F64), run=QUIET).report
    assert [(r.name, r.relu, r.certified) for r in rep.layers] == [("0", False, True), ("2", False, True)]
    assert rep.bound is None


def test_infeasible_kappa_is_reported():
    """A logits layer fed by a lossy pruned network cannot meet a tiny kappa: one line says
    by how much to raise it."""
    with pytest.raises(NettrimError, match="raise kappa to at least"):
        prune(small_net(6), data(6), nt(epsilon=0.3, kappa=1e-3), mode="cascade", run=QUIET)


def test_infeasible_per_neuron_ball_names_the_neuron():
    with pytest.raises(NettrimError, match=r"one ball per neuron: .* neuron \d+ misses by [0-9.e+]+ "
                                           r"times its radius"):
        prune(small_net(6), data(6), nt(epsilon=0.3, kappa=1e-3, per_neuron=True), mode="cascade", run=QUIET)


def test_cascade_per_neuron_radii_keep_the_original_weights_feasible():
    """A later cascade layer split per neuron gets eps_m = sqrt(gamma) gap_m: each neuron's
    discrepancy stays within it, and the radii add up to the layer's cascade eps."""
    net, X = small_net(), data()
    res = prune(net, X, nt(epsilon=0.05, gamma=1.2, per_neuron=True), mode="cascade", run=QUIET)
    for layer in res.report.layers[1:]:
        cert = layer.certificate
        assert cert.epsilon == pytest.approx(1.2 ** 0.5 * cert.gap, rel=1e-6)
        assert len(cert.radii) == layer.shape[0]
        assert sum(r * r for r in cert.radii) ** 0.5 == pytest.approx(cert.epsilon, rel=1e-9)
        assert layer.status == "solved" and layer.certified
    assert all_hold(net, res.model, X, res.report)  # every neuron's ball, recomputed


def test_per_neuron_on_named_layers_only():
    """per_neuron=[names] splits the budget in those layers alone: in parallel mode (independent
    layers) each layer matches the run that splits every layer or none."""
    net, X = small_net(), data()
    run = lambda per: prune(net, X, nt(epsilon=0.1, per_neuron=per), mode="parallel", run=QUIET).model.state_dict()
    every, none, first = run(True), run(False), run(["0"])
    assert not torch.equal(every["0.weight"], none["0.weight"])
    assert torch.equal(first["0.weight"], every["0.weight"])
    assert torch.equal(first["2.weight"], none["2.weight"]) and torch.equal(first["4.weight"], none["4.weight"])
    rep = prune(net, X, nt(epsilon=0.1, per_neuron=["2", "0"]), mode="parallel", run=QUIET).report
    assert rep.method["per_neuron"] == ["2", "0"]


@pytest.mark.parametrize("call, match", [
    (lambda net, X: prune(net, X, NetTrim(epsilon=0), run=QUIET), "NetTrim.epsilon must be a finite number > 0"),
    (lambda net, X: prune(net, X, mode="serial", run=QUIET), "unknown mode 'serial'"),
    (lambda net, X: prune(net, X, "magic", run=QUIET), "unknown method 'magic'"),
    (lambda net, X: prune(net, X, NetTrim(gamma=0.5), run=QUIET), "NetTrim.gamma must be a finite number >= 1"),
    (lambda net, X: prune(net, X, NetTrim(kappa=2.0), run=QUIET), "NetTrim.kappa must be a finite number > 0 and <= 1"),
    (lambda net, X: prune(net, X, NetTrim(layer_epsilon={"7": 0.1}), run=QUIET), "prunable layers: 0, 2, 4"),
    (lambda net, X: prune(net, X, NetTrim(per_neuron=["0", "9"]), run=QUIET), "no prunable layer named 9"),
    (lambda net, X: prune(net, X, run=RunOptions(layers=["0", "8"], progress=False)), "no prunable layer named 8"),
    # method options belong to the method object, run options to RunOptions
    (lambda net, X: prune(net, X, reweight=2, run=QUIET),
     r"^prune\(\) has no option 'reweight': it must be set on the method object, e\.g\. nettrim\.NetTrim\(reweight=\.\.\.\)$"),
    (lambda net, X: prune(net, X, NetTrim(), progress=False),
     r"^prune\(\) has no option 'progress': it is a run option; pass run=nettrim\.RunOptions\(progress=\.\.\.\)$"),
    (lambda net, X: prune(net, X, capture={"max_rows": 100}, run=QUIET), r"^prune\(\) has no option 'capture'; its options:"),
])
def test_bad_arguments(call, match):
    with pytest.raises(NettrimError, match=match) as info:
        call(small_net(), data())
    assert "\n" not in str(info.value)


def test_nan_weights_rejected():
    net = small_net()
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    with pytest.raises(NettrimError, match="parameter '0.weight' contains NaN"):
        prune(net, data(), run=QUIET)


def test_batchnorm_after_conv_is_folded_and_said():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 5)).double().eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
    X = torch.randn(100, 1, 8, 8, dtype=torch.float64)
    res = prune(net, X, nt(epsilon=0.1), run=QUIET)
    assert res.report.run["folded_batchnorm"] == [["0", "1"]]
    assert res.report.layers[0].relu  # conv -> BN -> ReLU is a ReLU layer once folded
    # the result keeps the model's classes: the BN only adds the folded bias back
    assert isinstance(res.model[1], nn.BatchNorm2d) and res.model[0].bias is not None
    assert [k for k in res.model.state_dict()] == [k for k in net.state_dict()]
    with torch.no_grad():
        folded_out = res.model[1](res.model[0](X))
        assert torch.allclose(folded_out, res.model[0](X), atol=1e-9)
    # every position of the conv was used (100 x 36 rows): the claims are recomputed on them all
    assert res.report.layers[0].rows == res.report.layers[0].rows_total == 100 * 36
    assert all_hold(net, res.model, X, res.report)
    assert [r.status for r in res.report.layers] == ["solved", "solved"]


def test_bad_method_options_are_refused_when_built():
    with pytest.raises(NettrimError, match="NetTrim.per_neuron must be True, False or a list of layer names"):
        NetTrim(per_neuron="0")
    with pytest.raises(NettrimError, match=re.escape("NetTrim.layer_epsilon['2'] must be a finite number > 0")):
        NetTrim(layer_epsilon={"2": -1.0})


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_refit_keeps_the_support_and_its_bounds_hold_after_every_layer(mode):
    """Refit layers keep the l1 solve's support (or less), are certified by the hinge ball, and
    the hinge recursion bounds the response after every layer, not only at the output."""
    from nettrim.pruners.bounds import cascade_bound_measured, parallel_bound, spectral_norm

    net, X = small_net(5), data(5)
    settings = ADMMSettings(dtype="float64", max_iterations=10000)
    kw = dict(epsilon=0.2, layer_epsilon={"2": 0.2, "4": 0.2}, settings=settings)
    plain = prune(net, X, nt(**kw), mode=mode, run=QUIET)
    res = prune(net, X, nt(refit=True, **kw), mode=mode, run=QUIET)
    rep = res.report
    assert all(r.certified for r in rep.layers)
    assert [r.certificate.inactive for r in rep.layers] == ["hinge", "hinge", "none"]
    assert [r.certificate.inactive for r in plain.report.layers] == ["halfspace", "halfspace", "none"]
    assert rep.method["refit"] is True
    assert not torch.equal(res.model[0].weight, plain.model[0].weight)
    eps = [r.certificate.epsilon * (1 + 2 * settings.feasibility_tol) for r in rep.layers]
    hinge = [r.certificate.inactive == "hinge" for r in rep.layers]
    for l in range(1, 4):
        if mode == "cascade":
            norms = [spectral_norm(net.get_submodule(r.name).weight) for r in rep.layers[1:l]]
            bound = cascade_bound_measured(eps[:l], [r.certificate.gap for r in rep.layers[:l]], norms, hinge[:l])
        else:
            norms = [spectral_norm(res.model.get_submodule(r.name).weight) for r in rep.layers[:l]]
            bound = parallel_bound(eps[:l], norms)
        assert rep.layers[l - 1].response_error <= bound
    assert rep.output_error <= rep.bound
    assert all_hold(net, res.model, X, rep)
