"""Refit on the support: the best values for a given set of non-zeros, certificate kept.

The l1 program chooses which weights survive, but its values are shrunk toward zero (at the
optimum the discrepancy sits on the ball's boundary). With the support S_m of neuron m fixed,
the refit solves the ReLU-aware least-squares problem

    minimize_{supp(u) in S_m}  f_m(u) = ||(u^T X - y_m)_{Omega_m}||^2
                                        + ||(u^T X - v_m)_{Omega_m^c, +}||^2

(the active entries fit their target; an inactive entry is charged only for rising above its
slack v_m, the squared-hinge form of the inequalities). Without ReLU it is plain least squares
on the support. f_m is convex and piecewise quadratic; a semismooth Newton (active-set)
iteration solves it: with I the active entries plus the inactive ones above v_m, u solves the
least-squares problem on the rows I with targets y_m on Omega_m and v_m off it; repeat until I
stops changing. Each step is accepted only if it lowers f_m (else halved along the segment).

Why the certificate survives: the l1 answer u0 satisfies the exact program, so
f_m(u0) = d_m(u0)^2, and the refit only lowers f_m. Hence sqrt(d^2 + h^2) <= eps for the
same eps (per neuron, or summed over the layer): the hinge program's ball
(``nettrim.layer.problem``), for which Proposition 1 holds with V = 0
(||relu(U^T X) - Y||_F^2 <= d^2 + h^2) and the cascade layers follow the hinge recursion of
``nettrim.pruners.bounds.cascade_bound_measured``.
"""
from __future__ import annotations

import torch

from .problem import LayerProblem


def refit_on_support(problem: LayerProblem, U: torch.Tensor, *, max_steps: int = 20) -> torch.Tensor:
    """U (N', M) refit neuron by neuron: the same (or a smaller) support, f_m never above its
    value at the given U."""
    A = problem.A.double()
    Y, V = problem.Y.double(), problem.V.double()
    active = problem.active
    U0 = U.double()
    if not problem.relu:
        return _refit_linear(A, Y, U0).to(U.dtype)
    out = U0.clone()
    for m in range(U0.shape[1]):
        support = U0[:, m] != 0
        if bool(support.any()):
            out[support, m] = _refit_neuron(A[:, support], Y[:, m], V[:, m], active[:, m],
                                            U0[support, m], problem.relu, max_steps)
    return out.to(U.dtype)


def hinge_objective(z: torch.Tensor, y: torch.Tensor, v: torch.Tensor, on: torch.Tensor,
                    relu: bool) -> torch.Tensor:
    """f(u) for the responses z = X^T u of one neuron (see the module docstring)."""
    if not relu:
        return (z - y).square().sum()
    return torch.where(on, z - y, (z - v).clamp_min(0)).square().sum()


def _refit_neuron(As, y, v, on, u, relu, max_steps):
    """Semismooth Newton on one neuron's f over the columns ``As`` of its support."""
    z = As @ u
    f = hinge_objective(z, y, v, on, relu)
    rows = None
    for _ in range(max_steps):
        new_rows = on | (z > v) if relu else torch.ones_like(on)
        if rows is not None and bool((new_rows == rows).all()):
            break
        rows = new_rows
        target = torch.where(on, y, v)[rows]
        cand = _least_squares(As[rows], target)
        step, better = 1.0, False
        for _ in range(30):  # backtrack on the segment u + t (cand - u): f is convex along it
            trial = u + step * (cand - u)
            zt = As @ trial
            ft = hinge_objective(zt, y, v, on, relu)
            if ft <= f:
                better = True
                break
            step /= 2
        if not better:
            break
        u, z, f = trial, zt, ft
    return u


def _refit_linear(A: torch.Tensor, Y: torch.Tensor, U0: torch.Tensor) -> torch.Tensor:
    """Without ReLU, f_m(u) = u^T G u - 2 u^T b_m + ||y_m||^2 with G = A^T A, b = A^T Y: each
    neuron's least squares on its support S solves G_SS u_S = b_S, from one Gram matrix for the
    layer (O(P N'^2) once, not per neuron); a neuron keeps u0 where that is not lower."""
    G, B = A.T @ A, A.T @ Y
    out = U0.clone()
    for m in range(U0.shape[1]):
        s = U0[:, m] != 0
        if bool(s.any()):
            K, b, u0 = G[s][:, s], B[s, m], U0[s, m]
            cand = _solve_normal(K.clone(), b)
            if float(cand @ K @ cand - 2 * cand @ b) <= float(u0 @ K @ u0 - 2 * u0 @ b):
                out[s, m] = cand
    return out


def _least_squares(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """argmin ||A x - b|| by normal equations with a tiny ridge (rank-deficient safe)."""
    return _solve_normal(A.T @ A, A.T @ b)


def _solve_normal(K: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """x with K x = rhs for a Gram matrix K (modified in place): Cholesky with a tiny ridge,
    least squares when K is singular even so."""
    K.diagonal().add_(1e-10 * float(K.diagonal().mean()) + 1e-12)
    L, info = torch.linalg.cholesky_ex(K)
    if int(info) == 0:
        return torch.cholesky_solve(rhs.unsqueeze(1), L).squeeze(1)
    return torch.linalg.lstsq(K, rhs.unsqueeze(1)).solution.squeeze(1)
