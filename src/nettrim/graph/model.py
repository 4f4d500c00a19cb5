"""One model graph: the prunable layers of any nn.Module, who reads each output, BatchNorm pairs.

Every ``nn.Linear``, ``nn.Conv2d`` (groups = 1) and Hugging Face ``Conv1D`` that runs as a
module in the forward pass is a prunable layer, listed in execution order. Everything else
(LayerNorm, GELU, attention, embeddings, pooling, custom modules, functional code) is passed
through.

The graph is read from the model's operations (``nettrim.graph.trace``): from a ``torch.fx``
trace where the model traces, and from a recorded forward pass (module hooks plus a
TorchFunctionMode), which works on any model that runs. Every rule below holds only when every
analysis that ran says so, and the same rules drive everything that depends on the data flow:

* a layer is a **ReLU layer** (the Net-Trim ReLU program, target = the ReLU output) when its
  output is read by exactly one ReLU through pass-through operations and by nothing else; any
  other reader (a GELU, a residual add, a norm, the model's output) makes it a linear layer;
* it **feeds** the next layer when that ReLU output goes, through dropout/identity only, into
  the next prunable layer and nowhere else; the layers form a **chain** (what the network
  bounds assume) when each feeds the next and the last one's output is the model's output;
* a (Conv2d, BatchNorm2d) or (Linear, BatchNorm1d) **pair** folds when the BatchNorm reads the
  layer's output and nothing else does (for a Linear, its output 2-D: BatchNorm1d normalises
  dimension 1), each called once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import NettrimError, require
from .trace import Op, analyse, fx_ops, is_prunable, record_ops

FOLDABLE = ((nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d))


@dataclass(frozen=True)
class LayerNode:
    """A prunable layer: its dotted name, kind ("linear", "conv2d", "conv1d"), whether it is a
    ReLU layer, its position, whether it feeds the next layer, whether its output is the
    model's output alone, and what reads its pre-activation (e.g. ("ReLU",), ("GELU 'act'",))."""

    name: str
    kind: str
    relu: bool
    index: int
    feeds_next: bool = False
    to_output: bool = False
    users: tuple[str, ...] = ()


@dataclass
class ModelGraph:
    """``layers`` in execution order and ``bn_pairs`` (layer name, BatchNorm name) that fold."""

    layers: list[LayerNode]
    bn_pairs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.layers]

    def node(self, name: str) -> LayerNode:
        return next(n for n in self.layers if n.name == name)

    @property
    def is_chain(self) -> bool:
        """Each layer's ReLU output feeds only the next layer and the last layer's output is the
        model's output (the plain chain of Theorems 1-2)."""
        return bool(self.layers) and all(n.feeds_next for n in self.layers[:-1]) and self.layers[-1].to_output

    @classmethod
    def build(cls, model: nn.Module, example) -> "ModelGraph":
        """Run ``model`` on ``example`` (a small batch, eval mode) once recorded and once traced
        (where it traces) and read the graph (module docstring). One-line NettrimError when the
        model does not run on ``example`` (naming the module that failed), when a prunable layer
        runs more than once per forward pass or shares its weight, or when no layer runs."""
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
        names = [n for n in calls if is_prunable(modules[n])]
        _check_layers(model, names, calls, ops)
        analyses = ([(ops, storage)] if ops is not None else []) + ([graph] if graph is not None else [])
        layers = _nodes(modules, names, analyses)
        pairs = _bn_pairs(modules, calls, ops, graph)
        return cls(layers, pairs)


def kind_of(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    return "conv2d" if isinstance(module, nn.Conv2d) else "conv1d"


def _nodes(modules, names, analyses) -> list[LayerNode]:
    """The layer nodes from the flows of every analysis (a rule holds when all agree)."""
    flows = [analyse(o, s, names) for o, s in analyses]
    nodes = []
    for index, name in enumerate(names):
        found = [f.get(name) for f in flows]
        known = bool(found) and all(f is not None for f in found)
        nxt = names[index + 1] if index + 1 < len(names) else None
        relu = known and all(f.relu for f in found)
        feeds = (relu and nxt is not None and all(f.feeds == nxt for f in found)
                 and kind_of(modules[name]) == kind_of(modules[nxt]) == "linear")
        nodes.append(LayerNode(name, kind_of(modules[name]), relu, index, feeds,
                               known and all(f.to_output for f in found),
                               found[0].users if known else ("?",)))
    return nodes


def _bn_pairs(modules, calls, ops, graph) -> list[tuple[str, str]]:
    """The foldable pairs found by every analysis that ran; a Linear pair needs the recorded
    pass (its output must be 2-D)."""
    found = []
    if ops is not None:
        found.append(set(_pairs_in(ops, modules, calls, check_ndim=True)))
    if graph is not None:
        found.append(set(_pairs_in(graph[0], modules, calls, check_ndim=False)))
    if not found:
        return []
    common = set.intersection(*found)
    linear_ok = ops is not None
    order = {name: i for i, name in enumerate(calls)}
    return sorted((p for p in common if linear_ok or isinstance(modules[p[0]], nn.Conv2d)),
                  key=lambda p: order[p[0]])


def _pairs_in(ops: list[Op], modules, calls, *, check_ndim: bool):
    for i, op in enumerate(ops):
        if op.kind != "module" or not op.outputs or calls.get(op.name) != 1:
            continue
        value = op.outputs[0]
        readers = [o for o in ops[i + 1:] if value in o.inputs and not o.meta]
        if len(readers) != 1:
            continue
        bn = readers[0]
        if not (bn.kind == "module" and bn.first == value and bn.inputs.count(value) == 1
                and calls.get(bn.name) == 1 and _foldable(modules[op.name], modules[bn.name])):
            continue
        if isinstance(modules[op.name], nn.Linear) and check_ndim and op.ndim != 2:
            continue
        if _has_statistics(modules[bn.name], modules[op.name]):
            yield op.name, bn.name


def _foldable(layer, bn) -> bool:
    return any(type(layer) is a and type(bn) is b for a, b in FOLDABLE)


def _has_statistics(bn, layer) -> bool:
    """A BatchNorm with running statistics over the layer's outputs (one without them
    normalises with batch statistics even in eval mode: not a fixed affine map)."""
    out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return bn.running_mean is not None and bn.running_var is not None and bn.num_features == out


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
    """Recorded forward pass: (ops or None, storage, calls); a one-line NettrimError naming the
    failing module when the model does not run on ``example``."""
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


def _check_layers(model: nn.Module, names: list[str], calls: dict, ops) -> None:
    """At least one layer; each runs once; none shares its parameters or is read elsewhere."""
    require(names, f"model {type(model).__name__} has no Linear or Conv2d layer that runs in its "
                   f"forward pass: nothing to prune")
    modules = dict(model.named_modules())
    for name in names:
        require(calls[name] == 1,
                f"layer '{name}' ({type(modules[name]).__name__}) runs {calls[name]} times per "
                f"forward pass (shared weights): nettrim prunes each layer once; give each use "
                f"its own module")
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
