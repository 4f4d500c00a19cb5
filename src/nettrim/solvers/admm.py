"""ADMM for the Net-Trim layer program (Aghasi, Abdi, Romberg, SIAM J. Math. Data Sci. 2020).

Splitting ``W1 = W3^T X`` and ``W2 = W3`` with scaled duals ``U1``, ``U2`` and one penalty
``rho`` per neuron, one iteration reads (paper's symbols, P x M quantities stored transposed):

    Z  = W3^T X - U1
    W1 = Y + min(1, eps / ||Z - Y||_Omega) (Z - Y)   on Omega      (projection on the ball)
    W1 = min(Z, V)                                   off Omega     (projection on the half-spaces)
    W2 = prox_{penalty / rho}(W3 - U2)               (soft threshold for l1)
    W3 = (X X^T + I)^(-1) (X (W1 + U1)^T + W2 + U2)
    U1 += W1 - W3^T X ;  U2 += W2 - W3

with over-relaxation alpha (Boyd et al. 2011, 3.4.3) and residual balancing of rho in the
first iterations (3.4.1). The W3 step does not depend on rho, Omega or the iteration:
``(X X^T + I)^(-1)`` is formed once per layer and shared by every neuron. With one ball per
neuron the neurons are independent problems, each frozen once it has converged. The answer is
``W2``, which has exact zeros. The hinge ball (``inactive="hinge"``) projects the hinged
residual (Z - Y on Omega, (Z - V)_+ off it) onto one ball instead.

A linear program (no ReLU of its own) is solved in the Gram domain: with G = L L^T,
||A U - Y||_F^2 = ||L^T U - L^-1 C||_F^2 + (t - ||L^-1 C||^2) for every U, so the ball
||A U - Y|| <= eps is the ball ||L^T U - L^-1 C|| <= sqrt(eps^2 - rest) on N' "rows": the
same feasible set and solution, O(N'^2 M) per iteration whatever the number of calibration
rows. A ReLU program iterates on its held rows.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch

from ..options import Flag, Integer, OneOf, Options, Real, options
from ..program import Constraint, LayerProblem, Measurement, Penalty
from ..status import Status

Progress = Callable[[int, int, int], None]  # (iteration, neurons done, neurons total)


@options
class ADMMSettings(Options):
    """Solver settings; defaults chosen by measurement on MNIST networks (docs/results.md).

    Attributes:
        rho: initial penalty, or None to start at 1 / mean|U0| of the start.
        adaptive_rho: residual balancing (rho x2 when primal/dual > 10, /2 when < 1/10) for
            the first ``adapt_iterations`` iterations only.
        max_iterations: hard cap.
        abs_tol, rel_tol: primal/dual residual tolerances (Boyd et al. 2011, eq. 3.12).
        feasibility_tol: relative slack of the certificate: the measured quantity within
            eps (1 + tol) (``nettrim.program.constraint``).
        check_every: iterations between convergence checks.
        relaxation: over-relaxation alpha in [1, 2); 1 is plain ADMM.
        dtype: "float32" or "float64", the computation precision (float32 is safe: the
            system matrix has eigenvalues >= 1; certificates are measured in float64).
        spectral_ratio: inputs and targets are divided by c = ||X||_2 / spectral_ratio before
            iterating, which balances the two constraint blocks (U itself is unchanged).
        support_rel_tol: ``rel_tol`` of the solves that only choose a support (reweighting
            rounds before the last, and every round when the values are refit); None keeps rel_tol.
        support_checks: such a solve also stops once its constraints hold and its support has
            not changed over this many consecutive checks.
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
    dtype: str = "float32"
    spectral_ratio: float = 25.0
    support_rel_tol: float | None = 1e-2
    support_checks: int = 5

    CHECKS: ClassVar = dict(
        rho=Real(gt=0, none=True), adaptive_rho=Flag(), adapt_iterations=Integer(ge=0),
        max_iterations=Integer(ge=1), abs_tol=Real(gt=0), rel_tol=Real(gt=0),
        feasibility_tol=Real(gt=0, lt=1), check_every=Integer(ge=1), relaxation=Real(ge=1, lt=2),
        dtype=OneOf("float32", "float64"), spectral_ratio=Real(gt=0),
        support_rel_tol=Real(gt=0, none=True), support_checks=Integer(ge=1))

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


@dataclass
class SolverInfo:
    """What happened in a solve (OSQP's habit): status, iterations (the most over neurons,
    summed over rounds), the residuals r, s and median rho at the last check (scaled units),
    and seconds."""

    status: Status
    iterations: int = 0
    primal_residual: float = math.nan
    dual_residual: float = math.nan
    rho: float = math.nan
    seconds: float = 0.0

    def record(self) -> dict:
        return {"status": str(self.status), "iterations": self.iterations,
                "primal_residual": self.primal_residual, "dual_residual": self.dual_residual,
                "rho": self.rho, "seconds": self.seconds}


