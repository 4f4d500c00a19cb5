"""Wanda (Sun, Liu, Bair, Kolter 2023): prune by |W_ij| ||X_j||_2, the weight times the norm of
its input over the calibration rows, comparing within each output neuron; no weight update.
The bias is scored like a weight whose input is the ones column (norm sqrt(P))."""
from __future__ import annotations

from typing import ClassVar

import torch

from ..options import OneOf, options
from .allocation import ALLOCATIONS
from ..solvers.obs import wanda_scores
from ..status import Status
from .base import LayerJob, LayerOutcome, Method


@options
class Wanda(Method):
    """Wanda at a count: each neuron keeps the same share of its inputs (the layer's count
    spread over neurons by cumulative rounding, so the total is exact); ``allocation``: of a
    network sparsity over the layers (``nettrim.methods.allocation``)."""

    allocation: str = "uniform"

    name: ClassVar[str] = "wanda"
    CHECKS: ClassVar = dict(allocation=OneOf(*ALLOCATIONS))

    def removal_costs(self, U: torch.Tensor, stats) -> torch.Tensor:
        """Wanda's own score squared, (|u_jm| ||a_j||)^2."""
        return wanda_scores(U.double(), stats.gram).square()

    def at_count(self, job: LayerJob, keep: int) -> LayerOutcome:
        U = job.weight
        scores = wanda_scores(U, job.stats.gram)
        n, m = U.shape
        per = [round(keep * (j + 1) / m) - round(keep * j / m) for j in range(m)]
        order = torch.sort(scores, dim=0, descending=True, stable=True).indices
        ranks = torch.empty_like(order)
        ranks.scatter_(0, order, torch.arange(n, device=U.device).unsqueeze(1).expand(n, m))
        mask = ranks < torch.tensor(per, device=U.device).unsqueeze(0)
        return LayerOutcome(U * mask, Status.THRESHOLDED)
