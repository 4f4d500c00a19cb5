"""Hard thresholding, the magnitude baseline (Pitas, Davies, Vandergheynst 2019): each layer
keeps its k largest |w| (weights and bias together, an exact top-k, ties to the lower flat
index), survivors unchanged, no retraining (``nettrim.solvers.threshold``)."""
from __future__ import annotations

from typing import ClassVar

import torch

from ..options import OneOf, options
from .allocation import ALLOCATIONS
from ..solvers.threshold import threshold_U
from ..status import Status
from .base import LayerJob, LayerOutcome, Method


@options
class Threshold(Method):
    """Hard thresholding at a count; ``allocation``: of a network sparsity over the layers
    (``nettrim.methods.allocation``)."""

    allocation: str = "uniform"

    name: ClassVar[str] = "threshold"
    CHECKS: ClassVar = dict(allocation=OneOf(*ALLOCATIONS))

    def removal_costs(self, U: torch.Tensor, stats) -> torch.Tensor:
        """The magnitude u_jm^2 (no data)."""
        return U.double().square()

    def at_count(self, job: LayerJob, keep: int) -> LayerOutcome:
        return LayerOutcome(threshold_U(job.weight, keep, bias=job.bias), Status.THRESHOLDED)
