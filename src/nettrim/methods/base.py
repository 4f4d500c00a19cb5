"""What every pruning method sees and returns, one layer at a time.

A method is a frozen option object (:class:`Method`, declared with ``nettrim.options.options``)
that prunes one layer given a :class:`LayerJob`: the layer's calibration statistics under the
scheme (its inputs: the original network's in parallel, the pruned network's in cascade; its
targets: always the original network's), its original weights and where it sits. Two entry
points:

* ``at_tolerance(job)``: the sparsest weights the method finds within its own tolerance (Net-Trim);
* ``at_count(job, k)``: exactly (at most) ``k`` non-zeros among the layer's weights and bias.

Either returns a :class:`LayerOutcome`: the new weights U (N' x M, the bias as last row), a
status, and, for a method that enforces a tolerance, the claim it makes (a
``nettrim.program.Constraint``), which the scheme measures on the job's rows: that measurement
is the layer's certificate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import torch

from ..options import Options
from ..program import Constraint, LayerProblem, LayerStats
from ..solvers.admm import SolverInfo
from ..status import Status


@dataclass(frozen=True)
class LayerJob:
    """One layer's work.

    Attributes:
        name: the layer's dotted module name; kind: "linear", "conv2d" or "conv1d".
        relu: the layer ends in its own ReLU (the ReLU program) or not (the linear program).
        stats: its calibration statistics (inputs under the scheme, original targets), with
            the rows held when ``relu`` (or when the method asked for rows).
        weight: (N', M) the original weights as U, the bias as last row when ``bias``.
        bias: whether the layer has a bias.
        mode: "cascade" or "parallel"; first, last: its position among the pruned layers.
        shape: the layer's own weight shape (a conv kernel is flattened in ``weight``).
        groups: (N,) the input unit of each input feature where the model's unit plan says
            more than the layer alone (``nettrim.graph.surgery``: a Linear behind a Flatten
            reads H x W features per channel), else None.
    """

    name: str
    kind: str
    relu: bool
    stats: LayerStats
    weight: torch.Tensor
    bias: bool
    mode: str
    first: bool
    last: bool
    shape: tuple = ()
    groups: torch.Tensor | None = None

    @property
    def total(self) -> int:
        """Weights and biases of the layer."""
        return self.weight.numel()

    @property
    def target_norm(self) -> float:
        return self.stats.target_norm

    @cached_property
    def gap(self) -> torch.Tensor:
        """Per neuron, ||(W^T Xhat - Y)_{Omega_m}||: the original weights on the job's inputs
        against the targets (zero in parallel mode and for the first layer)."""
        problem = self.problem(Constraint(torch.ones(1), False, "none"), theta=None)
        return problem.measure(self.weight).discrepancy

    def problem(self, constraint: Constraint, theta: float | None) -> LayerProblem:
        """The layer's program under ``constraint`` with slack margin ``theta``."""
        return LayerProblem(self.stats, constraint, self.weight, self.relu and self.stats.held, theta)


@dataclass
class LayerOutcome:
    """A method's answer for one layer.

    Attributes:
        U: (N', M) new weights, exact zeros where pruned.
        status: how the layer ended (``nettrim.status.Status``).
        claim: the constraint the method claims U satisfies on the job's rows (None for a
            method without a tolerance); the scheme measures it.
        theta: the slack margin V was built with (part of the claim).
        solver: what the solver did (iterations, residuals, seconds), when one ran.
        measured_claim: the claim's eps is the value the method reached (at a count), not a
            tolerance it was given.
        info: method-specific numbers (JSON-ready).
    """

    U: torch.Tensor
    status: Status = Status.FITTED
    claim: Constraint | None = None
    theta: float | None = None
    solver: SolverInfo | None = None
    measured_claim: bool = False
    info: dict = field(default_factory=dict)


class Method(Options):
    """Base of the method objects (declare subclasses with ``nettrim.options.options``).

    ``name``: the registry name; ``needs_target``: whether it needs a sparsity or counts
    target (Net-Trim has its own control, the tolerance); ``needs_rows``: whether it needs a
    layer's rows even for a linear program (DC's stochastic solver does).
    """

    name: ClassVar[str]
    needs_target: ClassVar[bool] = True
    needs_rows: ClassVar[bool] = False

    def at_tolerance(self, job: LayerJob) -> LayerOutcome:
        raise NotImplementedError(f"{type(self).__name__} has no tolerance: give it a sparsity or counts")

    def at_count(self, job: LayerJob, keep: int) -> LayerOutcome:
        raise NotImplementedError

    def record(self) -> dict:
        return {"name": self.name, **super().record()}

    def removal_costs(self, U: torch.Tensor, stats) -> torch.Tensor:
        """(N', M) the increase of ||A U - Y||_F^2 removing each entry alone would cost, as the
        method ranks entries (the global allocation's score, ``nettrim.methods.allocation``):
        the OBS saliency u_jm^2 / [H^-1]_jj of the damped Gram matrix, unless overridden."""
        from ..solvers.obs import inverse_diagonal

        return U.double().square() / inverse_diagonal(stats.gram, getattr(self, "damp", 0.01)).unsqueeze(1)

    def layer_names(self) -> set[str]:
        """Layer names the options refer to (checked against the model by ``prune``)."""
        return set()


def keep_count(total: int, sparsity: float) -> int:
    """Non-zeros kept at a sparsity: k = round(total (1 - sparsity)) (Python's round)."""
    return int(round(int(total) * (1.0 - float(sparsity))))


def count_nonzero(U: torch.Tensor) -> int:
    return int((U != 0).sum())


def relative(value: float, norm: float) -> float:
    return value / norm if norm > 0 else (0.0 if value == 0 else math.inf)
