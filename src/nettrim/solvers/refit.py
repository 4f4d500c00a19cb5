"""Refit on the support: the best values for a given set of non-zeros, certificate kept.

A support chooser (the l1 program, an OBS pass) decides which weights survive; with the
support S_m of neuron m fixed, the refit lowers the ReLU-aware least-squares objective

    f_m(u) = ||(A u - y_m)_{Omega_m}||^2 + ||(A u - v_m)_{Omega_m^c, +}||^2,   supp(u) in S_m

(the active entries fit their target; an inactive entry is charged only for rising above its
slack v_m). Without ReLU it is plain least squares, f_m(u) = u^T G u - 2 u^T c_m + t_m, from
the Gram statistics alone.

Small layers are solved exactly, neuron by neuron; large ones batched over neurons with the
layer's one Gram matrix (the choice by the work a neuron-by-neuron solve would take,
``EXACT_FLOPS``):

* linear, exact: G_SS u_S = c_S by Cholesky per neuron (one Gram matrix for the layer);
  batched: preconditioned conjugate gradient on the same systems for every neuron at once
  (the masked products (G (U * mask)) * mask), started from the given values;
* ReLU, exact: a semismooth Newton (active-set) iteration: with I the active entries plus the
  inactive ones above v_m, u solves the least-squares problem on the rows I with targets y_m
  on Omega_m and v_m off it; repeat until I stops changing, each step accepted only if it
  lowers f_m (else halved along the segment);
* ReLU, batched: majorization-minimization. With z = A u_k, the quadratic
  g(u) = ||(A u - y)_Omega||^2 + ||(A u - t_k)_{Omega^c}||^2,  t_k = min(z, v),
  majorizes f (t_k <= v, so (A u - t_k)^2 >= (A u - v)_+^2) and touches it at u_k; it is a
  least-squares problem on every row with the layer's one Gram matrix G = A^T A, solved by the
  same conjugate gradient. f decreases at every step.

Why the certificate survives: every step lowers f_m (or the layer sum), and f_m at the start
is at most what the start was certified for (d^2 for the exact program, d^2 + h^2 for the
hinge ball); the refit is measured again afterwards, and the start is kept if rounding made
the refit worse (``refit``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..program import LayerProblem


EXACT_FLOPS = 2e10  # a neuron-by-neuron refit costing more than this is batched instead
NEURON_FLOPS = 2e7  # what one neuron's own solve costs beyond its flops (its Python steps), as flops


@dataclass(frozen=True)
class Effort:
    """How far a batched refit goes: at most ``steps`` majorization steps (ReLU) of at most
    ``cg_steps`` conjugate-gradient steps each (a linear program gets steps x cg_steps), each
    loop stopped early once its last step gained less than ``rel`` of what it gained in all;
    ``guard``: measure before and after and keep U where the refit came out worse."""

    steps: int = 8
    cg_steps: int = 12
    rel: float = 1e-4
    guard: bool = True


FULL = Effort()
TRIAL = Effort(steps=1, cg_steps=8, rel=1e-2, guard=False)  # a search trial: the caller measures


def refit(problem: LayerProblem, U: torch.Tensor, *, effort: Effort = FULL) -> torch.Tensor:
    """U (N', M) refit on its own support (module docstring); with ``effort.guard`` never
    worse than U in the measured objective (the hinge ball's sqrt(d^2 + h^2), or d for a
    linear program)."""
    mask = U != 0
    if not bool(mask.any()):
        return U
    dt = U.dtype
    if exact_refit_is_cheap(problem, U):
        new = (_refit_relu_exact(problem, U) if problem.relu else _refit_linear_exact(problem, U)).to(dt)
    elif problem.relu:
        new = _majorize_minimize(problem, U, mask, problem.stats.gram.to(dt), effort)
    else:
        new = masked_cg(problem.stats.gram.to(dt), problem.stats.cross.to(dt), U, mask,
                        iterations=effort.steps * effort.cg_steps, rel=effort.rel)
    if not effort.guard:
        return new
    before, after = problem.measure(U), problem.measure(new)
    worse = hinge_sq(after) > hinge_sq(before)
    return torch.where(worse[None, :].to(U.device), U, new) if bool(worse.any()) else new


def exact_refit_is_cheap(problem: LayerProblem, U: torch.Tensor) -> bool:
    """Whether the neuron-by-neuron refit of U costs at most ``EXACT_FLOPS``: per neuron its
    flops (rows k^2, four Newton steps for a ReLU layer; k^2 for a linear one's Cholesky of
    G_SS, k the largest support) and ``NEURON_FLOPS`` for its own Python steps."""
    k = int((U != 0).sum(0).max())
    rows = problem.stats.rows if problem.relu else k
    per_neuron = rows * k * k * (4 if problem.relu else 1) + NEURON_FLOPS
    return per_neuron * U.shape[1] <= EXACT_FLOPS


def hinge_sq(m) -> torch.Tensor:
    """d_m^2 + h_m^2 per neuron of a measurement: f_m."""
    return m.discrepancy.square() + m.excess.square()


def hinge_objective(problem: LayerProblem, U: torch.Tensor) -> torch.Tensor:
    """f_m(U) per neuron (M,), float64."""
    return hinge_sq(problem.measure(U))


def _majorize_minimize(problem: LayerProblem, U, mask, G, effort: Effort) -> torch.Tensor:
    """The majorization-minimization of the module docstring: each step a masked conjugate
    gradient on g(u) with the layer's one Gram matrix; stopped once f gains less than
    ``effort.rel`` of what the steps so far gained."""
    A, Y, V, on = problem.A.to(U.dtype), problem.Y.to(U.dtype), problem.V.to(U.dtype), problem.active
    f_first = f_old = None
    for _ in range(effort.steps):
        Z = A @ U
        f = float(torch.where(on, Z - Y, (Z - V).clamp_min(0)).square().sum())
        if f_old is not None and f_old - f <= max(effort.rel * (f_first - f), 1e-7 * f_first):
            break
        f_first = f if f_first is None else f_first
        f_old = f
        T = torch.where(on, Y, torch.minimum(Z, V))
        U = masked_cg(G, A.T @ T, U, mask, iterations=effort.cg_steps, rel=effort.rel)
    return U


def masked_cg(G: torch.Tensor, C: torch.Tensor, U0: torch.Tensor, mask: torch.Tensor, *,
              iterations: int, rel: float = 1e-3) -> torch.Tensor:
    """For every column m at once, approximately argmin q(u) = u^T G u - 2 c_m^T u over
    supp(u) in mask[:, m], by conjugate gradient from U0 with the diagonal of G as
    preconditioner; each iterate lowers q. G (N', N'), C and U0 (N', M).

    A step of length alpha = r^T z / d^T G d lowers q by (r^T z)^2 / d^T G d; the loop stops
    when the last step's decrease (over all columns) is at most ``rel`` times the decrease of
    all steps so far (conjugate gradient gains geometrically: little is left), or after
    ``iterations`` steps."""
    U = U0 * mask
    diag = G.diagonal().clamp_min(1e-12 * float(G.diagonal().max().clamp_min(1e-30)))
    R = (C - G @ U) * mask
    Z = R / diag[:, None]
    D = Z.clone()
    rz = (R * Z).sum(0)
    gained = 0.0
    for _ in range(iterations):
        GD = (G @ D) * mask
        curv = (D * GD).sum(0)
        alpha = torch.where(curv > 0, rz / curv.clamp_min(1e-30), torch.zeros_like(curv))
        U = U + alpha * D
        step = float((alpha * rz).sum())
        gained += step
        if step <= rel * gained:
            break
        R = R - alpha * GD
        Z = R / diag[:, None]
        rz_new = (R * Z).sum(0)
        D = Z + (rz_new / rz.clamp_min(1e-30)) * D
        rz = rz_new
    return U * mask


def _refit_linear_exact(problem: LayerProblem, U: torch.Tensor) -> torch.Tensor:
    """Each neuron's least squares on its support, G_SS u_S = c_S, from the layer's one Gram
    matrix (O(P N'^2) once, not per neuron); a neuron keeps u0 where that is not lower."""
    G, B, U0 = problem.stats.gram, problem.stats.cross, U.double()
    out = U0.clone()
    for m in range(U0.shape[1]):
        s = U0[:, m] != 0
        if bool(s.any()):
            K, b, u0 = G[s][:, s], B[s, m], U0[s, m]
            cand = solve_normal(K.clone(), b)
            if float(cand @ K @ cand - 2 * cand @ b) <= float(u0 @ K @ u0 - 2 * u0 @ b):
                out[s, m] = cand
    return out


def _refit_relu_exact(problem: LayerProblem, U: torch.Tensor, max_steps: int = 20) -> torch.Tensor:
    """The semismooth Newton of the module docstring, neuron by neuron, in float64."""
    A, Y, V, active = problem.A.double(), problem.Y.double(), problem.V.double(), problem.active
    U0 = U.double()
    out = U0.clone()
    for m in range(U0.shape[1]):
        support = U0[:, m] != 0
        if bool(support.any()):
            out[support, m] = _newton_neuron(A[:, support], Y[:, m], V[:, m], active[:, m],
                                             U0[support, m], max_steps)
    return out


def _neuron_objective(z, y, v, on) -> torch.Tensor:
    return torch.where(on, z - y, (z - v).clamp_min(0)).square().sum()


def _newton_neuron(As, y, v, on, u, max_steps):
    """Semismooth Newton on one neuron's f over the columns ``As`` of its support."""
    z = As @ u
    f = _neuron_objective(z, y, v, on)
    rows = None
    for _ in range(max_steps):
        new_rows = on | (z > v)
        if rows is not None and bool((new_rows == rows).all()):
            break
        rows = new_rows
        target = torch.where(on, y, v)[rows]
        Ar = As[rows]
        cand = solve_normal(Ar.T @ Ar, Ar.T @ target)
        step, better = 1.0, False
        for _ in range(30):  # backtrack on the segment u + t (cand - u): f is convex along it
            trial = u + step * (cand - u)
            zt = As @ trial
            ft = _neuron_objective(zt, y, v, on)
            if ft <= f:
                better = True
                break
            step /= 2
        if not better:
            break
        u, z, f = trial, zt, ft
    return u


def solve_normal(K: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """x with K x = rhs for a Gram matrix K (modified in place): Cholesky with a tiny ridge,
    least squares when K is singular even so."""
    K.diagonal().add_(1e-10 * float(K.diagonal().mean()) + 1e-12)
    L, info = torch.linalg.cholesky_ex(K)
    if int(info) == 0:
        return torch.cholesky_solve(rhs.unsqueeze(1), L).squeeze(1)
    return torch.linalg.lstsq(K, rhs.unsqueeze(1)).solution.squeeze(1)
