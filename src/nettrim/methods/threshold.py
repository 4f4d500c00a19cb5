"""Hard thresholding, the magnitude baseline (Pitas, Davies, Vandergheynst 2019): each layer
keeps its k largest |w| (weights and bias together, an exact top-k, ties to the lower flat
index), survivors unchanged, no retraining (``nettrim.solvers.threshold``)."""
from __future__ import annotations

from typing import ClassVar

from ..options import options
from ..solvers.threshold import threshold_U
from ..status import Status
from .base import LayerJob, LayerOutcome, Method


@options
class Threshold(Method):
    """Hard thresholding at a count. No options."""

    name: ClassVar[str] = "threshold"
    CHECKS: ClassVar = {}

    def at_count(self, job: LayerJob, keep: int) -> LayerOutcome:
        return LayerOutcome(threshold_U(job.weight, keep, bias=job.bias), Status.THRESHOLDED)
