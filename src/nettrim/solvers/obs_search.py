"""OBS supports under Net-Trim's tolerance: the sparsest weights an OBS pass finds whose
measured claim holds, and the best weights at a count.

At a tolerance, a threshold ``tau`` on the OBS saliency (``sparsegpt_pass``) sets the size: a
larger tau removes more. For a given start U_s, the search finds the largest tau whose pass,
refit on its support (``nettrim.solvers.refit``), still satisfies the layer's constraint
(``_largest_tau``). Each trial is a pass, a short batched refit (``refit.TRIAL``: one
majorization step of a few conjugate-gradient steps in the Gram matrix for a ReLU layer, a
few conjugate-gradient steps for a linear one) and one measurement; the next tau comes from
regula falsi on log(measured / eps) against log tau between the largest passing and the
smallest failing tau (a secant step outside them), until they are within ``TAU_RESOLUTION``
or the passing answer uses ``CLOSE_ENOUGH`` of its ball. With one ball per neuron every
neuron has its own tau (the neurons of a pass are independent), all searched at once.

The answer is the passing trial as it was refit and measured. Refitting it in full
afterwards (``FINAL_EFFORT``, None by default) was measured (docs/scale.md) to cost a third
of the search on a 768-3072-768 block and to raise the error on rows not used for pruning: at
the same support it fits the calibration rows closer (the short refit is an early-stopped one).

ReLU awareness. An OBS pass measures error in the metric of the Gram matrix G: it fits a
linear target T. For a ReLU layer the program's hinge objective only charges an inactive entry
for rising above its slack V, so round 0 prunes from the original weights (T = their own
response) and each later round prunes from the damped least-squares fit of the
majorization-minimization target of the current answer U,

    T = Y on Omega,  T = min(A U, V) off Omega       (nettrim.solvers.refit)

which does not ask the inactive entries to come back up. A linear program's target does not
depend on U: it has one round, from whichever of the original weights and the damped
least-squares fit of Y is closer to Y (the original weights in parallel and for the first
layer; the fit, later in cascade, where it differs). A later round starts its search at the
tau the round before found. The sparsest certified answer over the rounds is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..program import LayerProblem, Measurement
from .obs import dead_inputs, inverse_factor, saliency_levels, sparsegpt_pass
from .refit import FULL, TRIAL, Effort, exact_refit_is_cheap, hinge_sq, refit

TAU_RESOLUTION = 1.1  # a ball's search ends when its failing tau is within this factor of its passing one
CLOSE_ENOUGH = 0.97  # ... or when its passing answer measures at least this fraction of eps
MAX_TRIALS = 8  # passes, each refit and measured, per round
SLOPE = 0.5  # d log(measured) / d log(tau) assumed until two trials measure it
MAX_STEP = 16.0  # the largest factor one secant step moves tau by
FINAL_EFFORT: Effort | None = None  # a refit of the answer after the search (module docstring)


@dataclass
class OBSResult:
    """The answer, whether its claim holds, the passes it took and the rounds it ran; ``tau``
    (per ball) the largest passing threshold of the last round; ``measured`` U's measurement
    (``LayerProblem.measure``, per neuron)."""

    U: torch.Tensor
    holds: bool
    passes: int
    rounds: int
    tau: torch.Tensor | None = None
    measured: Measurement | None = None


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
    """The sparsest certified OBS answer over ``rounds`` rounds (module docstring), with its
    measurement; when no tau certifies, the refit dense start that is closest (``holds`` False)."""
    dt = torch.float32 if problem.weight.dtype != torch.float64 else torch.float64
    R, dead = inverse_factor(problem.stats.gram, damp), dead_inputs(problem.stats.gram)
    best, passes, start, tau = None, 0, problem.weight.to(dt), None
    if not problem.relu and rounds > 1:  # the targets' fit does not depend on U: one round
        start, rounds = _closer(problem, start, _starts(problem, start, damp)), 1
    for r in range(rounds):
        if r:
            start = _starts(problem, best.U if best is not None else start, damp)
        found = _largest_tau(problem, start, R, dead, blocksize, tau)
        passes += found.passes
        tau = found.tau
        if found.holds and (best is None or _nnz(found.U) < _nnz(best.U)):
            best = replace(found, rounds=r + 1)
        elif best is None and r == rounds - 1:
            return replace(found, passes=passes, rounds=r + 1)
    best.passes = passes
    if FINAL_EFFORT is not None:
        best.U, best.measured = _final(problem, best.U, best.measured, FINAL_EFFORT)
        best.holds = problem.constraint.holds(best.measured)
    return best


def _closer(problem: LayerProblem, *starts: torch.Tensor) -> torch.Tensor:
    """The start whose dense response is closest to the targets (a linear program's round)."""
    return min(starts, key=lambda U: float(problem.measure(U).discrepancy.norm()))


def _final(problem: LayerProblem, U: torch.Tensor, m: Measurement, effort: Effort):
    """U (measured ``m`` per neuron) refit with ``effort`` and measured; a neuron keeps its
    column of U where the refit did not lower f_m (d_m and h_m are per column, so kept columns
    keep their measurement): the answer and its measurement."""
    new = refit(problem, U, effort=replace(effort, guard=False))
    m_new = problem.measure(new)
    better = hinge_sq(m_new) <= hinge_sq(m)
    merged = Measurement(torch.where(better, m_new.discrepancy, m.discrepancy),
                         torch.where(better, m_new.excess, m.excess), m_new.target_norm)
    return torch.where(better[None, :].to(U.device), new, U), merged


def _nnz(U: torch.Tensor) -> int:
    return int((U != 0).sum())


def _largest_tau(problem, start, R, dead, blocksize, tau0=None) -> OBSResult:
    """The largest tau (per neuron with per-neuron balls) whose pass, refit (``refit.TRIAL``),
    certifies, searched from ``tau0`` (else the median first-block saliency): the round's best
    answer (columns from the trials that passed, the refit dense start where none did) with
    its measurement, whether every ball holds, the passes, the passing tau."""
    per = problem.constraint.per_neuron
    levels = saliency_levels(start, R)
    median = levels.median(dim=0).values if per else levels.median().reshape(1)
    tau = (median if tau0 is None else torch.where(tau0 > 0, tau0.to(median), median)).clamp_min(1e-30)
    search = _Search(problem, per)
    passes = 0
    for passes in range(1, MAX_TRIALS + 1):
        U = sparsegpt_pass(start, R, tau=tau if per else float(tau), blocksize=blocksize, dead=dead).U
        search.update(tau, refit(problem, U, effort=TRIAL))
        if search.done():
            break
        tau = search.next()
    if not bool(search.ok.all()):  # balls no trial satisfied take the dense start, refit
        search.take(refit(problem, _zero_dead(start, dead), effort=FULL), ~search.ok)
    return OBSResult(search.best, bool(search.ok.all()), passes, 1, search.lo, search.measured())


class _Search:
    """The state of ``_largest_tau``, per ball: the largest passing tau (lo, 0 before one
    passes) and the smallest failing one (hi, inf before one fails), with log(measured / eps)
    at each (g_lo, g_hi), the last two trials (for the secant), and the best weights so far
    with their per-neuron d_m, h_m."""

    def __init__(self, problem: LayerProblem, per: bool):
        self.problem, self.per = problem, per
        self.best = self.d = self.h = self.ok = None
        self.lo = self.hi = self.g_lo = self.g_hi = self.last = self.previous = None

    def update(self, tau: torch.Tensor, U: torch.Tensor) -> None:
        holds, g = self.take(U)
        holds, g, tau = holds.to(tau.device), g.to(tau), tau.clone()
        if self.lo is None:
            self.lo, self.hi = torch.zeros_like(tau), torch.full_like(tau, math.inf)
            self.g_lo, self.g_hi = torch.full_like(tau, -math.inf), torch.full_like(tau, math.inf)
        self.lo, self.g_lo = torch.where(holds, tau, self.lo), torch.where(holds, g, self.g_lo)
        self.hi, self.g_hi = torch.where(holds, self.hi, tau), torch.where(holds, self.g_hi, g)
        self.previous, self.last = self.last, (tau.log(), g)

    def take(self, U: torch.Tensor, where: torch.Tensor | None = None):
        """Measure U; its columns replace the best ones in the balls that hold (in the balls
        of ``where`` instead, when given: the fallback). Returns per ball (holds,
        log(measured / eps))."""
        c = self.problem.constraint
        m = self.problem.measure(U)
        holds = c.holds_each(m)
        g = (c.bounded(m) / c.eps.to(m.discrepancy).clamp_min(1e-300)).clamp_min(1e-12).log()
        use = holds if where is None else where.to(holds.device)
        if self.best is None:
            self.best, self.d, self.h, self.ok = U, m.discrepancy, m.excess, holds
            return holds, g
        cols = use if self.per else use.expand(U.shape[1])
        self.best = torch.where(cols[None, :].to(U.device), U, self.best)
        self.d, self.h = torch.where(cols, m.discrepancy, self.d), torch.where(cols, m.excess, self.h)
        self.ok = self.ok | (use & holds)
        return holds, g

    def measured(self) -> Measurement:
        return Measurement(self.d, self.h, self.problem.stats.target_norm)

    def done(self) -> bool:
        return bool(self._close().all())

    def _close(self) -> torch.Tensor:
        return (self.hi / self.lo.clamp_min(1e-300) < TAU_RESOLUTION) | (self.g_lo >= math.log(CLOSE_ENOUGH))

    def next(self) -> torch.Tensor:
        """Per ball: regula falsi in (log tau, g) between lo and hi, kept within the middle
        70 % of the bracket; outside a bracket, a secant step to g = 0 from the end that has
        one, at the slope of the last two trials (``SLOPE`` until there are two; at most a
        factor ``MAX_STEP``, at least 1.5). A ball that is done stays at its lo."""
        x_lo, x_hi = self.lo.clamp_min(1e-300).log(), self.hi.log()
        inside = (self.lo > 0) & torch.isfinite(self.hi)
        t = (-self.g_lo / (self.g_hi - self.g_lo)).nan_to_num(0.5).clamp(0.15, 0.85)
        between = x_lo + t * (x_hi - x_lo)
        slope = torch.full_like(x_lo, SLOPE)
        if self.previous is not None:
            (x0, g0), (x1, g1) = self.previous, self.last
            measured = (g1 - g0) / (x1 - x0)
            slope = torch.where((x1 != x0) & (measured > 0.05) & torch.isfinite(measured), measured, slope)
        x, g = torch.where(self.lo > 0, x_lo, x_hi), torch.where(self.lo > 0, self.g_lo, self.g_hi)
        step = (-g / slope).clamp(-math.log(MAX_STEP), math.log(MAX_STEP))
        step = torch.where(self.lo > 0, step.clamp_min(math.log(1.5)), step.clamp_max(-math.log(1.5)))
        x_next = torch.where(inside, between, x + step)
        return torch.where(self._close(), self.lo, x_next.exp()).clamp_min(1e-30)


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
