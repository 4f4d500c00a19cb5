"""The per-layer and whole-network report every pruner returns (JSON-ready).

A layer is *certified* when its method enforced a tolerance and the constraints were measured
to hold on the layer's inputs (the discrepancy within eps (1 + tol), the inactive side within
tol eps, or, for the hinge ball, both together within it). The network bound (Theorem 1 or 2,
``nettrim.pruners.bounds``) is given only when every prunable layer of the network was pruned
and certified; otherwise ``bound`` is None and ``uncertified`` names the layers in the way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..status import Status


@dataclass
class LayerReport:
    """One layer: shape, non-zeros before/after, tolerance, achieved discrepancy, solver status.

    ``discrepancy`` is Net-Trim's measure ||(U^T X - Y)_Omega||_F on the layer's own inputs;
    ``response_error`` is ||act(U^T X) - Y||_F, what Proposition 1 bounds; both absolute, with
    ``target_norm`` = ||Y||_F to make them relative.
    """

    name: str
    kind: str
    shape: list[int]
    relu: bool
    nnz_before: int
    nnz_after: int
    total: int
    epsilon: float | None
    discrepancy: float
    response_error: float
    target_norm: float
    status: Status
    iterations: int
    seconds: float
    samples: int
    certified: bool = False
    info: dict = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float:
        return self.nnz_after / max(self.total, 1)


@dataclass
class PruneReport:
    """Whole-network summary plus the layers."""

    method: str
    mode: str
    settings: dict
    layers: list[LayerReport]
    seconds: float
    output_error: float  # ||Yhat_L - Y_L||_F on the pruning samples
    output_norm: float
    bound: float | None  # Theorem 1 (recursive) or Theorem 2 bound on output_error, when defined
    skipped: list[str] = field(default_factory=list)  # prunable layers left as they were
    resumed: list[str] = field(default_factory=list)  # layers loaded from an earlier run's store
    peak_memory_mb: float | None = None  # this process's peak resident memory (ru_maxrss) at the end

    @property
    def uncertified(self) -> list[str]:
        """The layers that stand between the report and a network bound: pruned but not
        certified, or not pruned at all."""
        return [r.name for r in self.layers if not r.certified] + list(self.skipped)

    @property
    def status(self) -> Status:
        """``solved`` when every pruned layer is; else the first other layer status."""
        return next((r.status for r in self.layers if r.status != Status.SOLVED), Status.SOLVED)

    @property
    def nnz_before(self) -> int:
        return sum(layer.nnz_before for layer in self.layers)

    @property
    def nnz_after(self) -> int:
        return sum(layer.nnz_after for layer in self.layers)

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of all weights and biases of the pruned layers that are zero."""
        return 1.0 - self.nnz_after / max(self.total, 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(nnz_before=self.nnz_before, nnz_after=self.nnz_after, total=self.total,
                 sparsity=self.sparsity, status=self.status, uncertified=self.uncertified)
        for layer, rep in zip(d["layers"], self.layers):
            layer["kept_fraction"] = rep.kept_fraction
        return d
