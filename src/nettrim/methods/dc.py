"""DC ("smart") pruning, FeTa (Pitas, Davies, Vandergheynst): the softplus surrogate of the
ReLU, DCA outer steps each solved by accelerated proximal SVRG, lambda searched to the count
(``nettrim.solvers.dc``)."""
from __future__ import annotations

from typing import ClassVar

from ..options import Integer, OneOf, Real, options
from .allocation import ALLOCATIONS
from ..solvers.dc import dc_at_sparsity
from ..status import Status
from .base import LayerJob, LayerOutcome, Method


@options
class DC(Method):
    """FeTa DC pruning: softplus sharpness ``theta``, ``outer`` DCA steps, each solved by
    accelerated proximal SVRG (``stages``, minibatch ``batch_size``, ``step`` (None: 1 / L),
    ``momentum``, minibatch order ``seed``); lambda searched to the target count within
    ``tol`` in at most ``max_search`` solves; ``allocation`` of a network sparsity over the
    layers (``nettrim.methods.allocation``)."""

    theta: float = 10.0
    outer: int = 4
    stages: int = 3
    batch_size: int = 200
    step: float | None = 1e-3
    momentum: float = 0.95
    seed: int = 0
    tol: float = 0.01
    max_search: int = 12
    allocation: str = "uniform"

    name: ClassVar[str] = "dc"
    needs_rows: ClassVar[bool] = True
    CHECKS: ClassVar = dict(theta=Real(gt=0), outer=Integer(ge=1), stages=Integer(ge=1),
                            batch_size=Integer(ge=1), step=Real(gt=0, none=True), momentum=Real(ge=0, lt=1),
                            seed=Integer(ge=0), tol=Real(ge=0, lt=1), max_search=Integer(ge=1),
                            allocation=OneOf(*ALLOCATIONS))

    def at_count(self, job: LayerJob, keep: int) -> LayerOutcome:
        opts = dict(theta=self.theta, outer=self.outer, stages=self.stages, batch_size=self.batch_size,
                    step=self.step, momentum=self.momentum, seed=self.seed)
        A, Y = job.stats.A, job.stats.Y
        U, info = dc_at_sparsity(A, Y, job.weight.to(A), 1 - keep / job.total, relu=job.relu,
                                 tol=self.tol, max_search=self.max_search, **opts)
        status = Status.THRESHOLDED if info["thresholded"] else (
            Status.FITTED if info["reached"] else Status.TARGET_MISSED)
        return LayerOutcome(U, status, info=info)
