"""ADMM for the Net-Trim layer program (Aghasi, Abdi, Romberg, SIAM J. Math. Data Sci. 2020).

Splitting ``W1 = W3^T X`` and ``W2 = W3`` with scaled duals ``U1``, ``U2`` and one penalty
``rho`` per neuron, one iteration reads (paper's symbols, P x M quantities stored transposed):

    Z  = W3^T X - U1
    W1 = Y + min(1, eps / ||Z - Y||_Omega) (Z - Y)   on Omega      (projection on the ball)
    W1 = min(Z, V)                                   off Omega     (projection on the half-spaces)
    W2 = soft_threshold(W3 - U2, 1 / rho)
    W3 = (X X^T + I)^(-1) (X (W1 + U1)^T + W2 + U2)
    U1 += W1 - W3^T X ;  U2 += W2 - W3

The W3 step does not depend on rho, Omega or the iteration: ``(X X^T + I)^(-1)`` is formed once
per layer and shared by every neuron, so adapting rho (residual balancing, Boyd et al. 2011,
section 3.4.1) costs nothing. With one ball per neuron the neurons are independent problems;
each gets its own rho and is frozen as soon as it has converged, so late iterations only touch
the neurons still moving. The answer is ``W2``, which has exact zeros; it is returned only after
its constraints have been measured.

Group penalty (structured Net-Trim, docs/structured.md): with ``groups`` the objective is
sum_g t_g ||U_g||_F over groups of rows of U (every column), and the W2 step is its prox,
the group soft-threshold W2_g = max(0, 1 - t_g / (rho ||V_g||_F)) V_g with V = W3 - U2.
A group spans every neuron, so the neurons are one problem: one rho for all, balanced on
the layer's residuals, and no neuron is frozen before the others.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import require
from .problem import LayerProblem, constraints_hold


@dataclass(frozen=True)
class ADMMSettings:
    """Solver settings; defaults chosen by measurement on MNIST networks (see README).

    Attributes:
        rho: initial penalty, or None to start at 1 / mean|U0| of the warm start.
        adaptive_rho: residual balancing: rho x2 when primal/dual > 10, /2 when < 1/10, for the
            first ``adapt_iterations`` iterations only; convergence theory needs rho fixed
            eventually, and balancing can otherwise cycle.
        max_iterations: hard cap.
        abs_tol, rel_tol: primal/dual residual tolerances (Boyd et al. 2011, eq. 3.12).
        feasibility_tol: relative slack allowed on the returned weights: discrepancy <=
            eps (1 + tol) and ||violations|| <= tol eps.
        check_every: iterations between convergence checks.
        dtype: computation precision (float32 is safe: the system matrix has eigenvalues >= 1).
        relaxation: over-relaxation alpha in [1, 2) (Boyd et al. 2011, section 3.4.3); 1 is
            plain ADMM.
        support_rel_tol: ``rel_tol`` of the solves that only choose a support: the reweighting
            rounds before the last, and every round when the values are refit afterwards
            (``trim_layer(refit=True)``; the refit answer is measured, and the last round is
            finished at ``rel_tol`` if it does not certify). None keeps ``rel_tol``.
        support_checks: such a support-only solve also stops, neuron by neuron (or for the
            layer's one ball), once its constraints hold and its support (the non-zeros of W2)
            has not changed over this many consecutive checks: the support settles long before
            the residuals meet ``support_rel_tol`` (measured on LeNet-300-100's reweighted
            cascade layers: half the iterations, see docs/results.md).
        spectral_ratio: inputs and targets are divided by c = ||X||_2 / spectral_ratio before
            iterating, which sets the balance between the two constraint blocks (U itself is
            unchanged). The authors use c = 0.3 max feature norm; measured on MNIST layers and
            random ReLU layers, a fixed ratio ||X||_2 / c of about 25 converges fastest on both.
    """

    rho: float | None = None
    adaptive_rho: bool = True
    adapt_iterations: int = 1000
    max_iterations: int = 3000
    abs_tol: float = 1e-6
    rel_tol: float = 1e-3
    feasibility_tol: float = 1e-3
    check_every: int = 10
    relaxation: float = 1.6
    dtype: torch.dtype = torch.float32
    spectral_ratio: float = 25.0
    support_rel_tol: float | None = 1e-2
    support_checks: int = 5

    def __post_init__(self):
        positive = dict(abs_tol=self.abs_tol, rel_tol=self.rel_tol,
                        feasibility_tol=self.feasibility_tol, spectral_ratio=self.spectral_ratio)
        if self.rho is not None:
            positive["rho"] = self.rho
        if self.support_rel_tol is not None:
            positive["support_rel_tol"] = self.support_rel_tol
        for name, value in positive.items():
            require(isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
                    f"ADMMSettings.{name} must be a positive number, got {value!r}")
        for name in ("max_iterations", "check_every", "support_checks"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                    f"ADMMSettings.{name} must be an integer >= 1, got {value!r}")
        require(isinstance(self.adapt_iterations, int) and self.adapt_iterations >= 0,
                f"ADMMSettings.adapt_iterations must be an integer >= 0, got {self.adapt_iterations!r}")
        require(isinstance(self.relaxation, (int, float)) and 1 <= self.relaxation < 2,
                f"ADMMSettings.relaxation must lie in [1, 2), got {self.relaxation!r}")
        require(self.dtype in (torch.float32, torch.float64),
                f"ADMMSettings.dtype must be torch.float32 or torch.float64, got {self.dtype!r}")


@dataclass
class ADMMOutput:
    """Per neuron (M,): iterations, convergence, and the primal and dual residuals and penalty
    rho at the last check (in the solver's scaled units: data divided by c, see ``solve_admm``)."""

    U: torch.Tensor  # (N', M), exact zeros
    iterations: torch.Tensor  # (M,) iterations per neuron
    converged: torch.Tensor  # (M,) bool
    primal_residual: torch.Tensor  # (M,)
    dual_residual: torch.Tensor  # (M,)
    rho: torch.Tensor  # (M,)


Progress = Callable[[int, int, int], None]  # (iteration, neurons done, neurons total)


def soft_threshold(Z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """sign(Z) max(|Z| - t, 0): the prox of t ||.||_1."""
    return torch.sign(Z) * (Z.abs() - t).clamp_min(0)


def group_soft_threshold(Z: torch.Tensor, groups: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The prox of sum_g t_g ||Z_g||_F, Z_g the rows of Z whose ``groups`` entry is g (every
    column): each group scaled by max(0, 1 - t_g / ||Z_g||_F), so a group is zero as a whole
    or not shrunk to zero at all; rows with group -1 (the bias) are in no group and returned
    as they are. ``groups``: (N',) long in [-1, G); ``t``: (G,) thresholds."""
    inside = groups >= 0
    ids = groups[inside]
    sq = torch.zeros(t.shape[0], dtype=Z.dtype, device=Z.device).index_add_(0, ids, Z[inside].square().sum(1))
    norm = sq.sqrt()
    scale = torch.where(norm > t, 1 - t / norm.clamp_min(1e-30), torch.zeros_like(norm))
    factor = torch.ones(Z.shape[0], dtype=Z.dtype, device=Z.device)
    factor[inside] = scale[ids]
    return Z * factor[:, None]


def _project(Z, Y, V, mask, eps, per_neuron, hinge=False):
    """Projection of Z onto {ball around Y of radius eps on Omega} x {<= V off Omega}.

    With ``hinge`` the set is one ball in the hinged residual R = (Z - Y on Omega,
    (Z - V)_+ off Omega): its projection scales R by min(1, eps / ||R||) (KKT: every entry with
    a positive residual shrinks by the same factor 1 / (1 + lambda); the others stay put).
    """
    if hinge:
        D = torch.where(mask, Z - Y, (Z - V).clamp_min(0))
    else:
        D = (Z - Y) * mask
    norm = D.norm(dim=0) if per_neuron else D.norm().reshape(1)
    shrink = torch.where(norm > eps, eps / norm.clamp_min(1e-30), torch.ones_like(norm))
    if hinge:
        return torch.where(mask, Y + D * shrink, torch.where(Z > V, V + D * shrink, Z))
    return torch.where(mask, Y + D * shrink, torch.minimum(Z, V))


def _system_inverse(AtA: torch.Tensor) -> torch.Tensor:
    """(X X^T + I)^(-1) in paper notation, i.e. (A^T A + I)^(-1), via Cholesky (float64 in)."""
    K = AtA.clone()
    K.diagonal().add_(1.0)
    return torch.cholesky_inverse(torch.linalg.cholesky(K))


def _largest_eigenvalue(S: torch.Tensor, steps: int = 50) -> float:
    """lambda_max of a PSD matrix by power iteration (a few percent is plenty here)."""
    v = torch.ones(S.shape[0], dtype=S.dtype, device=S.device)
    lam = 0.0
    for _ in range(steps):
        w = S @ v
        lam = float(w.norm())
        if lam == 0.0:
            break
        v = w / lam
    # lambda_max >= max diag(S): the floor when the start is (nearly) orthogonal to the top
    # eigenvector, e.g. one sample whose features sum to 0 (S v = 0 at once)
    return max(lam, float(S.diagonal().max()) if S.numel() else 0.0)


def solve_admm(
    problem: LayerProblem,
    settings: ADMMSettings = ADMMSettings(),
    warm_start: torch.Tensor | None = None,
    l1_weights: torch.Tensor | None = None,
    progress: Progress | None = None,
    support_only: bool = False,
    groups: torch.Tensor | None = None,
    group_weights: torch.Tensor | None = None,
) -> ADMMOutput:
    """Run ADMM on ``problem``; ``warm_start`` is U0 (N', M); ``l1_weights`` (N', M) gives the
    weighted objective sum w_ij |U_ij| (reweighted l1), default all ones. ``support_only``: the
    answer's support is all that is used, so the solve may stop once it has settled
    (``ADMMSettings.support_checks``). ``groups`` ((N',) long, -1 for a row in no group) and
    ``group_weights`` ((G,) t_g) replace the l1 objective by sum_g t_g ||U_g||_F (module doc)."""
    dt = settings.dtype
    AtA = problem.A.double().T @ problem.A.double()
    c = max(_largest_eigenvalue(AtA) ** 0.5, 1e-12) / settings.spectral_ratio
    A = (problem.A / c).to(dt)
    Y, V = (problem.Y / c).to(dt), (problem.V / c).to(dt)
    eps = (problem.eps / c).to(dt)
    mask = problem.active
    Kinv = _system_inverse(AtA / c**2).to(dt)
    G = A @ Kinv  # W3 = G^T (W1 + U1) + Kinv (W2 + U2)
    N, M = A.shape[1], Y.shape[1]
    W3 = (G.T @ Y) if warm_start is None else warm_start.to(dt)
    wts = torch.ones(N, M, dtype=dt, device=A.device) if l1_weights is None else l1_weights.to(dt)
    w3_step = lambda W3, AW3, R1, R2: _matrix_w3_step(A, G, Kinv, R1, R2)
    return run_admm(W3, A @ W3, Y, V, mask, eps, wts, settings, per_neuron=problem.per_neuron,
                    hinge=problem.hinge, size=(N + A.shape[0]) ** 0.5, forward=lambda W: A @ W,
                    w3_step=w3_step, progress=progress,
                    stable_checks=settings.support_checks if support_only else None,
                    groups=groups, group_weights=None if group_weights is None else group_weights.to(dt))


def _matrix_w3_step(A, G, Kinv, R1, R2):
    """W3 = (A^T A + I)^(-1) (A^T R1 + R2) with G = A Kinv formed once; returns (W3, A W3)."""
    W3 = G.T @ R1 + Kinv @ R2
    return W3, A @ W3


W3Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                  tuple[torch.Tensor, torch.Tensor]]


def run_admm(W3, AW3, Y, V, mask, eps, wts, settings: ADMMSettings, *, per_neuron: bool,
             hinge: bool, size: float, forward: Callable[[torch.Tensor], torch.Tensor],
             w3_step: W3Step, refresh: Callable | None = None,
             progress: Progress | None = None, stable_checks: int | None = None,
             groups: torch.Tensor | None = None, group_weights: torch.Tensor | None = None) -> ADMMOutput:
    """The iterations of the module doc, for any linear map A given as ``forward(W) = A W``.

    ``w3_step(W3, AW3, R1, R2)`` returns (W3, A W3) with W3 = (A^T A + I)^(-1) (A^T R1 + R2)
    (a factored inverse, or conjugate gradient from the current W3); ``refresh(W3, AW3, U1)``,
    if given, returns (A W3, U1) re-synchronised at each check (an iterative W3 step may keep
    A W3 by updates). ``size`` is sqrt(N' + P) of the absolute tolerances. All scaled
    quantities, (N', M) or (P, M); neurons that converge are frozen and dropped. With
    ``stable_checks`` a neuron (or the layer) whose support has not changed over that many
    checks counts as converged once its constraints hold. With ``groups`` and
    ``group_weights`` the W2 step is the group soft-threshold and the neurons move together
    (one rho, converged and returned together).
    """
    dt, N, M, dev = W3.dtype, W3.shape[0], Y.shape[1], Y.device
    rho0 = settings.rho or 1.0 / float(W3.abs().mean().clamp_min(1e-8))
    alpha = settings.relaxation
    coupled = groups is not None  # a group spans every neuron: one problem, one rho
    if coupled:
        prox = lambda Z, rho: group_soft_threshold(Z, groups, group_weights / rho[0])
    else:
        prox = lambda Z, rho: soft_threshold(Z, wc / rho)
    result = torch.zeros(N, M, dtype=dt, device=dev)
    iters = torch.zeros(M, dtype=torch.long)
    done = torch.zeros(M, dtype=torch.bool)
    last = torch.zeros(3, M, dtype=dt)  # primal residual, dual residual, rho at the last check
    cols = torch.arange(M, device=dev)  # neurons still iterating
    rho = torch.full((M,), rho0, dtype=dt, device=dev)
    U1, U2 = torch.zeros_like(AW3), torch.zeros_like(W3)
    Yc, Vc, mc, ec, wc = Y, V, mask, eps, wts
    support, stable = None, torch.zeros(M, dtype=torch.long, device=dev)
    for it in range(1, settings.max_iterations + 1):
        Z = AW3 - U1
        W1 = _project(Z, Yc, Vc, mc, ec, per_neuron, hinge)
        W2 = prox(W3 - U2, rho)
        W3_old, AW3_old = W3, AW3
        if alpha != 1.0:  # over-relaxation: blend the new split variables with the old W3
            H1, H2 = alpha * W1 + (1 - alpha) * AW3_old, alpha * W2 + (1 - alpha) * W3_old
        else:
            H1, H2 = W1, W2
        W3, AW3 = w3_step(W3, AW3, H1 + U1, H2 + U2)
        U1 += H1 - AW3
        U2 += H2 - W3
        if it % settings.check_every and it != settings.max_iterations:
            continue
        if refresh is not None:
            AW3, U1 = refresh(W3, AW3, U1)
        r = ((W1 - AW3).square().sum(0) + (W2 - W3).square().sum(0)).sqrt()
        s = rho * ((AW3 - AW3_old).square().sum(0) + (W3 - W3_old).square().sum(0)).sqrt()
        tol_p = settings.abs_tol * size + settings.rel_tol * torch.maximum(
            (W1.square().sum(0) + W2.square().sum(0)).sqrt(),
            (AW3.square().sum(0) + W3.square().sum(0)).sqrt())
        tol_d = settings.abs_tol * size + settings.rel_tol * rho * (
            U1.square().sum(0) + U2.square().sum(0)).sqrt()
        small = (r <= tol_p) & (s <= tol_d)
        if stable_checks:
            now = W2 != 0
            stable = torch.where((now == support).all(0), stable + 1, 0) if support is not None else stable
            support = now
            small |= stable >= stable_checks
        if not per_neuron or coupled:
            small = small.all().expand_as(small)
        ok = small & _feasible(forward(W2), W2, Yc, Vc, mc, ec, per_neuron,
                               settings.feasibility_tol, hinge)
        iters[cols.cpu()] = it
        last[:, cols.cpu()] = torch.stack([r, s, rho]).cpu()
        if settings.adaptive_rho and it <= settings.adapt_iterations:
            rho, U1, U2 = _balance(rho, U1, U2, r, s, per_neuron and not coupled)
        if ok.any() and ((per_neuron and not coupled) or ok.all()):
            result[:, cols[ok]] = W2[:, ok]
            done[cols[ok].cpu()] = True
            keep = ~ok
            cols = cols[keep]
            if cols.numel() == 0:
                break
            W3, AW3, U1, U2, rho = W3[:, keep], AW3[:, keep], U1[:, keep], U2[:, keep], rho[keep]
            stable = stable[keep]
            support = None if support is None else support[:, keep]
            Yc, Vc, mc, ec, wc = Yc[:, keep], Vc[:, keep], mc[:, keep], ec[keep], wc[:, keep]
        if progress is not None:
            progress(it, int(done.sum()), M)
    if cols.numel():
        result[:, cols] = prox(W3 - U2, rho)
    return ADMMOutput(U=result, iterations=iters, converged=done, primal_residual=last[0],
                      dual_residual=last[1], rho=last[2])


def _feasible(AU, U, Y, V, mask, eps, per_neuron, tol, hinge=False):
    """``constraints_hold`` for the iterate: one bool per (still iterating) neuron."""
    disc = ((AU - Y) * mask).norm(dim=0)
    excess = (AU - V).masked_fill(mask, 0).clamp_min(0).norm(dim=0)
    floor = 1e-7 * float(Y.norm()) + 1e-12
    ok = constraints_hold(disc, excess, eps, tol, floor, per_neuron=per_neuron, hinge=hinge)
    return ok.expand(U.shape[1])


def _balance(rho, U1, U2, r, s, per_neuron, mu=10.0, tau=2.0):
    """Residual balancing; scaled duals are rescaled so the unscaled duals stay put."""
    if not per_neuron:
        r, s = r.norm().expand_as(rho), s.norm().expand_as(rho)
    factor = torch.ones_like(rho)
    factor = torch.where(r > mu * s, torch.full_like(rho, tau), factor)
    factor = torch.where(s > mu * r, torch.full_like(rho, 1 / tau), factor)
    return rho * factor, U1 / factor, U2 / factor
