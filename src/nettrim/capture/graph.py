"""Find the prunable layers of any nn.Module and what reads each one's output.

Every ``nn.Linear`` and every ``nn.Conv2d`` (groups = 1) that runs as a module in the forward
pass is a prunable layer, listed in execution order. Everything else (LayerNorm, GELU,
attention, embeddings, pooling, custom modules, functional code) is passed through.

A layer is a ReLU layer (``relu=True``: the Net-Trim ReLU program, target = the ReLU output)
only when its output is read by exactly one ReLU -- ``nn.ReLU``, ``F.relu``, ``torch.relu``,
``relu_``, ``inplace=True`` -- through pass-through operations (dropout, identity, flatten,
reshape, view, ...) and by nothing else. Any other reader (a GELU, a residual add, a norm, the
model's output, ...) makes it a linear layer (``relu=False``: the linear program on its
pre-activation). The readers are found twice (``nettrim.capture.dataflow``): from a
``torch.fx`` trace where the model traces, and from a recorded forward pass (module hooks plus
a TorchFunctionMode), which works on any model that runs; a layer is a ReLU layer only when
every analysis that ran says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import NettrimError, require
from .dataflow import analyse, fx_ops, is_prunable, record_ops

PRUNABLE = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class LayerSpec:
    """A prunable layer: its dotted name in the model, the module type, and its activation."""

    name: str
    kind: str  # "linear" or "conv2d"
    relu: bool
    index: int  # position among prunable layers
    feeds_next: bool = False  # its ReLU output goes (through dropout/identity) into the next Linear only
    to_output: bool = False  # its output is the model's output and is read by nothing else
    users: tuple[str, ...] = ()  # what reads its output (pre-activation), e.g. ("ReLU",), ("GELU 'act'",)


def is_chain(specs: list[LayerSpec]) -> bool:
    """Whether the layers form a plain chain: each ReLU output feeds only the next layer and the
    last layer's output is the model's output (what the network bounds of Theorems 1-2 assume)."""
    return bool(specs) and all(s.feeds_next for s in specs[:-1]) and specs[-1].to_output


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def _run_error(model: nn.Module, example, exc: BaseException) -> NettrimError:
    stack = [n for n in getattr(exc, "nettrim_stack", []) if n]
    where = f"layer '{stack[-1]}' ({type(model.get_submodule(stack[-1])).__name__})" if stack \
        else f"{type(model).__name__}.forward"
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return NettrimError(f"model {type(model).__name__} does not run on inputs of shape "
                        f"{_shape(example)}: {where} raised {type(exc).__name__}: {detail}; "
                        f"pass inputs shaped as the model expects (one batch axis first)")


def _record(model: nn.Module, example):
    """Recorded forward pass: (ops or None, storage, calls). Raises a one-line NettrimError
    naming the failing module when the model does not run on ``example``."""
    try:
        return record_ops(model, example)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        first = exc
    try:  # does it run without the function recorder? then only module calls are known
        _, _, calls = record_ops(model, example, use_mode=False)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        raise _run_error(model, example, first) from first
    return None, {}, calls


def trace_layers(model: nn.Module, example: torch.Tensor) -> list[LayerSpec]:
    """Run ``model`` on ``example`` (a small batch, eval mode) and list its prunable layers in
    execution order with their activation (see the module docstring).

    Raises NettrimError when the model does not run on ``example`` (naming the module that
    failed), when a prunable layer runs more than once per forward pass or shares its weight
    with another module, or when no Linear/Conv2d layer runs.
    """
    require(isinstance(model, nn.Module), f"model must be a torch.nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        ops, storage, calls = _record(model, example)
        try:
            graph = fx_ops(model)
        except Exception:  # data-dependent control flow, untraceable modules, ...
            graph = None
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    names = [n for n in calls if is_prunable(modules[n])]  # first calls, in execution order
    require(names, f"model {type(model).__name__} has no Linear or Conv2d layer that runs in its "
                   f"forward pass: nothing to prune")
    for name in names:
        require(calls[name] == 1,
                f"layer '{name}' ({type(modules[name]).__name__}) runs {calls[name]} times per "
                f"forward pass (shared weights): nettrim prunes each layer once; give each use "
                f"its own module")
    _check_shared_parameters(model, names, ops)
    flows = [analyse(ops, storage, names)] if ops is not None else []
    if graph is not None:
        flows.append(analyse(*graph, names))
    specs: list[LayerSpec] = []
    for index, name in enumerate(names):
        found = [f.get(name) for f in flows]
        known = bool(found) and all(f is not None for f in found)
        nxt = names[index + 1] if index + 1 < len(names) else None
        relu = known and all(f.relu for f in found)
        feeds = (relu and nxt is not None and all(f.feeds == nxt for f in found)
                 and isinstance(modules[name], nn.Linear) and isinstance(modules[nxt], nn.Linear))
        users = found[0].users if known else ("?",)
        specs.append(LayerSpec(name, "linear" if isinstance(modules[name], nn.Linear) else "conv2d",
                               relu, index, feeds, known and all(f.to_output for f in found), users))
    return specs


def _check_shared_parameters(model: nn.Module, names: list[str], ops) -> None:
    """Refuse a prunable layer whose weight or bias is also another module's parameter, or is
    read by code outside the layer (a tied embedding): pruning it would change that use too."""
    owners: dict[int, list[str]] = {}
    for full, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(full.rpartition(".")[0])
    mine = {}
    for name in names:
        for p in model.get_submodule(name).parameters(recurse=False):
            others = [o for o in owners.get(id(p), []) if o != name]
            require(not others, f"layer '{name}' shares its parameters with module '{others[0] if others else ''}': "
                                f"nettrim prunes each layer once; untie them or leave this model")
            mine[id(p)] = name
    for op in ops or []:
        if op.kind == "function":
            hit = next((mine[v] for v in op.inputs if v in mine), None)
            require(hit is None, f"layer '{hit}' has its weight read outside the layer (by {op.name}): "
                                 f"pruning it would change that use too; untie it or leave this model")