@dataclass
class Solution:
    """U (N', M) with exact zeros, and what the solver did."""

    U: torch.Tensor
    info: SolverInfo
    converged: torch.Tensor = field(repr=False, default=None)


@dataclass
class _Data:
    """The scaled program ADMM iterates on: rows A (P', N'), targets Y, slack V, mask, radii."""

    A: torch.Tensor
    Y: torch.Tensor
    V: torch.Tensor
    mask: torch.Tensor
    eps: torch.Tensor
    per_neuron: bool
    hinge: bool
    target_norm: float


def solve(problem: LayerProblem, settings: ADMMSettings = ADMMSettings(), *, start: torch.Tensor | None = None,
          penalty: Penalty = Penalty(), support_only: bool = False,
          progress: Progress | None = None) -> Solution:
    """ADMM on ``problem`` (module docstring) from ``start`` (N', M) or the ridge solution.
    ``support_only``: only the support of the answer is used, so a solve may stop once its
    support has settled (``settings.support_checks``) at ``settings.support_rel_tol``."""
    t0 = time.perf_counter()
    dt = settings.torch_dtype
    live = problem.stats.gram.diagonal() > 0  # a feature zero on every row gets weight 0
    rows = _rows(problem, live, dt)
    if rows is None:  # the ball does not reach the range of A: no U meets eps
        return Solution(least_squares(problem).to(dt), SolverInfo(Status.INFEASIBLE, seconds=time.perf_counter() - t0))
    A, Y, V, mask, eps = rows
    sub_penalty = _restrict(penalty, live)
    rel_tol = max(settings.rel_tol, settings.support_rel_tol or 0) if support_only else settings.rel_tol
    stable = settings.support_checks if support_only else None
    U0 = None if start is None else start[live].to(dt)
    out = _admm(A, Y, V, mask, eps, problem.constraint, settings, rel_tol, U0, sub_penalty, stable, progress)
    U = torch.zeros(problem.n_inputs, problem.n_outputs, dtype=dt, device=A.device)
    U[live] = out.U
    out.U = U
    out.info.seconds = time.perf_counter() - t0
    return out


def _rows(problem: LayerProblem, live: torch.Tensor, dt):
    """(A, Y, V, mask, eps) restricted to the live features: the held rows of a ReLU program,
    the Gram-domain rows (L^T, L^-1 C) of a linear one (module docstring); None when the
    linear program's ball does not reach the range of A."""
    c = problem.constraint
    if problem.stats.held and problem.relu:
        return (problem.A[:, live].to(dt), problem.Y.to(dt), problem.V.to(dt), problem.active,
                c.eps.to(problem.A.device).to(dt))
    G = problem.stats.gram[live][:, live]
    C, t = problem.stats.cross[live], problem.stats.target_sq
    R, QtY = gram_rows(G, C)
    rest = (t - QtY.square().sum(0)).clamp_min(0)
    rest = rest if c.per_neuron else rest.sum().reshape(1)
    radius2 = c.eps.double().to(rest.device).square() - rest
    if not bool((radius2 >= 0).all()):  # eps^2 = rest: the ball touches the range of A (eps = 0 for Y = 0)
        return None
    mask = torch.ones(R.shape[0], QtY.shape[1], dtype=torch.bool, device=R.device)
    return R.to(dt), QtY.to(dt), torch.zeros_like(QtY, dtype=dt), mask, radius2.sqrt().to(dt)


def gram_rows(G: torch.Tensor, C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, Q^T Y) with R^T R = G and R^T (Q^T Y) = C: R = L^T from the Cholesky factor of G, or
    from its eigendecomposition (R = sqrt(Lambda) V^T on the positive eigenvalues) when G is
    singular; float64."""
    G, C = G.double(), C.double()
    L, info = torch.linalg.cholesky_ex(G)
    if int(info) == 0:
        return L.T, torch.linalg.solve_triangular(L, C, upper=False)
    lam, vec = torch.linalg.eigh(G)
    keep = lam > 1e-12 * float(lam.max().clamp_min(1e-300))
    root = lam[keep].sqrt()
    return root[:, None] * vec[:, keep].T, (vec[:, keep].T @ C) / root[:, None]


def least_squares(problem: LayerProblem) -> torch.Tensor:
    """The (ridge-regularised) least-squares U = G^+ C: what a linear program's infeasible
    layer returns, to show how close it can get."""
    G = problem.stats.gram.clone()
    G.diagonal().add_(1e-10 * float(G.diagonal().mean()) + 1e-12)
    return torch.linalg.lstsq(G, problem.stats.cross).solution


def _restrict(penalty: Penalty, live: torch.Tensor) -> Penalty:
    if penalty.grouped:
        return Penalty(groups=penalty.groups[live], group_weights=penalty.group_weights)
    return Penalty(weights=None if penalty.weights is None else penalty.weights[live])


@dataclass
class _Iterates:
    """ADMM's variables for the neurons still iterating (columns ``cols`` of the layer)."""

    W3: torch.Tensor
    AW3: torch.Tensor
    U1: torch.Tensor
    U2: torch.Tensor
    rho: torch.Tensor
    cols: torch.Tensor
    Y: torch.Tensor
    V: torch.Tensor
    mask: torch.Tensor
    eps: torch.Tensor
    stable: torch.Tensor
    support: torch.Tensor | None = None

    def keep(self, keep: torch.Tensor) -> None:
        """Drop the frozen neurons."""
        for name in ("W3", "AW3", "U1", "U2", "Y", "V", "mask"):
            setattr(self, name, getattr(self, name)[:, keep])
        self.rho, self.cols, self.eps = self.rho[keep], self.cols[keep], self.eps[keep] if self.eps.numel() > 1 else self.eps
        self.stable = self.stable[keep]
        self.support = None if self.support is None else self.support[:, keep]


