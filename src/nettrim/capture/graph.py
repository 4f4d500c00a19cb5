"""Find the prunable layers of any nn.Module and what follows each, by tracing one forward pass.

Leaf modules are recorded in execution order with forward hooks, so sequential and nested
models (and custom ``forward`` methods calling modules) are handled alike. A prunable layer
(Linear, Conv2d) followed by a ReLU (skipping Dropout/Identity) is a ReLU layer whose target
is the ReLU output; otherwise its target is its own output (the logits layer).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import NettrimError

PRUNABLE = (nn.Linear, nn.Conv2d)
PASSTHROUGH = (nn.Dropout, nn.Identity)
SUPPORTED = PRUNABLE + PASSTHROUGH + (
    nn.ReLU, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d,
    nn.BatchNorm1d)


@dataclass(frozen=True)
class LayerSpec:
    """A prunable layer: its dotted name in the model, the module type, and its activation."""

    name: str
    kind: str  # "linear" or "conv2d"
    relu: bool
    index: int  # position among prunable layers
    feeds_next: bool = False  # output reaches the next prunable layer through ReLU/Dropout only


def _leaf_modules(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if len(list(m.children())) == 0]


def trace_layers(model: nn.Module, example: torch.Tensor) -> list[LayerSpec]:
    """Run ``model`` on ``example`` (a small batch) and list its prunable layers in order.

    Raises NettrimError naming the first unsupported leaf module, or when nothing is prunable.
    """
    for name, module in _leaf_modules(model):
        if not isinstance(module, SUPPORTED):
            raise NettrimError(
                f"unsupported layer '{name}' ({type(module).__name__}): nettrim prunes networks "
                f"of Linear/Conv2d layers with ReLU activations (plus Flatten, Dropout, Identity, "
                f"pooling, BatchNorm)")
    order: list[tuple[str, nn.Module]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: order.append((n, mod)))
             for n, m in _leaf_modules(model)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    specs: list[LayerSpec] = []
    for pos, (name, module) in enumerate(order):
        if not isinstance(module, PRUNABLE):
            continue
        if any(s.name == name for s in specs):
            raise NettrimError(f"layer '{name}' is called more than once per forward pass: "
                               f"shared layers cannot be pruned layer by layer")
        kind = "linear" if isinstance(module, nn.Linear) else "conv2d"
        specs.append(LayerSpec(name, kind, _followed_by_relu(order, pos), len(specs),
                               _feeds_next(order, pos)))
    if not specs:
        raise NettrimError("the model has no Linear or Conv2d layer to prune")
    return specs


def _followed_by_relu(order, pos: int) -> bool:
    for _, module in order[pos + 1:]:
        if isinstance(module, PASSTHROUGH):
            continue
        return isinstance(module, nn.ReLU)
    return False


def _feeds_next(order, pos: int) -> bool:
    for _, module in order[pos + 1:]:
        if isinstance(module, PRUNABLE):
            return True
        if not isinstance(module, PASSTHROUGH + (nn.ReLU,)):
            return False
    return False
