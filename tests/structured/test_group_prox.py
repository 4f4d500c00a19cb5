"""The group-l1 program (structured Net-Trim): its ADMM prox is the exact prox, ADMM reaches the
cvxpy optimum of the group-lasso layer program, and groups are zero as a whole."""
import numpy as np
import pytest
import torch

from nettrim.layer import ADMMSettings, trim_layer
from nettrim.layer.admm import group_soft_threshold
from nettrim.layer.reference import solve_reference

PRECISE = ADMMSettings(dtype=torch.float64, rel_tol=1e-7, abs_tol=1e-10, max_iterations=60000)


def test_group_soft_threshold_is_the_prox_of_the_group_norm():
    """argmin_W sum_g t_g ||W_g||_F + 1/2 ||W - Z||_F^2, solved by cvxpy, equals the closed form;
    the bias row (group -1) is left as it is."""
    cp = pytest.importorskip("cvxpy")
    g = torch.Generator().manual_seed(1)
    Z = torch.randn(7, 4, dtype=torch.float64, generator=g)
    groups = torch.tensor([0, 0, 1, 2, 2, 2, -1])
    t = torch.tensor([0.5, 3.0, 1.2], dtype=torch.float64)  # group 1 is zeroed: ||Z_1|| < 3
    got = group_soft_threshold(Z, groups, t)
    W = cp.Variable((7, 4))
    penalty = sum(float(t[k]) * cp.norm(W[np.flatnonzero(groups.numpy() == k), :], "fro") for k in range(3))
    cp.Problem(cp.Minimize(penalty + 0.5 * cp.sum_squares(W - Z.numpy()))).solve(solver="CLARABEL")
    np.testing.assert_allclose(got.numpy(), W.value, atol=1e-6)
    assert bool((got[2] == 0).all()) and torch.equal(got[6], Z[6])
    assert bool((got[groups == 0] != 0).all()) and bool((got[groups == 2] != 0).all())


def _layer(seed=0, P=160, N=12, M=5):
    """A ReLU layer whose target reads only some of its inputs."""
    g = torch.Generator().manual_seed(seed)
    X = torch.relu(torch.randn(P, N, dtype=torch.float64, generator=g))
    W = torch.randn(M, N, dtype=torch.float64, generator=g)
    W[:, 6:] *= 0.05  # inputs 6.. matter little: the group program can drop them
    b = 0.1 * torch.randn(M, dtype=torch.float64, generator=g)
    return X, torch.relu(X @ W.T + b)


@pytest.mark.parametrize("per_neuron, rel", [(False, 0.2), (True, 0.5)])
def test_admm_reaches_the_cvxpy_optimum_of_the_group_program(per_neuron, rel):
    X, Y = _layer()
    groups = torch.arange(12) // 2  # six groups of two inputs
    eps = rel * float(Y.norm())
    res = trim_layer(X, Y, eps, groups=groups, per_neuron=per_neuron, settings=PRECISE)
    assert res.within
    U = torch.cat([res.weight.T, res.bias[None]]).numpy()
    ref = solve_reference(X, Y, eps, groups=groups, per_neuron=per_neuron)
    norms = lambda U: np.array([np.linalg.norm(U[:-1][groups.numpy() == k]) for k in range(6)])
    objective = lambda U: float(np.sqrt(2) * norms(U).sum())
    assert objective(U) == pytest.approx(objective(ref), rel=1e-5)
    np.testing.assert_allclose(U, ref, atol=1e-4 * np.abs(ref).max())
    zero = norms(ref) < 1e-6 * norms(ref).max()
    assert zero.any() and not zero.all()  # the instance does drop some groups
    np.testing.assert_array_equal(norms(U) == 0, zero)  # ADMM's zeros are exact, the same groups


