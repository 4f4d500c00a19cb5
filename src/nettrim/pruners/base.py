"""The common interface every pruner implements, one layer at a time.

A network pruner walks the prunable layers in order; for each it builds a :class:`LayerJob`
(the layer's original weights, its inputs X as the scheme dictates, the original targets Y)
and hands it to a *layer method*, a callable ``job -> LayerOutcome``. Net-Trim, hard
thresholding, DC and L-OBS are all layer methods; the schemes (parallel, cascade) and the
report are shared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Protocol

import torch

from ..capture import LayerSpec


@dataclass
class LayerJob:
    """What a layer method sees.

    Attributes:
        spec: the layer's name, kind, activation and position.
        weight: (M, N) original weights; bias: (M,) or None.
        X: (P, N) inputs: the original network's (parallel) or the pruned network's (cascade).
        Y: (P, M) the ORIGINAL layer's target (its ReLU output, or logits for the last layer).
        Z: (P, M) the original weights applied to X (``W^T X`` in the paper), i.e. V in cascade.
        first, last: position flags.
        images: how many network inputs were captured (X has more rows for a Conv2d: patches).
        shape: the layer's own weight shape (a conv kernel is flattened in ``weight``).
    """

    spec: LayerSpec
    weight: torch.Tensor
    bias: torch.Tensor | None
    X: torch.Tensor
    Y: torch.Tensor
    Z: torch.Tensor
    first: bool
    last: bool
    images: int = 0
    shape: tuple = ()

    def in_layers(self, choice: "bool | Collection[str]") -> bool:
        """Whether a per-layer option (True: every layer; names: those layers) covers this one."""
        return choice if isinstance(choice, bool) else self.spec.name in choice

    @property
    def active(self) -> torch.Tensor:
        return self.Y > 0 if self.spec.relu else torch.ones_like(self.Y, dtype=torch.bool)

    def responses(self, weight: torch.Tensor, bias: torch.Tensor | None):
        """(Z, act) for new weights on the captured inputs: Z = X W^T + b and act = relu(Z) on a
        ReLU layer, Z otherwise; compare Z with Y on ``active``, act with Y everywhere."""
        Z = self.X @ weight.T.to(self.X) + (0 if bias is None else bias.to(self.X))
        return Z, torch.relu(Z) if self.spec.relu else Z


@dataclass
class LayerOutcome:
    """A layer method's answer: new weights plus whatever it knows about the solve."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    status: str = "solved"
    iterations: int = 0
    epsilon: float | None = None  # absolute tolerance, for methods that have one
    info: dict = field(default_factory=dict)


class LayerMethod(Protocol):
    def __call__(self, job: LayerJob) -> LayerOutcome: ...


ProgressHook = Callable[[str], None]
