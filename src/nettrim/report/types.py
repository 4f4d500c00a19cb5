"""What a prune returns besides the model: typed per-layer and whole-network reports.

A layer is **certified** when its method made a claim (a tolerance it enforces) and the claim
was measured to hold on the layer's calibration rows (``nettrim.program.Constraint.holds``,
the one definition). The network bound (Theorem 1 or 2, ``nettrim.bounds``) is given only when
every prunable layer was pruned and certified, the layers form a plain chain of Linear layers,
and every layer's claim covers all its rows; otherwise ``bound`` is None and ``notes`` says why.
Reports serialise to plain JSON (``to_dict``); a layer's report reads back with ``LayerReport.from_dict``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..status import Status


@dataclass
class Certificate:
    """One layer's claim and its measurement.

    Attributes:
        claim: the claim in words (``Constraint.claim``).
        rule: how eps was set: "tolerance" (the method's rule: relative eps, or the cascade's
            gamma times the measured gap) or "measured" (at a count: the value reached).
        epsilon: the absolute layer radius eps; relative_epsilon: eps / ||Y||_F.
        radii: the per-neuron radii eps_m (one ball per neuron), else None.
        inactive: "none", "halfspace" or "hinge"; theta: the slack margin of V (None: V = 0).
        tolerance: the relative feasibility tolerance of the claim.
        discrepancy, excess: d and h measured on the returned weights (layer totals).
        measured, limit: the claimed quantity and the most it may be (eps (1 + tol) + floor).
        holds: measured within the claim (every ball).
        gap: ||(W^T X - Y)_Omega||_F, the original weights on the same rows (what the cascade
            bound subtracts).
        bound_radius: the most ||act(U^T X) - Y||_F a certified layer can have,
            eps (1 + 2 tol) + 2 floor (what the network bound takes).
    """

    claim: str
    rule: str
    epsilon: float
    relative_epsilon: float
    radii: list[float] | None
    inactive: str
    theta: float | None
    tolerance: float
    discrepancy: float
    excess: float
    measured: float
    limit: float
    holds: bool
    gap: float = 0.0
    bound_radius: float = 0.0


@dataclass
class LayerReport:
    """One layer: shape, non-zeros, rows, measured errors, status, certificate.

    ``discrepancy`` is ||(U^T X - Y)_Omega||_F on the layer's own rows (the pre-activation on
    the active entries; every entry for a linear layer); ``response_error`` is
    ||act(U^T X) - Y||_F, what Proposition 1 bounds; both absolute, ``target_norm`` = ||Y||_F.
    """

    name: str
    kind: str
    shape: list[int]
    relu: bool
    nnz_before: int
    nnz_after: int
    total: int
    status: Status
    seconds: float
    rows: int
    rows_total: int
    target_norm: float
    discrepancy: float
    response_error: float
    certificate: Certificate | None = None
    solver: dict | None = None
    info: dict = field(default_factory=dict)

    @property
    def certified(self) -> bool:
        return self.certificate is not None and self.certificate.holds

    @classmethod
    def from_dict(cls, d: dict) -> "LayerReport":
        """The report ``to_dict`` wrote (its derived fields dropped); TypeError, KeyError or
        ValueError when it is not one."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in d.items() if k in fields}
        cert = kept.get("certificate")
        kept["certificate"] = None if cert is None else Certificate(**cert)
        kept["status"] = Status(kept["status"])
        return cls(**kept)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(status=str(self.status), kept_fraction=self.kept_fraction, certified=self.certified)
        return _finite(d)

    @property
    def kept_fraction(self) -> float:
        return self.nnz_after / max(self.total, 1)

    @property
    def sampled(self) -> bool:
        """Whether the layer's program saw a sample of its rows (its claim covers those)."""
        return self.rows < self.rows_total


@dataclass
class PruneReport:
    """Whole-network summary plus the layers."""

    method: dict
    mode: str
    layers: list[LayerReport]
    seconds: float
    output_error: float  # ||Yhat_L - Y_L||_F on the calibration inputs
    output_norm: float
    bound: float | None
    run: dict = field(default_factory=dict)  # the RunOptions and calibration record
    skipped: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    peak_memory_mb: float | None = None
    digests: dict = field(default_factory=dict)  # sha256 of the weights and the draw (report.digest)
    surgery: dict | None = None  # structure="units": the cut (nettrim.graph.surgery.Cut.record())

    @property
    def uncertified(self) -> list[str]:
        """The layers between the report and a network bound: pruned but not certified, or
        not pruned at all."""
        return [r.name for r in self.layers if not r.certified] + list(self.skipped)

    @property
    def status(self) -> Status:
        """``solved`` when every pruned layer is; else the first other layer status."""
        return next((r.status for r in self.layers if r.status != Status.SOLVED), Status.SOLVED)

    @property
    def nnz_before(self) -> int:
        return sum(r.nnz_before for r in self.layers)

    @property
    def nnz_after(self) -> int:
        return sum(r.nnz_after for r in self.layers)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of all weights and biases of the pruned layers that are zero."""
        return 1.0 - self.nnz_after / max(self.total, 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(nnz_before=self.nnz_before, nnz_after=self.nnz_after, total=self.total,
                 sparsity=self.sparsity, status=str(self.status), uncertified=self.uncertified,
                 layers=[r.to_dict() for r in self.layers])
        return _finite(d)


def _finite(obj):
    """NaN and infinities as None (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
