"""The layer program built from streamed statistics, solved by ADMM, checked against cvxpy:
the ReLU program on its held rows, the linear program on its Gram statistics alone."""
import pytest
import torch

from nettrim.layer.reference import solve_reference
from nettrim.program.constraint import Constraint
from nettrim.program.problem import LayerProblem, slack
from nettrim.program.stats import StatsBuilder, stats_of_rows, with_ones
from nettrim.solvers.admm import ADMMSettings, solve
from nettrim.status import Status

EXACT = ADMMSettings(dtype="float64", rel_tol=1e-4, abs_tol=1e-8, max_iterations=20000)


def layer(seed, P=160, N=12, M=6):
    """A random layer with correlated inputs: X (P, N), U0 (N + 1, M), pre-activation Z."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(P, N, generator=g, dtype=torch.float64) @ torch.randn(N, N, generator=g, dtype=torch.float64)
    U0 = torch.randn(N + 1, M, generator=g, dtype=torch.float64)
    return X, U0, with_ones(X) @ U0


def test_streamed_statistics_equal_those_of_all_rows_and_hold_no_rows():
    X, U0, Z = layer(0, P=1000)
    built = StatsBuilder(bias=True, hold=False, dtype=torch.float64)
    for s in range(0, 1000, 96):
        built.add(X[s:s + 96], Z[s:s + 96])
    streamed, whole = built.finish(), stats_of_rows(with_ones(X), Z, bias=True)
    assert streamed.A is None and streamed.Y is None and not streamed.held
    for name in ("gram", "cross"):
        torch.testing.assert_close(getattr(streamed, name), getattr(whole, name))
    assert streamed.rows_total == 1000 and streamed.check.rows == 125
    torch.testing.assert_close(streamed.target_sq, Z.square().sum(0))


@pytest.mark.parametrize("seed", [0, 1])
def test_relu_program_reaches_the_cvxpy_optimum_and_is_certified(seed):
    X, U0, Z = layer(seed)
    Y = torch.relu(Z)
    eps = 0.2 * float(Y.norm())
    stats = stats_of_rows(with_ones(X), Y, bias=True)
    problem = LayerProblem(stats, Constraint(torch.tensor([eps]), False, "halfspace"), U0, relu=True, theta=1.0)
    out = solve(problem, EXACT)
    reference = torch.from_numpy(solve_reference(X, Y, eps, V=slack(Z, 1.0), relu=True, bias=True))
    assert out.info.status is Status.SOLVED
    assert problem.certified(out.U)
    assert float(out.U.abs().sum()) <= float(reference.abs().sum()) * 1.01


def test_linear_program_from_gram_alone_reaches_the_cvxpy_optimum():
    X, U0, Z = layer(2, P=400)
    eps = 0.15 * float(Z.norm())
    built = StatsBuilder(bias=True, hold=False, dtype=torch.float64)
    built.add(X, Z)
    problem = LayerProblem(built.finish(), Constraint(torch.tensor([eps]), False, "none"), U0, relu=False)
    out = solve(problem, EXACT)
    reference = torch.from_numpy(solve_reference(X, Z, eps, relu=False, bias=True))
    residual = float((with_ones(X) @ out.U.double() - Z).norm())
    assert residual <= eps * (1 + 1e-3) + 1e-6 * float(Z.norm())
    assert problem.certified(out.U)
    assert float(out.U.abs().sum()) <= float(reference.abs().sum()) * 1.01


def test_certified_rule_refuses_weights_outside_the_ball():
    X, U0, Z = layer(3)
    Y = torch.relu(Z)
    stats = stats_of_rows(with_ones(X), Y, bias=True)
    eps = 0.1 * float(Y.norm())
    problem = LayerProblem(stats, Constraint(torch.tensor([eps]), False, "hinge"), U0, relu=True)
    assert problem.certified(U0)
    assert not problem.certified(U0 * 1.5)
    per = LayerProblem(stats, Constraint(torch.full((6,), eps / 6 ** 0.5), True, "hinge"), U0, relu=True)
    bent = U0.clone()
    bent[:, 0] *= 3
    assert not per.certified(bent) and per.certified(U0)
