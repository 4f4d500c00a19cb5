"""Polishing a Net-Trim solution on its support (debiasing), without leaving the feasible set.

The l1 objective shrinks the kept weights: at the optimum the discrepancy sits on the ball's
boundary, ||(U^T X - Y)_Omega|| = eps. With the support fixed, neuron m's least-squares fit on
its active samples,

    u_m^LS = argmin_{supp(u) in S_m} ||(u^T X - y_m)_{Omega_m}||_2,

usually fits far better, but may break the inequalities (u^T X)_{Omega_m^c} <= v_m. Polishing
moves each neuron along the segment u_m(t) = u_m + t (u_m^LS - u_m), t in [0, 1]:

* the discrepancy d_m(t) is convex in t with d_m(1) <= d_m(0), so d_m(t) <= d_m(0) for every
  t: the ball constraint (per neuron or for the layer) still holds;
* each inequality is linear in t, so the largest t that keeps them all is a ratio test.

The polished U is therefore feasible for the same program, has the same (or a smaller) support,
and a discrepancy no larger than before: Proposition 1 and Theorems 1-2 hold unchanged.

In the hinge program the constrained quantity g_m(t) = d_m(t)^2 + ||(u_m(t)^T X - v_m)_+||^2
(inactive entries) is convex in t, and each neuron takes the t in [0, 1] that minimizes it
(golden-section search): g_m(t) <= g_m(0), so the ball still holds.
"""
from __future__ import annotations

import torch

from .problem import LayerProblem


def polish_on_support(problem: LayerProblem, U: torch.Tensor) -> torch.Tensor:
    """Return U (N', M) moved toward the least-squares fit on its support, neuron by neuron."""
    A = problem.A.double()
    U0 = U.double()
    target = problem.Y.double()
    active = problem.active
    U1 = U0.clone()
    for m in range(U0.shape[1]):
        support = U0[:, m] != 0
        rows = active[:, m]
        if not bool(support.any()) or int(rows.sum()) < int(support.sum()):
            continue  # nothing kept, or too few active samples for a well-posed fit
        sol = torch.linalg.lstsq(A[rows][:, support], target[rows, m:m + 1]).solution
        U1[support, m] = sol[:, 0]
    if problem.hinge:
        step = _hinge_minimizing_step(problem, A @ U0, A @ (U1 - U0))
    else:
        step = _largest_feasible_step(problem, A, U0, U1 - U0)
    return (U0 + step * (U1 - U0)).to(U.dtype)


def _largest_feasible_step(problem: LayerProblem, A: torch.Tensor, U0: torch.Tensor,
                           D: torch.Tensor) -> torch.Tensor:
    """Per neuron, the largest t in [0, 1] with (A (U0 + t D))_{Omega^c} <= max(V, A U0)."""
    t = torch.ones(1, U0.shape[1], dtype=U0.dtype, device=U0.device)
    if not problem.relu:
        return t
    inactive = ~problem.active
    room = (problem.V.double() - A @ U0).clamp_min(0)  # never worsen an existing violation
    rise = A @ D
    binding = inactive & (rise > 0)
    ratio = torch.where(binding, room / rise.where(binding, torch.ones_like(rise)),
                        torch.full_like(rise, float("inf")))
    return torch.minimum(t, ratio.amin(dim=0, keepdim=True))


def _hinge_minimizing_step(problem: LayerProblem, AU0: torch.Tensor, AD: torch.Tensor,
                           rounds: int = 40) -> torch.Tensor:
    """Per neuron, argmin over t in [0, 1] of the hinge program's g_m(t) (convex), by golden
    section; t = 0 is kept where the search's point is not strictly better."""
    Y, V, active = problem.Y.double(), problem.V.double(), problem.active

    def g(t):
        Z = AU0 + t * AD
        R = torch.where(active, Z - Y, (Z - V).clamp_min(0))
        return R.square().sum(0, keepdim=True)

    M = AU0.shape[1]
    lo = torch.zeros(1, M, dtype=AU0.dtype, device=AU0.device)
    hi = torch.ones_like(lo)
    ratio = (5 ** 0.5 - 1) / 2
    for _ in range(rounds):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        left = g(a) <= g(b)
        hi = torch.where(left, b, hi)
        lo = torch.where(left, lo, a)
    t = (lo + hi) / 2
    return torch.where(g(t) <= g(torch.zeros_like(t)), t, torch.zeros_like(t))
