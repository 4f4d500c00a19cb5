"""The common interface every pruner implements.

A user names a *method object* (:class:`PruningMethod`: ``NetTrim``, ``Threshold``, ``DC``,
``LOBS``), a small frozen dataclass holding only that method's options, validated when it is
built. For a run, the object makes a *layer method*, a callable ``job -> LayerOutcome``. A
network pruner walks the prunable layers in order; for each it builds a :class:`LayerJob` (the
layer's original weights, its inputs X as the scheme dictates, the original targets Y) and
hands it to the layer method; the schemes (parallel, cascade) and the report are shared.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Collection, Protocol

import torch

from ..capture import LayerSpec
from ..errors import require
from ..status import Status


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


def slack(Z: torch.Tensor, theta: float | None) -> torch.Tensor | None:
    """V = relu(Z) + theta min(Z, 0) for the original pre-activation Z = W^T X, or None (V = 0)
    when ``theta`` is None: the inactive entries stay below theta times their original
    (negative) value. theta = 1 is the cascade program's V = W^T Xhat, theta = 0 its ReLU."""
    return None if theta is None else torch.relu(Z) + theta * Z.clamp(max=0)


@dataclass
class LayerOutcome:
    """A layer method's answer: new weights plus whatever it knows about the solve."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    status: Status = Status.FITTED
    iterations: int = 0
    epsilon: float | None = None  # absolute tolerance, for methods that have one
    certified: bool = False  # the tolerance's constraints were measured to hold on job.X
    info: dict = field(default_factory=dict)


class LayerMethod(Protocol):
    def __call__(self, job: LayerJob) -> LayerOutcome: ...


@dataclass
class Target:
    """A count per layer: ``counts[name]`` when given, else round(total (1 - sparsity))."""

    sparsity: float | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        require(isinstance(self.counts, dict), f"counts must be a dict of layer name -> count, got "
                                               f"{type(self.counts).__name__}")
        for name, k in self.counts.items():
            require(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 0,
                    f"counts[{name!r}] must be an integer >= 0 (non-zeros to keep), got {k!r}")

    def keep(self, job: LayerJob) -> int:
        from .threshold import keep_count

        if job.spec.name in self.counts:
            return int(self.counts[job.spec.name])
        require(self.sparsity is not None,
                f"layer '{job.spec.name}' has no count and there is no sparsity: give every pruned "
                "layer a count, pass sparsity=... for the others, or name the layers with layers=[...]")
        return keep_count(job.weight.numel() + (0 if job.bias is None else job.bias.numel()),
                          self.sparsity)


class PruningMethod:
    """Base of the method objects. A subclass is declared with :func:`method_options` and sets

    * ``name``: its registry name (what ``prune(method="...")`` and the CLI accept);
    * ``needs_target``: whether it needs a ``sparsity`` or ``counts`` target (Net-Trim has its
      own control, the tolerance);
    * ``layer_method(mode, target)``: the layer method for one run (``target`` is a
      :class:`Target` or None).
    """

    name: ClassVar[str]
    needs_target: ClassVar[bool] = True

    def layer_method(self, mode: str, target: Target | None) -> LayerMethod:
        raise NotImplementedError

    def record(self) -> dict:
        """The options as plain values (for reports and checkpoints), with the method's name."""
        return {"name": self.name, **{f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}}


def _plain(value):
    """A dataclass (ADMMSettings) as a dict, a torch dtype as its name, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def method_options(cls):
    """Make ``cls`` a frozen dataclass whose constructor names an unknown option in a one-line
    NettrimError (listing the valid ones) instead of a TypeError."""
    cls = dataclass(frozen=True)(cls)
    init = cls.__init__
    names = [f.name for f in dataclasses.fields(cls)]

    @functools.wraps(init)
    def checked_init(self, *args, **kwargs):
        unknown = sorted(set(kwargs) - set(names))
        require(not unknown, f"{cls.__name__} has no option {', '.join(map(repr, unknown))}; "
                             f"its options: {', '.join(names) or 'none'}")
        require(len(args) <= len(names), f"{cls.__name__} takes its options by name")
        init(self, *args, **kwargs)

    cls.__init__ = checked_init
    return cls


ProgressHook = Callable[[str], None]
