"""Net-Trim at a count: each layer keeps exactly k non-zeros (weights and bias together).

1. Support. The relative eps of the layer's program (V and the reweighting as in the
   tolerance path, ``NetTrimMethod``) is searched until a solve keeps between k and
   (1 + ``overshoot``) k non-zeros: log-log interpolation between the nearest solves either
   side of k, a power-law step until both sides are known, each solve warm-started from the
   previous one, at most ``max_solves`` solves. The count moves in jumps as eps
   moves, so the search cannot be asked to land on k itself.
2. Count. The solve nearest k from above is cut to exactly k, its smallest |u| removed.
3. Values. The kept weights are refit on that support (``nettrim.layer.refit``, the layer's
   ReLU-aware least squares) and the constraints of the chosen solve's eps are measured on
   the result: the layer is certified when they hold, else its status says ``thresholded``.

When every solve keeps fewer than k non-zeros (a dense target the search did not reach), the
densest one's support is filled up to k with the largest original weights outside it, then
refit and measured the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..layer import trim_layer
from ..layer.problem import LayerProblem, append_ones
from ..layer.refit import refit_on_support
from ..status import Status
from .base import LayerJob, LayerOutcome, Target, slack
from .certificate import check_layer
from .threshold import threshold_layer


@dataclass
class NetTrimAtSparsity(Target):
    """The layer method of ``NetTrim`` with a ``sparsity`` or ``counts`` target; ``tolerance``
    is the same NetTrim's tolerance-path layer method (for V, the reweighting, the settings)."""

    tolerance: object = None  # NetTrimMethod
    max_solves: int = 8
    start: float = 0.1
    overshoot: float = 0.15
    progress: object = None

    def __call__(self, job: LayerJob) -> LayerOutcome:
        k = self.keep(job)
        nt = self.tolerance
        V = slack(job.Z, nt.slack_margin(job))
        norm = float(job.Y.norm())
        if k == 0:  # nothing kept: the zero layer, its claim at the starting eps measured as any
            zero = lambda t: None if t is None else torch.zeros_like(t)
            return self._outcome(job, self.start * norm, zero(job.weight), zero(job.bias),
                                 Status.SOLVED, 0, 0)
        tried: list[tuple[float, int, object]] = []  # (relative eps, nnz, trim_layer result)
        g, warm = self.start, None
        while len(tried) < self.max_solves:
            res = trim_layer(job.X, job.Y, g * norm, V=V, relu=job.spec.relu,
                             bias=job.bias is not None, settings=nt.settings, warm_start=warm,
                             reweight=nt.reweight, support_only=True, progress=self.progress)
            tried.append((g, res.nnz, res))
            warm = (res.weight, res.bias)
            if k <= res.nnz <= (1 + self.overshoot) * k:
                break
            g = _next_eps(tried, k)
        above = [t for t in tried if t[1] >= k]
        g, nnz, res = min(above, key=lambda t: t[1]) if above else max(tried, key=lambda t: t[1])
        cast = lambda t: None if t is None else t.to(job.weight)
        w, b = cast(res.weight), cast(res.bias)
        w, b = threshold_layer(w, b, k) if above else _fill(w, b, job, k)
        w, b = _refit(job, w, b, V)
        return self._outcome(job, g * norm, w, b, Status.SOLVED, len(tried), nnz)

    def _outcome(self, job, eps, w, b, status, solves, solver_nnz) -> LayerOutcome:
        info = {"relative_epsilon": eps / max(float(job.Y.norm()), 1e-30), "solves": solves,
                "solver_nnz": solver_nnz, "tolerance": self.tolerance.settings.feasibility_tol,
                "hinge": job.spec.relu, "slack_margin": self.tolerance.slack_margin(job),
                "gap": float(((job.Z - job.Y) * job.active).norm())}
        certified = check_layer(job, w, b, {"epsilon": eps, "info": info}).holds
        if status == Status.SOLVED and not certified:
            status = Status.THRESHOLDED
        return LayerOutcome(w, b, status=status, epsilon=eps, certified=certified, info=info)


def _fill(w: torch.Tensor, b: torch.Tensor | None, job: LayerJob, k: int):
    """(w, b) with its support grown to k entries: the largest |original weight| outside it."""
    flat = torch.cat([w.reshape(-1), b.reshape(-1)]) if b is not None else w.reshape(-1)
    orig = torch.cat([job.weight.reshape(-1), job.bias.reshape(-1)]) if b is not None else job.weight.reshape(-1)
    add = k - int((flat != 0).sum())
    score = orig.abs().masked_fill(flat != 0, -1.0)
    idx = torch.topk(score, add).indices
    flat = flat.clone()
    flat[idx] = orig[idx]
    return flat[:w.numel()].reshape(w.shape), (flat[w.numel():] if b is not None else None)


def _refit(job: LayerJob, w: torch.Tensor, b: torch.Tensor | None, V: torch.Tensor | None):
    """The values on the support of (w, b), refit (``nettrim.layer.refit``)."""
    bias = b is not None
    A = append_ones(job.X.double()) if bias else job.X.double()
    Y = job.Y.double()
    Vd = torch.zeros_like(Y) if V is None else V.double()
    problem = LayerProblem(A, Y, Vd, torch.ones(1, dtype=torch.float64), job.spec.relu, bias, False,
                           hinge=job.spec.relu)
    U = torch.cat([w.T, b.reshape(1, -1)]) if bias else w.T
    U = refit_on_support(problem, U.double())
    return (U[:-1].T.contiguous().to(w), U[-1].to(w)) if bias else (U.T.contiguous().to(w), None)


def _next_eps(tried, k: int) -> float:
    """Next relative eps: log-log interpolation toward 1.05 k between the nearest solves either
    side of k; with one side only, a power-law step from the solve nearest k (the count taken
    to fall like 1 / eps, the step clamped to a factor of 8)."""
    over = [t for t in tried if t[1] > k]   # too many non-zeros: eps too small
    under = [t for t in tried if t[1] < k]  # too few: eps too large
    if not under or not over:
        g, n, _ = min(tried, key=lambda t: abs(math.log(max(t[1], 1) / k)))
        return g * min(max(max(n, 1) / (1.05 * k), 1 / 8), 8)
    (g0, n0, _), (g1, n1, _) = max(over, key=lambda t: t[0]), min(under, key=lambda t: t[0])
    if n1 <= 0:
        return math.sqrt(g0 * g1)
    t = (math.log(1.05 * k) - math.log(n0)) / (math.log(n1) - math.log(n0))
    t = min(max(t, 0.15), 0.85)  # stay strictly inside the bracket
    return math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0)))