@pytest.mark.parametrize("options", [dict(), dict(reweight=2, refit=True), dict(reweight=1, per_neuron=True)])
def test_groups_are_zero_as_a_whole(options):
    """Every group of rows of U is zero in every neuron, or non-zero: the same input unit is
    dropped by the whole layer, also after reweighting and the refit on the support."""
    X, Y = _layer(seed=3, P=300, N=16, M=6)
    groups = torch.arange(16) // 4
    res = trim_layer(X.float(), Y.float(), 0.2 * float(Y.norm()), groups=groups, **options)
    assert res.within
    W = res.weight
    for k in range(4):
        block = W[:, groups == k]
        assert bool((block == 0).all()) or bool((block.abs().sum(1) > 0).all()), k
    assert bool((res.bias != 0).all())  # the bias is in no group
    plain = trim_layer(X.float(), Y.float(), 0.2 * float(Y.norm()), **options)
    assert int((W.abs().sum(0) == 0).sum()) >= int((plain.weight.abs().sum(0) == 0).sum())


# -- the same program on the new core: program.penalty's prox, solvers.admm and solvers.l1 -------------

def _problem(X, Y, eps, inactive="halfspace"):
    from nettrim.program import Constraint, LayerProblem
    from nettrim.program.stats import stats_of_rows, with_ones

    U0 = torch.zeros(X.shape[1] + 1, Y.shape[1], dtype=X.dtype)
    return LayerProblem(stats_of_rows(with_ones(X), Y, bias=True), Constraint(torch.tensor([eps]), False, inactive),
                        U0, relu=True, theta=None)


def test_the_core_group_prox_is_the_closed_form():
    from nettrim.program.penalty import Penalty, group_soft_threshold as core

    g = torch.Generator().manual_seed(2)
    Z = torch.randn(9, 3, dtype=torch.float64, generator=g)
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, -1])
    t = torch.tensor([0.4, 5.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(core(Z, groups, t), group_soft_threshold(Z, groups, t))
    prox = Penalty(groups=groups, group_weights=t).prox(Z, torch.tensor([2.0], dtype=torch.float64))
    torch.testing.assert_close(prox, group_soft_threshold(Z, groups, 2 * t))  # step scales every t_g


def test_core_admm_reaches_the_cvxpy_optimum_of_the_group_program():
    from nettrim.solvers.admm import ADMMSettings as CoreSettings, solve
    from nettrim.solvers.l1 import group_penalty

    X, Y = _layer()
    groups = torch.arange(12) // 2
    eps = 0.2 * float(Y.norm())
    problem = _problem(X, Y, eps)
    exact = CoreSettings(dtype="float64", rel_tol=1e-7, abs_tol=1e-10, max_iterations=60000)
    out = solve(problem, exact, penalty=group_penalty(groups, bias=True))
    U = out.U.double().numpy()
    assert problem.certified(out.U)
    ref = solve_reference(X, Y, eps, groups=groups)
    norms = lambda U: np.array([np.linalg.norm(U[:-1][groups.numpy() == k]) for k in range(6)])
    assert norms(U).sum() == pytest.approx(norms(ref).sum(), rel=1e-5)
    zero = norms(ref) < 1e-6 * norms(ref).max()
    assert zero.any() and not zero.all()
    np.testing.assert_array_equal(norms(U) == 0, zero)


@pytest.mark.parametrize("rounds, refit_on", [(0, None), (2, "hinge")])
def test_core_groups_are_zero_as_a_whole(rounds, refit_on):
    from nettrim.solvers.admm import ADMMSettings as CoreSettings
    from nettrim.solvers.l1 import group_penalty, l1_support

    X, Y = _layer(seed=3, P=300, N=16, M=6)
    groups = torch.arange(16) // 4
    eps = 0.2 * float(Y.norm())
    problem = _problem(X.float(), Y.float(), eps)
    out = l1_support(problem, CoreSettings(), rounds=rounds, penalty=group_penalty(groups, bias=True),
                     refit_on=None if refit_on is None else _problem(X.float(), Y.float(), eps, refit_on))
    W = out.U[:-1]
    for k in range(4):
        block = W[groups == k]
        assert bool((block == 0).all()) or bool((block.abs().sum(0) > 0).all()), k
    assert bool((W.abs().sum(1) == 0).any())  # some input unit dropped by every neuron
    assert bool((out.U[-1] != 0).all())  # the bias is in no group
