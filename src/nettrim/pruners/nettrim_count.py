"""Net-Trim at a target count: the relative eps searched so that each layer keeps k non-zeros."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..layer import ADMMSettings, trim_layer
from ..status import Status
from .base import LayerJob, LayerOutcome, Target, slack
from .threshold import threshold_layer


@dataclass
class NetTrimAtSparsity(Target):
    """Net-Trim with the relative eps searched to reach k non-zeros.

    Every solve is polished on its support (``nettrim.layer.polish``: same non-zeros, smaller
    discrepancy). The non-zero count falls roughly like a power of eps, so the search interpolates log eps
    against log nnz between the nearest solves on either side of k (doubling or tripling eps
    until it has both sides), and stops at the first solve with 0.95 k <= nnz <= k. Each solve
    starts from the previous one's answer. V is the original response on X (parallel: 0 off the
    active set; cascade: relu(W^T X_hat) with ``relax_slack``, else W^T X_hat), so the original
    weights are always feasible. A solve "fits" when its constraints hold (converged or not)
    and it has at most k non-zeros; the fitting solve with the smallest eps is kept. If no solve
    fits (then the solve nearest k from above), or the solves run out below 0.95 k and
    thresholding does better (see ``_settle``), the nearest solve above is hard-thresholded
    to k and the outcome says so
    (``info["thresholded"]``).
    """

    settings: ADMMSettings = ADMMSettings()
    per_neuron: bool | frozenset[str] = False  # True: every layer; names: those layers
    max_solves: int = 8
    start: float = 0.1
    relax_slack: bool = True
    polish: bool = True
    reweight: int = 0
    hinge: bool = False

    def __call__(self, job: LayerJob) -> LayerOutcome:
        k = self.keep(job)
        theta = (0.0 if self.relax_slack else 1.0) if job.spec.relu and not job.first else None
        V = slack(job.Z, theta)
        norm = float(job.Y.norm())
        tried = []  # (g, nnz, result, fits): fits = constraints hold and nnz <= k
        g, warm = self.start, None
        while len(tried) < self.max_solves:
            res = trim_layer(job.X, job.Y, g * norm, V=V, relu=job.spec.relu, bias=job.bias is not None,
                             per_neuron=job.in_layers(self.per_neuron), settings=self.settings, warm_start=warm,
                             polish=self.polish, reweight=self.reweight, hinge=self.hinge)
            warm = (res.weight, res.bias)
            tried.append((g, res.nnz, res, res.within and res.nnz <= k))
            below, above = _bracket(tried)
            if below is not None and below[1] >= 0.95 * k:
                break
            g = _next_eps(below, above, k, bisect=len(tried) >= 2 and tried[-1][3] == tried[-2][3])
        below, above = _bracket(tried)
        if below is None:  # nothing fits: threshold the solve nearest the count from above
            above = _nearest_from_above(tried, k)
        g, nnz, res, w, b, thresholded = _settle(job, k, below, above)
        return LayerOutcome(w, b, status=Status.THRESHOLDED if thresholded else res.status,
                            iterations=res.iterations, epsilon=g * norm,
                            certified=res.within and not thresholded,
                            info={"relative_epsilon": g, "thresholded": thresholded,
                                  "tolerance": self.settings.feasibility_tol, "slack_margin": theta,
                                  "hinge": self.hinge and job.spec.relu,
                                  "solver_nnz": nnz, "solves": len(tried)})


def _settle(job: LayerJob, k: int, below, above):
    """The answer with at most k non-zeros: the fitting solve with the smallest eps, or, when the
    search ran out short of 0.95 k (or nothing fits), the nearest solve above hard-thresholded
    to k if its layer response ||act(W x + b) - y||_F on the captured samples is closer to Y."""
    cast = lambda res: (res.weight.to(job.weight), None if res.bias is None else res.bias.to(job.weight))
    if above is not None and (below is None or below[1] < 0.95 * k):
        w, b = threshold_layer(*cast(above[2]), k)
        if below is None or _response_error(job, w, b) < _response_error(job, *cast(below[2])):
            return (*above[:3], w, b, True)
    return (*below[:3], *cast(below[2]), False)


def _response_error(job: LayerJob, w: torch.Tensor, b: torch.Tensor | None) -> float:
    return float((job.responses(w, b)[1] - job.Y).norm())


def _nearest_from_above(tried, k: int):
    """The solve with the fewest non-zeros that still has at least k (else the densest one):
    the fallback to threshold when no solve fits, so that the layer keeps k non-zeros when
    any solve had that many (the largest-eps solve may have stopped at its iteration cap with
    far fewer)."""
    enough = [t for t in tried if t[1] >= k]
    return min(enough, key=lambda t: t[1]) if enough else max(tried, key=lambda t: t[1])


def _bracket(tried):
    """The solves either side of the target: ``below`` fits (constraints hold, nnz <= k) with the
    smallest eps; ``above`` is the largest eps under it that does not (too many non-zeros, or
    the constraints not met: eps too small to be feasible or too tight to reach)."""
    fits = [t for t in tried if t[3]]
    below = min(fits, key=lambda t: t[0]) if fits else None
    rest = [t for t in tried if not t[3] and (below is None or t[0] < below[0])]
    above = max(rest, key=lambda t: t[0]) if rest else None
    return below, above


def _next_eps(below, above, k: int, bisect: bool = False) -> float:
    """Next relative eps: log-log interpolation toward 0.975 k inside the bracket, else a step.

    The count is flat over wide ranges of eps and then falls steeply, so interpolation alone can
    creep from one end; after two solves on the same side the bracket is halved in log eps
    instead (the Illinois idea), which bounds the number of solves."""
    if below is None:
        return min(1.0, above[0] * 3)
    if above is None:
        return below[0] / 2
    (g1, n1, *_), (g0, n0, *_) = below, above
    if n1 <= 0 or n0 <= n1 or bisect:
        return math.sqrt(g0 * g1)
    t = (math.log(0.975 * k) - math.log(n0)) / (math.log(n1) - math.log(n0))
    t = min(max(t, 0.15), 0.85)  # stay strictly inside the bracket
    return math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0)))
