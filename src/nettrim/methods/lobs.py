"""Layer-wise Optimal Brain Surgeon (Dong, Chen, Pan, NIPS 2017), one-shot or exact greedy
(Optimal Brain Compression, Frantar & Alistarh 2022), on the layer's Gram matrix
(``nettrim.solvers.lobs``)."""
from __future__ import annotations

from typing import ClassVar

from ..options import Flag, OneOf, Real, options
from .allocation import ALLOCATIONS
from ..solvers.lobs import lobs_prune
from ..status import Status
from .base import LayerJob, LayerOutcome, Method


@options
class LOBS(Method):
    """L-OBS with the damped Hessian H = A^T A / P + damp mean(diag H) I. ``greedy=True``:
    exact greedy removal with downdated H^-1 (OBC); ``greedy=False``: the public L-OBS code's
    one-shot ranking. ``allocation``: of a network sparsity over the layers
    (``nettrim.methods.allocation``)."""

    greedy: bool = True
    damp: float = 1e-2
    allocation: str = "uniform"

    name: ClassVar[str] = "lobs"
    CHECKS: ClassVar = dict(greedy=Flag(), damp=Real(ge=0), allocation=OneOf(*ALLOCATIONS))

    def at_count(self, job: LayerJob, keep: int) -> LayerOutcome:
        U = lobs_prune(job.weight, job.stats.gram, job.stats.rows, keep, greedy=self.greedy, damp=self.damp)
        return LayerOutcome(U, Status.FITTED, info={"greedy": self.greedy})
