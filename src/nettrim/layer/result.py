"""What a layer solve returns: the answer with its measured feasibility, never a bare array."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..status import Status

SOLVED, MAX_ITERATIONS, INFEASIBLE = Status.SOLVED, Status.MAX_ITERATIONS, Status.INFEASIBLE


@dataclass
class LayerResult:
    """Outcome of one Net-Trim layer solve.

    Attributes:
        weight: (M, N) like ``nn.Linear.weight``; exact zeros where pruned.
        bias: (M,) or None.
        status: ``"solved"`` (constraints hold to ``tolerance``), ``"max_iterations"`` (returned
            anyway, check ``discrepancy``/``max_violation``) or ``"infeasible"`` (no U can meet eps;
            the weights returned are then the least-squares fit).
        iterations: ADMM iterations used (the largest over neurons).
        discrepancy: ||(U^T X - Y)_Omega||_F, measured on the returned weights.
        epsilon: the absolute tolerance asked for (the layer total, sqrt of the sum of squares).
        max_violation: largest (U^T X - V) over Omega^c, 0 if none.
        tolerance: relative tolerance of the feasibility check.
        seconds: wall time of the solve.
        nnz: non-zeros of weight and bias together.
        per_neuron_discrepancy: (M,) the same measure per neuron.
        hinge_residual: ||(U^T X - V)_{Omega^c,+}||_F for the hinge program (0 otherwise); there
            sqrt(discrepancy^2 + hinge_residual^2) is what ``epsilon`` bounds, and
            ``max_violation`` may be positive by design.
        within: the constraints hold to ``tolerance`` on the returned weights, whether or not
            ADMM met its stopping rule (``"solved"`` is both).
        primal_residual, dual_residual: the ADMM residuals r and s at the last check (root sum
            of squares over neurons, in the solver's scaled units); rho: the median penalty
            there. NaN when ADMM did not run (an infeasible logits layer).
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    status: str
    iterations: int
    discrepancy: float
    epsilon: float
    max_violation: float
    tolerance: float
    seconds: float
    nnz: int
    per_neuron_discrepancy: torch.Tensor = field(repr=False)
    hinge_residual: float = 0.0
    within: bool = False
    primal_residual: float = float("nan")
    dual_residual: float = float("nan")
    rho: float = float("nan")
    info: dict = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return self.status == SOLVED

    def summary(self) -> dict:
        """JSON-ready numbers (no tensors)."""
        d = asdict(self)
        for key in ("weight", "bias", "per_neuron_discrepancy"):
            d.pop(key)
        return d
