"""The rivals as layer methods behind the common interface, plus Net-Trim at a target sparsity.

Every method here prunes one layer to a non-zero count k = round(total (1 - sparsity)) (or a
count given per layer, to compare methods at exactly the same counts, the Net-Trim papers'
protocol). In cascade mode a method sees the pruned network's inputs X_hat and fits the
original layer's response; in parallel mode, the original inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..layer import ADMMSettings, trim_layer
from ..layer.result import INFEASIBLE
from .base import LayerJob, LayerOutcome
from .dc import dc_layer_at_sparsity
from .lobs import lobs_layer
from .threshold import keep_count, threshold_layer


def _total(job: LayerJob) -> int:
    return job.weight.numel() + (0 if job.bias is None else job.bias.numel())


def _nnz(w, b) -> int:
    return int((w != 0).sum()) + (0 if b is None else int((b != 0).sum()))


@dataclass
class _Target:
    """Target count per layer: from ``counts[name]`` when given, else from ``sparsity``."""

    sparsity: float | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def keep(self, job: LayerJob) -> int:
        if job.spec.name in self.counts:
            return int(self.counts[job.spec.name])
        return keep_count(_total(job), self.sparsity)


@dataclass
class ThresholdMethod(_Target):
    """Hard thresholding: keep the k largest |w| of the layer (exact top-k)."""

    def __call__(self, job: LayerJob) -> LayerOutcome:
        w, b = threshold_layer(job.weight, job.bias, self.keep(job))
        return LayerOutcome(w, b)


@dataclass
class LOBSMethod(_Target):
    """Layer-wise OBS with the damped Hessian of the layer inputs (greedy = exact OBC)."""

    greedy: bool = True
    damp: float = 1e-2

    def __call__(self, job: LayerJob) -> LayerOutcome:
        w, b = lobs_layer(job.weight, job.bias, job.X, self.keep(job), greedy=self.greedy, damp=self.damp)
        return LayerOutcome(w, b, info={"greedy": self.greedy})


@dataclass
class DCMethod(_Target):
    """FeTa DC pruning (softplus surrogate, DCA + accelerated proximal SVRG), lambda searched."""

    options: dict = field(default_factory=dict)

    def __call__(self, job: LayerJob) -> LayerOutcome:
        total = _total(job)
        sparsity = 1 - self.keep(job) / total
        w, b, info = dc_layer_at_sparsity(job.weight, job.bias, job.X, job.Y, sparsity,
                                          relu=job.spec.relu, **self.options)
        status = "solved" if info["reached"] or info["thresholded"] else "target_missed"
        return LayerOutcome(w, b, status=status, info=info)


@dataclass
class NetTrimAtSparsity(_Target):
    """Net-Trim with the relative eps searched to reach k non-zeros.

    Every solve is polished on its support (``nettrim.layer.polish``: same non-zeros, smaller
    discrepancy). The non-zero count falls roughly like a power of eps, so the search interpolates log eps
    against log nnz between the nearest solves on either side of k (doubling or tripling eps
    until it has both sides), and stops at the first solve with 0.95 k <= nnz <= k. Each solve
    starts from the previous one's answer. V is the original response on X (parallel: 0 off the
    active set; cascade: relu(W^T X_hat) with ``relax_slack``, else W^T X_hat), so the original
    weights are always feasible. The answer with at most k non-zeros and the smallest eps is
    kept; if no solve reaches k, the closest is hard-thresholded to k and the outcome
    says so (``info["thresholded"]``).
    """

    settings: ADMMSettings = ADMMSettings()
    per_neuron: bool = False
    max_solves: int = 8
    start: float = 0.1
    relax_slack: bool = True
    polish: bool = True
    reweight: int = 0
    hinge: bool = False

    def __call__(self, job: LayerJob) -> LayerOutcome:
        k = self.keep(job)
        V = None
        if job.spec.relu and not job.first:
            V = torch.relu(job.Z) if self.relax_slack else job.Z
        norm = float(job.Y.norm())
        below, above = None, None  # (g, nnz, result): nnz <= k with the smallest g; nnz > k, largest g
        g, warm, solves = self.start, None, 0
        while solves < self.max_solves:
            res = trim_layer(job.X, job.Y, g * norm, V=V, relu=job.spec.relu, bias=job.bias is not None,
                             per_neuron=self.per_neuron, settings=self.settings, warm_start=warm,
                             polish=self.polish, reweight=self.reweight, hinge=self.hinge)
            solves += 1
            warm = (res.weight, res.bias)
            if res.nnz <= k and res.status != INFEASIBLE:  # an infeasible eps is too small
                below = (g, res.nnz, res) if below is None or g < below[0] else below
            else:
                above = (g, res.nnz, res) if above is None or g > above[0] else above
            if below is not None and below[1] >= 0.95 * k:
                break
            g = _next_eps(below, above, k)
        thresholded = below is None
        g, nnz, res = above if thresholded else below
        w, b = res.weight.to(job.weight), None if res.bias is None else res.bias.to(job.weight)
        if thresholded:
            w, b = threshold_layer(w, b, k)
        return LayerOutcome(w, b, status=res.status, iterations=res.iterations, epsilon=g * norm,
                            info={"relative_epsilon": g, "thresholded": thresholded,
                                  "hinge": self.hinge and job.spec.relu,
                                  "solver_nnz": nnz, "solves": solves})


def _next_eps(below, above, k: int) -> float:
    """Next relative eps: log-log interpolation toward 0.975 k inside the bracket, else a step."""
    if below is None:
        return min(1.0, above[0] * 3)
    if above is None:
        return below[0] / 2
    (g1, n1, _), (g0, n0, _) = below, above
    if n1 <= 0:
        return math.sqrt(g0 * g1)
    t = (math.log(0.975 * k) - math.log(n0)) / (math.log(n1) - math.log(n0))
    t = min(max(t, 0.15), 0.85)  # stay strictly inside the bracket
    return math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0)))
