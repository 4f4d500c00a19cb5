"""trim_layer reaches the convex optimum (cvxpy) and returns checked, feasible answers."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from nettrim import NettrimError
from nettrim.layer import ADMMSettings, trim_layer
from nettrim.layer.reference import solve_reference

F64 = ADMMSettings(dtype=torch.float64)


def teacher(seed, P=150, N=25, M=5, density=0.4):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(P, N, generator=g, dtype=torch.float64)
    W = torch.randn(M, N, generator=g, dtype=torch.float64) * (torch.rand(M, N, generator=g) < density)
    b = 0.1 * torch.randn(M, generator=g, dtype=torch.float64)
    return X, X @ W.T + b


def l1(res):
    return float(res.weight.abs().sum() + (res.bias.abs().sum() if res.bias is not None else 0))


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("per_neuron", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_admm_matches_cvxpy(relu, per_neuron, seed):
    X, Z = teacher(seed)
    Y = torch.relu(Z) if relu else Z
    eps = 0.1 * float(Y.norm())
    res = trim_layer(X, Y, eps, relu=relu, per_neuron=per_neuron, settings=F64)
    ref = solve_reference(X, Y, eps, relu=relu, per_neuron=per_neuron)
    assert res.status == "solved"
    assert abs(l1(res) - np.abs(ref).sum()) <= 2e-3 * np.abs(ref).sum()
    assert res.discrepancy <= eps * (1 + res.tolerance) + 1e-9


@pytest.mark.parametrize("per_neuron", [False, True])
def test_proposition_1_holds(per_neuron):
    """Any feasible U with V = 0 has ||relu(U^T X) - Y||_F <= eps (up to the stated tolerance)."""
    X, Z = teacher(3, P=300, N=40, M=8)
    Y = torch.relu(Z)
    for g in (0.02, 0.1, 0.3):
        eps = g * float(Y.norm())
        res = trim_layer(X, Y, eps, per_neuron=per_neuron, settings=F64)
        out = torch.relu(X @ res.weight.T + res.bias)
        assert res.status == "solved"
        assert float((out - Y).norm()) <= eps * (1 + 2 * res.tolerance)


def test_float32_reaches_the_same_optimum():
    X, Z = teacher(4)
    Y = torch.relu(Z)
    eps = 0.05 * float(Y.norm())
    r64 = trim_layer(X, Y, eps, settings=F64)
    r32 = trim_layer(X.float(), Y.float(), eps)
    assert r32.status == "solved" and r32.weight.dtype == torch.float32
    assert abs(l1(r32) - l1(r64)) <= 5e-3 * l1(r64)


def test_slack_V_is_respected():
    X, Z = teacher(5)
    Y = torch.relu(Z)
    V = Z + 0.5  # cascade-style slack: the original weights are feasible
    res = trim_layer(X, Y, 0.05 * float(Y.norm()), V=V, settings=F64)
    out = X @ res.weight.T + res.bias
    off = Y <= 0
    assert res.status == "solved"
    assert float((out - V)[off].clamp_min(0).max()) == pytest.approx(res.max_violation, abs=1e-9)
    assert res.max_violation <= 1e-3 * float(Y.norm())


def test_no_bias_and_exact_zeros():
    X, Z = teacher(6)
    Y = torch.relu(Z)
    res = trim_layer(X, Y, 0.1 * float(Y.norm()), bias=False, settings=F64)
    assert res.bias is None and res.weight.shape == (5, 25)
    assert res.nnz == int((res.weight != 0).sum()) < res.weight.numel()


def test_zero_features_get_zero_weights():
    X, _ = teacher(7)
    X[:, :3] = 0
    Y = torch.relu(X @ torch.randn(25, 5, generator=torch.Generator().manual_seed(7), dtype=X.dtype))
    res = trim_layer(X, Y, 0.1 * float(Y.norm()), settings=F64)
    assert res.status == "solved" and bool((res.weight[:, :3] == 0).all())


def test_reweighting_is_sparser_and_feasible():
    X, Z = teacher(8, P=200, N=40, M=6, density=0.3)
    Y = torch.relu(Z)
    eps = 0.1 * float(Y.norm())
    plain = trim_layer(X, Y, eps, settings=F64)
    rw = trim_layer(X, Y, eps, reweight=2, settings=F64)
    assert rw.status == "solved" and rw.discrepancy <= eps * (1 + rw.tolerance)
    assert rw.nnz <= plain.nnz


def test_loose_reweighting_rounds_keep_the_answer_checked():
    """Looser intermediate rounds cost fewer iterations; the last solve is still held to
    rel_tol and checked, and lands on a support of about the same size."""
    X, Z = teacher(8, P=200, N=40, M=6, density=0.3)
    Y = torch.relu(Z)
    eps = 0.1 * float(Y.norm())
    exact = trim_layer(X, Y, eps, reweight=3, settings=replace(F64, support_rel_tol=None))
    loose = trim_layer(X, Y, eps, reweight=3, settings=replace(F64, support_rel_tol=1e-2))
    assert loose.status == "solved" and loose.discrepancy <= eps * (1 + loose.tolerance)
    assert loose.iterations <= exact.iterations
    assert abs(loose.nnz - exact.nnz) <= 0.1 * exact.nnz


def test_infeasible_last_layer_is_reported():
    g = torch.Generator().manual_seed(9)
    X = torch.randn(100, 10, generator=g, dtype=torch.float64)
    Y = torch.randn(100, 3, generator=g, dtype=torch.float64)  # not a linear function of X
    res = trim_layer(X, Y, 1e-3 * float(Y.norm()), relu=False)
    assert res.status == "infeasible" and res.discrepancy > 1e-3 * float(Y.norm())


def test_given_per_neuron_radii_are_met_neuron_by_neuron():
    """epsilon as an (M,) tensor of radii: the split of a float eps, given explicitly, solves
    the same program; uneven radii bound each neuron's discrepancy."""
    from nettrim.layer import split_budget

    X, Z = teacher(5)
    Y = torch.relu(Z)
    eps = 0.1 * float(Y.norm())
    same = trim_layer(X, Y, split_budget(eps, Y, Y > 0), per_neuron=True, settings=F64)
    split = trim_layer(X, Y, eps, per_neuron=True, settings=F64)
    torch.testing.assert_close(same.weight, split.weight)
    assert same.epsilon == pytest.approx(eps)
    radii = torch.tensor([0.02, 0.05, 0.1, 0.2, 0.3], dtype=torch.float64) * (Y * (Y > 0)).norm(dim=0)
    res = trim_layer(X, Y, radii, per_neuron=True, settings=F64)
    assert res.status == "solved"
    assert bool((res.per_neuron_discrepancy.double() <= radii * (1 + res.tolerance) + 1e-9).all())


