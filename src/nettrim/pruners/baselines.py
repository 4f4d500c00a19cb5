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
    """Net-Trim with eps searched (log-bisection on the relative eps) to reach k non-zeros.

    V is the original response on X (parallel: 0 off the active set; cascade: W^T X_hat), so
    the original weights are always feasible. The search keeps the sparsest solution with at
    most k non-zeros; if none has, the densest-but-closest is hard-thresholded to k and the
    outcome says so (``info["thresholded"]``).
    """

    settings: ADMMSettings = ADMMSettings()
    per_neuron: bool = True
    max_solves: int = 7
    bracket: tuple[float, float] = (1e-3, 1.0)

    def __call__(self, job: LayerJob) -> LayerOutcome:
        k = self.keep(job)
        V = job.Z if (job.spec.relu and not job.first) else None
        norm = float(job.Y.norm())
        lo, hi = (math.log(g) for g in self.bracket)
        best = None  # (nnz, g, result) with nnz <= k
        closest = None
        for _ in range(self.max_solves):
            g = math.exp((lo + hi) / 2)
            res = trim_layer(job.X, job.Y, g * norm, V=V, relu=job.spec.relu, bias=job.bias is not None,
                             per_neuron=self.per_neuron, settings=self.settings)
            if res.nnz <= k:
                best = (res.nnz, g, res) if best is None or g < best[1] else best
                hi = math.log(g)
            else:
                closest = (res.nnz, g, res) if closest is None or res.nnz < closest[0] else closest
                lo = math.log(g)
            if best is not None and best[0] >= 0.97 * k:
                break
        thresholded = best is None
        nnz, g, res = best if best is not None else closest
        w, b = res.weight.to(job.weight), None if res.bias is None else res.bias.to(job.weight)
        if thresholded:
            w, b = threshold_layer(w, b, k)
        return LayerOutcome(w, b, status=res.status, iterations=res.iterations, epsilon=g * norm,
                            info={"relative_epsilon": g, "thresholded": thresholded,
                                  "solver_nnz": nnz})