def _admm(A, Y, V, mask, eps, constraint: Constraint, settings, rel_tol, U0, penalty, stable_checks,
          progress) -> Solution:
    """The iterations of the module doc on the scaled rows (A, Y, V)."""
    AtA = A.double().T @ A.double()
    c = max(_largest_eigenvalue(AtA) ** 0.5, 1e-12) / settings.spectral_ratio
    dt = A.dtype
    A, Y, V, eps = A / c, Y / c, V / c, eps / c
    Kinv = _system_inverse(AtA / c ** 2).to(dt)
    G = A @ Kinv  # W3 = G^T (W1 + U1) + Kinv (W2 + U2)
    W3 = G.T @ Y if U0 is None else U0
    per_neuron = constraint.per_neuron and not penalty.grouped
    data = _Data(A, Y, V, mask, eps, constraint.per_neuron, constraint.inactive == "hinge",
                 float(Y.norm()))
    N, M, dev = W3.shape[0], Y.shape[1], Y.device
    rho0 = settings.rho or 1.0 / float(W3.abs().mean().clamp_min(1e-8))
    it = _Iterates(W3, A @ W3, torch.zeros_like(Y), torch.zeros_like(W3), torch.full((M,), rho0, dtype=dt, device=dev),
                   torch.arange(M, device=dev), Y, V, mask, eps, torch.zeros(M, dtype=torch.long, device=dev))
    result = torch.zeros(N, M, dtype=dt, device=dev)
    iters = torch.zeros(M, dtype=torch.long, device=dev)
    done = torch.zeros(M, dtype=torch.bool, device=dev)
    last = torch.zeros(3, M, dtype=dt, device=dev)
    size = (N + A.shape[0]) ** 0.5
    for k in range(1, settings.max_iterations + 1):
        W1, W2, old = _step(it, data, G, Kinv, penalty, settings.relaxation)
        if k % settings.check_every and k != settings.max_iterations:
            continue
        r, s, ok = _check(it, data, W1, W2, old, penalty, settings, rel_tol, size, stable_checks, per_neuron, constraint)
        iters[it.cols] = k
        last[:, it.cols] = torch.stack([r, s, it.rho])
        if settings.adaptive_rho and k <= settings.adapt_iterations:
            _balance(it, r, s, per_neuron)
        if ok.any() and (per_neuron or ok.all()):
            result[:, it.cols[ok]] = W2[:, ok]
            done[it.cols[ok]] = True
            it.keep(~ok)
            if it.cols.numel() == 0:
                break
        if progress is not None:
            progress(k, int(done.sum()), M)
    if it.cols.numel():
        result[:, it.cols] = _prox(penalty, it.W3 - it.U2, it.rho, it.cols)
    status = Status.SOLVED if bool(done.all()) else Status.MAX_ITERATIONS
    info = SolverInfo(status, int(iters.max()), float(last[0].norm()), float(last[1].norm()),
                      float(last[2].median()))
    return Solution(result, info, done)


def _prox(penalty: Penalty, Z, rho, cols):
    return penalty.prox(Z, 1.0 / rho, cols)


def _step(it: _Iterates, data: _Data, G, Kinv, penalty: Penalty, alpha: float):
    """One iteration; returns W1, W2 and the previous (W3, A W3) for the dual residual."""
    Z = it.AW3 - it.U1
    W1 = _project(Z, it.Y, it.V, it.mask, it.eps, data.per_neuron, data.hinge)
    W2 = _prox(penalty, it.W3 - it.U2, it.rho, it.cols)
    old = (it.W3, it.AW3)
    if alpha != 1.0:  # over-relaxation: blend the new split variables with the old W3
        H1, H2 = alpha * W1 + (1 - alpha) * it.AW3, alpha * W2 + (1 - alpha) * it.W3
    else:
        H1, H2 = W1, W2
    it.W3 = G.T @ (H1 + it.U1) + Kinv @ (H2 + it.U2)
    it.AW3 = data.A @ it.W3
    it.U1 += H1 - it.AW3
    it.U2 += H2 - it.W3
    return W1, W2, old