@pytest.mark.parametrize("radii, per_neuron, match", [
    (torch.ones(2), False, "needs per_neuron=True"),
    (torch.ones(3), True, r"shape \(M,\) = \(2,\)"),
    (torch.tensor([1.0, -1.0]), True, ">= 0"),
])
def test_bad_radii_get_one_line_error(radii, per_neuron, match):
    with pytest.raises(NettrimError, match=match):
        trim_layer(torch.randn(10, 4), torch.rand(10, 2), radii, per_neuron=per_neuron)


@pytest.mark.parametrize("bad, match", [
    (dict(epsilon=0.0), "epsilon"),
    (dict(epsilon=-1.0), "epsilon"),
    (dict(epsilon=float("nan")), "epsilon"),
    (dict(Y=torch.ones(7, 2)), "samples"),
    (dict(X=torch.full((10, 4), float("nan"))), "NaN"),
    (dict(Y=-torch.ones(10, 2)), "negative"),
    (dict(V=torch.zeros(3, 3)), "V must have"),
    (dict(X=torch.ones(10)), "2-D"),
])
def test_bad_input_gets_one_line_error(bad, match):
    args = dict(X=torch.randn(10, 4), Y=torch.rand(10, 2), epsilon=0.1)
    args.update(bad)
    V = args.pop("V", None)
    with pytest.raises(NettrimError, match=match) as info:
        trim_layer(args["X"], args["Y"], args["epsilon"], V=V)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("per_neuron", [False, True])
def test_refit_keeps_the_support_fits_better_and_stays_in_the_hinge_ball(relu, per_neuron):
    X, Z = teacher(13, P=300, N=40, M=8, density=0.3)
    Y = torch.relu(Z) if relu else Z
    V = Z + 0.2 if relu else None  # cascade-style slack: the inequalities can bind
    eps = 0.2 * float(Y.norm())
    plain = trim_layer(X, Y, eps, V=V, relu=relu, per_neuron=per_neuron,
                       settings=replace(F64, support_rel_tol=None))
    fit = trim_layer(X, Y, eps, V=V, relu=relu, per_neuron=per_neuron, refit=True, settings=F64)
    assert fit.within and plain.within
    assert abs(fit.nnz - plain.nnz) <= 0.1 * plain.nnz  # a support from looser solves, same size
    assert (fit.discrepancy ** 2 + fit.hinge_residual ** 2) ** 0.5 <= eps * (1 + fit.tolerance)
    assert fit.discrepancy < 0.8 * plain.discrepancy  # the l1 shrinkage is undone


def test_refit_relu_layer_keeps_proposition_1():
    X, Z = teacher(12, P=300, N=40, M=8)
    Y = torch.relu(Z)
    eps = 0.15 * float(Y.norm())
    res = trim_layer(X, Y, eps, refit=True, settings=F64)
    out = torch.relu(X @ res.weight.T + res.bias)
    assert float((out - Y).norm()) <= (res.discrepancy ** 2 + res.hinge_residual ** 2) ** 0.5 * (1 + 1e-9)
    assert float((out - Y).norm()) <= eps * (1 + res.tolerance)


