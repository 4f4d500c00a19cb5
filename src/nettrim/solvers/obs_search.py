"""OBS supports under Net-Trim's tolerance: the sparsest weights an OBS pass finds whose
measured claim holds, and the best weights at a count.

At a tolerance, a threshold ``tau`` on the OBS saliency (``sparsegpt_pass``) sets the size: a
larger tau removes more. For a given start U_s, the search finds the largest tau whose pass,
refit on its support (``nettrim.solvers.refit``), still satisfies the layer's constraint:
geometric bracketing by 4x and bisection in log tau on the passes alone, then a few passes,
each refit, from there (``_largest_tau``). With
one ball per neuron every neuron has its own tau (the neurons of a pass are independent), all
bisected at once.

ReLU awareness. An OBS pass measures error in the metric of the Gram matrix G: it fits a
linear target T. For a ReLU layer the program's hinge objective only charges an inactive entry
for rising above its slack V, so round 0 prunes from the original weights (T = their own
response) and each later round prunes from the damped least-squares fit of the
majorization-minimization target of the current answer U,

    T = Y on Omega,  T = min(A U, V) off Omega       (nettrim.solvers.refit)

which does not ask the inactive entries to come back up. For a linear program round r >= 1
prunes from the least-squares fit of the targets Y (in cascade it differs from the original
weights). The sparsest certified answer over the rounds is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..program import LayerProblem
from .obs import dead_inputs, inverse_factor, saliency_levels, sparsegpt_pass
from .refit import exact_refit_is_cheap, refit

TAU_RESOLUTION = 1.1
COARSE_RESOLUTION = 1.25
MAX_PASSES = 16
REFIT_TRIALS = 4


@dataclass
class OBSResult:
    """The answer, whether its claim holds, and the passes it took."""

    U: torch.Tensor
    holds: bool
    passes: int
    rounds: int


def _starts(problem: LayerProblem, U: torch.Tensor, damp: float) -> torch.Tensor:
    """The damped least-squares fit of the round's target (module docstring), (N', M)."""
    G = problem.stats.gram.clone()
    G.diagonal().add_(damp * float(G.diagonal().mean()) + 1e-12)
    if problem.relu:
        A, on = problem.A, problem.active
        T = torch.where(on, problem.Y, torch.minimum(A @ U.to(A), problem.V))
        C = (A.T @ T).double()
    else:
        C = problem.stats.cross
    L, info = torch.linalg.cholesky_ex(G)
    fit = torch.cholesky_solve(C, L) if int(info) == 0 else torch.linalg.lstsq(G, C).solution
    return fit.to(U.dtype)


def at_tolerance(problem: LayerProblem, *, damp: float, rounds: int, blocksize: int = 128) -> OBSResult:
    """The sparsest certified OBS answer over ``rounds`` rounds (module docstring); when no
    tau certifies, the refit dense start that is closest (``holds`` False)."""
    dt = torch.float32 if problem.weight.dtype != torch.float64 else torch.float64
    R, dead = inverse_factor(problem.stats.gram, damp), dead_inputs(problem.stats.gram)
    best, passes, start = None, 0, problem.weight.to(dt)
    for r in range(rounds):
        if r:
            start = _starts(problem, best.U if best is not None else start, damp)
        U, ok, n = _largest_tau(problem, start, R, dead, blocksize)
        passes += n
        if ok and (best is None or int((U != 0).sum()) < int((best.U != 0).sum())):
            best = OBSResult(U, True, passes, r + 1)
        elif best is None and r == rounds - 1:
            return OBSResult(U, False, passes, r + 1)
    best.passes = passes
    return best


def _largest_tau(problem, start, R, dead, blocksize):
    """The largest tau (per neuron with per-neuron balls) whose pass, refit, certifies:
    (U, holds, passes). First bracketed and bisected on the passes alone (cheap: no refit), to
    a ratio of ``COARSE_RESOLUTION``; the refit then leaves slack, and at most
    ``REFIT_TRIALS`` further passes, each refit, push tau up from there (doubling until one
    fails, then bisecting)."""
    per = problem.constraint.per_neuron
    M = problem.n_outputs
    levels = saliency_levels(start, R)
    tau = levels.median(dim=0).values.clamp_min(1e-30) if per else levels.median().clamp_min(1e-30).reshape(1)
    state = _Bracket(problem, refit(problem, _zero_dead(start, dead)), per, M)
    run = lambda t: sparsegpt_pass(start, R, tau=t if per else float(t), blocksize=blocksize, dead=dead).U
    passes = 0
    for passes in range(1, MAX_PASSES + 1):
        state.update(tau, run(tau), refitted=False)
        if state.narrow(COARSE_RESOLUTION):
            break
        tau = state.next(tau)
    state.refit_best()
    tau = torch.where(torch.isinf(state.hi), state.lo * 2, (state.lo * state.hi).sqrt()).clamp_min(1e-30)
    for _ in range(REFIT_TRIALS):
        passes += 1
        state.update(tau, refit(problem, run(tau)), refitted=True)
        if state.narrow(TAU_RESOLUTION):
            break
        tau = state.next(tau)
    return state.best, bool(state.ok.all()), passes


class _Bracket:
    """The bisection state of ``_largest_tau``: per ball the largest passing tau (lo), the
    smallest failing one (hi), and the best weights so far."""

    def __init__(self, problem, start_refit, per: bool, M: int):
        self.problem, self.per, self.M = problem, per, M
        self.best = start_refit
        self.ok = problem.constraint.holds_each(problem.measure(start_refit))
        self.lo = self.hi = None
        self.refit_pending = False

    def update(self, tau, U, *, refitted: bool) -> None:
        holds = self.problem.constraint.holds_each(self.problem.measure(U))
        if self.lo is None:
            self.lo, self.hi = torch.zeros_like(tau), torch.full_like(tau, math.inf)
        take = holds if self.per else holds.expand(self.M)
        self.best = torch.where(take[None, :].to(self.best.device), U, self.best)
        self.refit_pending = self.refit_pending or (bool(take.any()) and not refitted)
        self.ok = self.ok | holds
        self.lo, self.hi = torch.where(holds, tau, self.lo), torch.where(holds, self.hi, tau)
        if refitted:  # a failing refit trial: the coarse bracket's upper end moves down
            self.hi = torch.where(holds, self.hi, torch.minimum(self.hi, tau))

    def narrow(self, resolution: float) -> bool:
        return bool(((self.hi / self.lo.clamp_min(1e-300)) < resolution).all())

    def next(self, tau):
        return torch.where(torch.isinf(self.hi), tau * 4, torch.where(self.lo == 0, tau / 4, (self.lo * self.hi).sqrt()))

    def refit_best(self) -> None:
        """Refit the best unrefit answer; the upper end reopens (the refit left slack)."""
        if self.refit_pending:
            self.best = refit(self.problem, self.best)
            self.refit_pending = False
        self.hi = torch.full_like(self.hi, math.inf)


def _zero_dead(U: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    U = U.clone()
    U[dead] = 0
    return U


DAMP_STEPS = (1.0, 10.0, 100.0)  # multiples of the damping tried at a count, on the check rows


def at_count(problem: LayerProblem, keep: int, *, damp: float, blocksize: int = 128) -> tuple[torch.Tensor, dict]:
    """Exactly ``keep`` non-zeros (dead inputs first): SparseGPT's per-block fraction rule
    from the original weights, with the damping of G chosen on the layer's check rows.

    Each damping of ``DAMP_STEPS`` (times ``damp``) prunes on the other rows (``fit()``) and
    is judged on the check rows by the layer's own measure (the hinge ball's quantity for a
    ReLU layer); the refit on the support is tried too for the best one where an exact refit
    is cheap (``refit.EXACT_FLOPS``). The winner is run again on every row. Damping is the
    regulariser of the OBS updates: with few rows per input (P / N' small) the updates fit the
    calibration rows' noise, and the check rows see it."""
    sparsity = 1.0 - keep / problem.weight.numel()
    start = problem.weight.float() if problem.weight.dtype != torch.float64 else problem.weight
    choice, refit_too = damp, False
    check = problem.stats.check
    if check is not None and check.rows > 0:
        choice, refit_too = _validated(problem, start, sparsity, damp, blocksize)
    G = problem.stats.gram
    U = sparsegpt_pass(start, inverse_factor(G, choice), sparsity=sparsity, blocksize=blocksize,
                       dead=dead_inputs(G)).U
    return (refit(problem, U) if refit_too else U), {"damp": choice, "refit": refit_too}


def _validated(problem: LayerProblem, start, sparsity: float, damp: float, blocksize: int):
    """(damping, refit) with the lowest error on the check rows (``at_count``)."""
    fit = replace(problem, stats=problem.stats.fit())
    check = replace(problem, stats=problem.stats.check, relu=problem.relu and problem.stats.check.held)
    score = lambda U: float(check.constraint.bounded(check.measure(U)).norm())
    G = fit.stats.gram
    tried = []
    for step in DAMP_STEPS:
        U = sparsegpt_pass(start, inverse_factor(G, damp * step), sparsity=sparsity, blocksize=blocksize,
                           dead=dead_inputs(G)).U
        tried.append((score(U), damp * step, False, U))
    best = min(tried, key=lambda t: t[0])
    if exact_refit_is_cheap(fit, best[3]):
        tried.append((score(refit(fit, best[3])), best[1], True, None))
    best = min(tried, key=lambda t: t[0])
    return best[1], best[2]