def _check(it: _Iterates, data: _Data, W1, W2, old, penalty, settings, rel_tol, size, stable_checks,
           per_neuron, constraint):
    """Residuals r, s per neuron and which neurons (or the layer) converged with their
    constraints holding (the one certified rule, on the scaled iterate)."""
    W3_old, AW3_old = old
    r = ((W1 - it.AW3).square().sum(0) + (W2 - it.W3).square().sum(0)).sqrt()
    s = it.rho * ((it.AW3 - AW3_old).square().sum(0) + (it.W3 - W3_old).square().sum(0)).sqrt()
    tol_p = settings.abs_tol * size + rel_tol * torch.maximum(
        (W1.square().sum(0) + W2.square().sum(0)).sqrt(), (it.AW3.square().sum(0) + it.W3.square().sum(0)).sqrt())
    tol_d = settings.abs_tol * size + rel_tol * it.rho * (it.U1.square().sum(0) + it.U2.square().sum(0)).sqrt()
    small = (r <= tol_p) & (s <= tol_d)
    if stable_checks:
        now = W2 != 0
        if it.support is not None:
            it.stable = torch.where((now == it.support).all(0), it.stable + 1, 0)
        it.support = now
        small |= it.stable >= stable_checks
    if not per_neuron:
        small = small.all().expand_as(small)
    return r, s, small & _feasible(data, it, W2, constraint)


def _feasible(data: _Data, it: _Iterates, W2, constraint: Constraint) -> torch.Tensor:
    """``Constraint.holds_each`` for the iterate W2 on the scaled rows (one bool per neuron)."""
    AU = data.A @ W2
    disc = ((AU - it.Y) * it.mask).norm(dim=0)
    excess = (AU - it.V).masked_fill(it.mask, 0).clamp_min(0).norm(dim=0)
    scaled = Constraint(it.eps, constraint.per_neuron, constraint.inactive, constraint.tol)
    return scaled.holds_each(Measurement(disc, excess, data.target_norm)).expand(W2.shape[1])


def _project(Z, Y, V, mask, eps, per_neuron, hinge=False):
    """Projection of Z onto {ball around Y of radius eps on Omega} x {<= V off Omega}; with
    ``hinge`` onto one ball in the hinged residual (Z - Y on Omega, (Z - V)_+ off Omega), whose
    projection scales it by min(1, eps / ||R||)."""
    D = torch.where(mask, Z - Y, (Z - V).clamp_min(0)) if hinge else (Z - Y) * mask
    norm = D.norm(dim=0) if per_neuron else D.norm().reshape(1)
    shrink = torch.where(norm > eps, eps / norm.clamp_min(1e-30), torch.ones_like(norm))
    if hinge:
        return torch.where(mask, Y + D * shrink, torch.where(Z > V, V + D * shrink, Z))
    return torch.where(mask, Y + D * shrink, torch.minimum(Z, V))


def _system_inverse(AtA: torch.Tensor) -> torch.Tensor:
    """(A^T A + I)^(-1) via Cholesky (float64 in)."""
    K = AtA.clone()
    K.diagonal().add_(1.0)
    return torch.cholesky_inverse(torch.linalg.cholesky(K))


def _largest_eigenvalue(S: torch.Tensor, steps: int = 50) -> float:
    """lambda_max of a PSD matrix by power iteration, floored by max diag(S)."""
    v = torch.ones(S.shape[0], dtype=S.dtype, device=S.device)
    lam = 0.0
    for _ in range(steps):
        w = S @ v
        lam = float(w.norm())
        if lam == 0.0:
            break
        v = w / lam
    return max(lam, float(S.diagonal().max()) if S.numel() else 0.0)


def _balance(it: _Iterates, r, s, per_neuron, mu=10.0, tau=2.0) -> None:
    """Residual balancing; scaled duals are rescaled so the unscaled duals stay put."""
    if not per_neuron:
        r, s = r.norm().expand_as(it.rho), s.norm().expand_as(it.rho)
    factor = torch.ones_like(it.rho)
    factor = torch.where(r > mu * s, torch.full_like(it.rho, tau), factor)
    factor = torch.where(s > mu * r, torch.full_like(it.rho, 1 / tau), factor)
    it.rho, it.U1, it.U2 = it.rho * factor, it.U1 / factor, it.U2 / factor
