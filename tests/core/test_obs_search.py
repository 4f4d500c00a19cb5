"""Net-Trim's OBS search under a tolerance and the batched refit it runs in its trials: every
returned layer certified, the answer near the edge of its ball, the masked conjugate gradient
at the support's least-squares optimum."""
import pytest
import torch
from torch import nn

from nettrim import api
from nettrim.methods import NetTrim
from nettrim.program import Constraint, LayerProblem, stats_of_rows, with_ones
from nettrim.solvers import obs_search
from nettrim.solvers import refit as refit_module
from nettrim.solvers.refit import TRIAL, Effort, hinge_sq, masked_cg, refit

QUIET = api.RunOptions(progress=False)


def mlp(seed=0, widths=(24, 64, 48, 8)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


@pytest.mark.parametrize("per_neuron", [False, True])
def test_tolerance_search_certifies_every_layer_near_its_ball(per_neuron):
    model = mlp()
    x = torch.randn(600, 24, generator=torch.Generator().manual_seed(3))
    result = api.prune(model, x, NetTrim(support="obs", epsilon=0.3, per_neuron=per_neuron), run=QUIET)
    for r in result.report.layers:
        assert r.certified and r.nnz_after < r.total
        assert r.info["passes"] <= 2 * obs_search.MAX_TRIALS
    first = result.report.layers[0].certificate
    # the first layer's ball is eps = 0.3 ||Y||: the search stops near its edge, not far inside
    assert 0.8 * first.epsilon <= first.measured <= first.limit


def test_masked_conjugate_gradient_reaches_the_support_optimum():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(300, 30, generator=g, dtype=torch.float64) @ torch.randn(30, 30, generator=g, dtype=torch.float64)
    G, C = A.T @ A, A.T @ torch.randn(300, 5, generator=g, dtype=torch.float64)
    mask = torch.rand(30, 5, generator=g) < 0.5
    U0 = torch.randn(30, 5, generator=g, dtype=torch.float64) * mask
    q = lambda U: ((U * (G @ U)).sum(0) - 2 * (U * C).sum(0))
    full = masked_cg(G, C, U0, mask, iterations=200, rel=0.0)
    short = masked_cg(G, C, U0, mask, iterations=3)
    for m in range(5):
        s = mask[:, m]
        exact = torch.linalg.solve(G[s][:, s], C[s, m])
        torch.testing.assert_close(full[s, m], exact, rtol=1e-6, atol=1e-8)
    assert not bool(full[~mask].any()) and not bool(short[~mask].any())
    assert bool((q(full) <= q(short) + 1e-9).all()) and bool((q(short) < q(U0)).all())


def test_batched_relu_refit_lowers_the_hinge_objective_toward_the_exact_refit(monkeypatch):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(400, 20, generator=g)
    W = torch.randn(21, 12, generator=g) / 4
    A = with_ones(X)
    stats = stats_of_rows(A, torch.relu(A @ W), bias=True)
    problem = LayerProblem(stats, Constraint(torch.ones(1), False, "hinge"), W, True, 1.0)
    U = W * (torch.rand(21, 12, generator=g) < 0.4)
    f = lambda V: hinge_sq(problem.measure(V))
    exact = f(refit(problem, U))  # a small layer: the exact semismooth Newton
    monkeypatch.setattr(refit_module, "EXACT_FLOPS", 0.0)  # every layer batched
    for effort in (TRIAL, Effort(steps=8, cg_steps=12, rel=1e-4, guard=False)):
        out = refit(problem, U, effort=effort)
        assert bool(((out != 0) <= (U != 0)).all())
        assert bool((f(out) <= f(U) * (1 + 1e-6)).all())
        assert float(f(out).sum()) < float(f(U).sum())
    assert float(f(out).sum()) <= 1.01 * float(exact.sum())