@pytest.mark.parametrize("rows", [100, 150])
def test_a_support_chosen_on_fewer_rows_is_refit_and_measured_on_all(rows):
    X, Z = teacher(14, P=400, N=30, M=6, density=0.3)
    Y = torch.relu(Z)
    eps = 0.2 * float(Y.norm())
    res = trim_layer(X, Y, eps, refit=True, solve_rows=rows, settings=F64)
    assert res.within  # measured on all 400 rows
    out = torch.relu(X @ res.weight.T + res.bias)
    assert float((out - Y).norm()) <= eps * (1 + res.tolerance)


@pytest.mark.parametrize("per_neuron", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_hinge_program_matches_cvxpy(per_neuron, seed):
    X, Z = teacher(seed)
    Y = torch.relu(Z)
    eps = 0.1 * float(Y.norm())
    res = trim_layer(X, Y, eps, per_neuron=per_neuron, hinge=True, settings=F64)
    ref = solve_reference(X, Y, eps, per_neuron=per_neuron, hinge=True)
    assert res.status == "solved"
    assert abs(l1(res) - np.abs(ref).sum()) <= 2e-3 * np.abs(ref).sum()
    assert (res.discrepancy ** 2 + res.hinge_residual ** 2) ** 0.5 <= eps * (1 + res.tolerance) + 1e-9


def test_hinge_program_keeps_proposition_1_and_is_sparser():
    """The hinge program's feasible set contains the exact one's: never a larger l1 optimum,
    and ||relu(U^T X) - Y||_F <= eps still holds (V = 0)."""
    X, Z = teacher(3, P=300, N=40, M=8)
    Y = torch.relu(Z)
    for g in (0.05, 0.2, 0.4):
        eps = g * float(Y.norm())
        exact = trim_layer(X, Y, eps, settings=F64)
        soft = trim_layer(X, Y, eps, hinge=True,
                          settings=ADMMSettings(dtype=torch.float64, max_iterations=10000))
        assert soft.status == "solved"
        out = torch.relu(X @ soft.weight.T + soft.bias)
        assert float((out - Y).norm()) <= eps * (1 + 2 * soft.tolerance)
        assert l1(soft) <= l1(exact) * (1 + 2e-3)


@pytest.mark.parametrize("cap", [10, 40, 3000])
def test_within_is_the_measured_check_whatever_the_status(cap):
    """``within`` reports whether the returned weights meet the constraints, also when ADMM
    stopped at its cap; ``solved`` implies it."""
    X, Z = teacher(4)
    Y = torch.relu(Z)
    eps = 0.1 * float(Y.norm())
    res = trim_layer(X, Y, eps, settings=ADMMSettings(dtype=torch.float64, max_iterations=cap))
    out = X @ res.weight.T + res.bias
    disc = float(((out - Y) * (Y > 0)).norm())
    excess = float((out.clamp_min(0) * (Y <= 0)).norm())
    floor = 1e-6 * float(Y.norm())  # the check's absolute floor
    holds = disc <= eps * (1 + res.tolerance) + floor and excess <= res.tolerance * eps + floor
    assert res.within == holds
    assert res.status != "solved" or res.within
    if cap == 3000:
        assert res.status == "solved"


@pytest.mark.parametrize("per_neuron", [False, True])
def test_compressed_rows_keep_every_ball(per_neuron):
    """A linear-program layer solved on R (A = QR) keeps, for every U, the slack of its ball:
    ||A U - Y||^2 - eps^2 = ||R U - Q^T Y||^2 - eps'^2 (targets off the range of A too)."""
    from nettrim.layer.api import compress_rows
    from nettrim.layer.problem import LayerProblem

    X, Z = teacher(5, P=400, N=30, M=6)
    Y = Z + 0.05 * torch.randn(Z.shape, generator=torch.Generator().manual_seed(1), dtype=Z.dtype)
    A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    eps = (0.2 * Y.norm(dim=0)) if per_neuron else (0.2 * Y.norm()).reshape(1)
    big = LayerProblem(A, Y, torch.zeros_like(Y), eps, relu=False, bias=True, per_neuron=per_neuron)
    small = compress_rows(big)
    assert small.A.shape == (31, 31) and small.Y.shape == (31, 6)
    for seed in range(3):
        U = torch.randn(31, 6, generator=torch.Generator().manual_seed(seed), dtype=X.dtype)
        slack = lambda p: p.discrepancy(U).square().sum() if not per_neuron else p.discrepancy(U).square()
        assert torch.allclose(slack(big) - big.eps.square(), slack(small) - small.eps.square(),
                              rtol=1e-9, atol=1e-8 * float(Y.norm()) ** 2)
    relu = replace(big, relu=True)
    assert compress_rows(relu) is relu  # the ReLU program's constraints are per row
