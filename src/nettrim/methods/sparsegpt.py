"""SparseGPT (Frantar & Alistarh 2023, Algorithm 1): one Cholesky factor of the damped inverse
Hessian, OBS removals column by column in blocks with lazy updates, each block's mask chosen
adaptively from the current weights' saliencies (``nettrim.solvers.obs``). The bias is the
coordinate of the ones column and is pruned and updated like any weight; a dead input (zero on
every calibration row) has its weights removed first."""
from __future__ import annotations

from typing import ClassVar

from ..options import Integer, OneOf, Real, options
from .allocation import ALLOCATIONS
from ..solvers.obs import dead_inputs, inverse_factor, sparsegpt_pass
from ..status import Status
from .base import LayerJob, LayerOutcome, Method


@options
class SparseGPT(Method):
    """SparseGPT at a count: ``blocksize`` columns per mask block, ``damp`` relative damping
    of the Hessian A^T A; ``allocation`` of a network sparsity over the layers
    (``nettrim.methods.allocation``)."""

    blocksize: int = 128
    damp: float = 0.01
    allocation: str = "uniform"

    name: ClassVar[str] = "sparsegpt"
    CHECKS: ClassVar = dict(blocksize=Integer(ge=1), damp=Real(gt=0), allocation=OneOf(*ALLOCATIONS))

    def at_count(self, job: LayerJob, keep: int) -> LayerOutcome:
        G = job.stats.gram
        U = sparsegpt_pass(job.weight.float(), inverse_factor(G, self.damp), sparsity=1 - keep / job.total,
                           blocksize=self.blocksize, dead=dead_inputs(G)).U
        return LayerOutcome(U.to(job.weight), Status.FITTED)
