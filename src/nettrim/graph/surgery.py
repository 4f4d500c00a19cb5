"""Unit surgery on the model graph: the units no later layer reads are removed, and the network
is rebuilt smaller and dense, on any ``nn.Module`` whose data flow proves the removal exact.

A *unit* of a prunable layer l is one of its outputs: a neuron of a ``Linear`` (its last
dimension), a channel of a ``Conv2d``. The units of l can be removed (l is *cuttable*) when
every operation that reads l's output, directly or through others of this list, acts on each
unit apart, and the reads end in prunable layers, l's *readers*:

* element-wise activations (ReLU, GELU, tanh, ...), dropout, identity;
* a BatchNorm (per channel of the maps, or per feature after a Flatten): it loses the channel;
* max/average pooling of the maps, which keeps the channels;
* a Flatten (``nn.Flatten``, ``torch.flatten(x, 1)``, ``x.view(n, -1)``) of (C, H, W) maps into
  C blocks of H x W features, in that order;
* readers: a ``Conv2d`` reading the maps (unit u is its input channel u, all kh x kw weights of
  it) or a ``Linear`` reading the features (unit u is its block of features, one column or
  H x W of them).

Anything else reading l's output (a residual add, a concatenation, attention, a LayerNorm, the
model's output, a module called twice) makes l *fixed*: its units stay, with the reason in
``UnitPlan.fixed``. The flow is read from one recorded forward pass (with the shape of every
value, ``nettrim.graph.trace``) and from the ``torch.fx`` trace (every use of every value,
whatever the input): a layer is cuttable only when both say so, with the same readers. A model
that does not trace (data-dependent control flow) has no cuttable layer: another input could
take a branch that reads the units otherwise.

Two rules, applied over all cuttable layers until nothing changes (:func:`cut`):

1. **unread units.** A unit whose weights in every reader (over the rows that reader keeps)
   are all zero is removed: l loses its output row and bias entry, each reader the unit's
   input (column, block of H x W columns, or input channel), each BatchNorm on the way its
   channel or features. It contributed exactly zero.
2. **constant units.** A unit without incoming weights outputs its bias b_u (or 0) at every
   sample and position; its image c in a reader's input (the modules on the way applied to
   that constant, measured by running the model) moves into the reader's bias,
   b_r += W_r[:, u] c (for a Conv2d reading a spatially constant map: the kernel's sum times
   c), and its weights there become zero; rule 1 then removes it. Where this is not exact (a
   Conv2d that pads with zeros sees 0, not c, at the borders; a reader without a bias) the
   unit stays, unless c = 0.

A cuttable layer none of whose units is read keeps one (its weights and bias zero, reported
in ``placeholders``): a layer of width zero is no layer. Both rules leave the network's function
unchanged on every input, up to float rounding in the folded biases.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import require
from .model import ModelGraph
from .trace import Op, fx_ops, plain_forward, record_ops

ELEMENT_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                   nn.Hardtanh, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
NORM_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d)
POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
ELEMENT_FUNCS = frozenset({"relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "gelu", "silu",
                           "tanh", "sigmoid", "hardtanh", "dropout", "dropout1d", "dropout2d",
                           "feature_dropout", "contiguous", "clone", "detach"})
POOL_FUNCS = frozenset({"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"})
RESHAPE_FUNCS = frozenset({"flatten", "view", "reshape"})


@dataclass(frozen=True)
class Reader:
    """A layer reading a cuttable layer's units: ``maps`` (a Conv2d: unit u is input channel u)
    or features, ``block`` features per unit (1, or the H x W of a flattened channel)."""

    name: str
    maps: bool
    block: int = 1


@dataclass(frozen=True)
class Link:
    """A cuttable layer: its units, its readers, and the BatchNorms on the way (name, block:
    features per unit there, 1 for maps)."""

    layer: str
    units: int
    readers: tuple[Reader, ...]
    norms: tuple[tuple[str, int], ...] = ()


@dataclass
class UnitPlan:
    """Which layers' units can be removed (``links``) and why the others' cannot (``fixed``);
    ``layers``: every prunable layer in execution order."""

    layers: list[str]
    links: dict[str, Link]
    fixed: dict[str, str]

    def groups(self) -> dict[str, torch.Tensor]:
        """Per reader of a flattened channel, the (N,) unit of each input feature
        (feature f belongs to unit f // block): the groups of structured Net-Trim there."""
        out = {}
        for link in self.links.values():
            for r in link.readers:
                if not r.maps and r.block > 1:
                    out[r.name] = torch.arange(link.units * r.block) // r.block
        return out

    def reading(self) -> dict[str, tuple[Link, Reader]]:
        """Reader name -> (the link it reads, how)."""
        return {r.name: (link, r) for link in self.links.values() for r in link.readers}

    def refuse_if_empty(self) -> None:
        """A one-line NettrimError when no layer's units can be removed."""
        why = "; ".join(f"layer '{n}': {r}" for n, r in list(self.fixed.items())[:2])
        require(self.links, f"no layer of this model can lose units ({why}): unit surgery needs a "
                            "layer whose output reaches only the next layers, each unit apart")


@dataclass
class Cut:
    """The smaller model and what was removed: ``kept[name]`` the output units (indices into
    the original layer) each cuttable layer keeps; ``widths[name]`` (units before, after) of
    every prunable layer; ``folded`` the constant units moved into their readers' biases;
    ``placeholders`` the layers none of whose units is read (the one unit kept); ``fixed``
    the layers whose units stay, and why."""

    model: nn.Module
    kept: dict[str, list[int]]
    widths: dict[str, tuple[int, int]]
    folded: dict[str, list[int]] = field(default_factory=dict)
    placeholders: dict[str, int] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)

    def measured_units(self, name: str, n: int) -> list[int]:
        """The output units of layer ``name`` (of ``n``) that anything reads: its kept units,
        a placeholder excepted; every unit of a layer that is not cut."""
        if name not in self.kept:
            return list(range(n))
        return [u for u in self.kept[name] if self.placeholders.get(name) != u]

    def record(self) -> dict:
        return {"widths": {k: list(v) for k, v in self.widths.items()}, "kept": dict(self.kept),
                "folded": dict(self.folded), "placeholders": dict(self.placeholders), "fixed": dict(self.fixed)}


def remove_dead_units(model: nn.Module, example: torch.Tensor) -> Cut:
    """The smaller copy of ``model`` without the units no layer reads (module docstring);
    ``example``: a small batch the model runs on. ``model`` is not modified. A one-line
    NettrimError when no layer of the model can lose units."""
    plan = plan_units(model, example)
    plan.refuse_if_empty()
    return cut(model, plan, example)


# -- the plan: which layers are cuttable, read from the data flow ----------------------------------


def plan_units(model: nn.Module, example: torch.Tensor) -> UnitPlan:
    """The :class:`UnitPlan` of ``model`` on ``example`` (module docstring)."""
    graph = ModelGraph.build(model, example)  # the one-line errors of a model that does not run
    was_training = model.training
    model.eval()
    try:
        try:
            ops, _, calls = record_ops(model, example)
        except Exception:  # runs only without the function recorder: no data flow to prove
            ops, calls = None, {}
        try:
            traced = fx_ops(model)[0]
        except Exception:  # data-dependent control flow, untraceable modules, ...
            traced = None
    finally:
        model.train(was_training)
    names = graph.names
    if ops is None or traced is None:  # the flow on other inputs is not known
        why = ("the forward pass could not be recorded" if ops is None else
               "the model does not trace with torch.fx (data-dependent control flow?): what reads "
               "its units on other inputs is not known")
        return UnitPlan(names, {}, dict.fromkeys(names, why))
    modules = dict(model.named_modules())
    links, fixed = {}, {}
    for name in names:
        link, why = _link(ops, name, set(names), modules, calls)
        if why is None:
            why = _agrees(traced, name, set(names), link)
        if why is None:
            links[name] = link
        else:
            fixed[name] = why
    return UnitPlan(names, links, fixed)


def _role(op: Op) -> str | None:
    """How an operation acts on the units: "element", "norm", "pool", "reshape" or None."""
    if op.kind == "module":
        kind = type(op.module)
        if kind in ELEMENT_MODULES:
            return "element"
        if kind in NORM_MODULES:
            return "norm"
        if kind in POOL_MODULES:
            return "pool"
        return "reshape" if kind is nn.Flatten else None
    if op.kind != "function" or op.dtype_arg:
        return None
    for role, funcs in (("element", ELEMENT_FUNCS), ("pool", POOL_FUNCS), ("reshape", RESHAPE_FUNCS)):
        if op.name in funcs:
            return role
    return None


def _walk(ops: list[Op], name: str, layers: set[str]):
    """(path ops, reader ops, reason or None): the unit-wise operations from layer ``name``'s
    output to the prunable layers that read it, or why it reaches something else."""
    start = next(i for i, op in enumerate(ops) if op.kind == "module" and op.name == name)
    if not ops[start].outputs:
        return [], [], "its output was not recorded"
    front, path, readers = {ops[start].outputs[0]}, [], []
    for op in ops[start + 1:]:
        if op.meta or not any(v in front for v in op.inputs):
            continue
        if op.kind == "output":
            return path, readers, "its output is (part of) the model's output"
        single = op.first in front and sum(v in front for v in op.inputs) == 1
        if op.kind == "module" and op.name in layers:
            if not (single and len(op.inputs) == 1):
                return path, readers, f"layer '{op.name}' reads it with other inputs"
            readers.append(op)
            continue
        if _role(op) is None or not single:
            return path, readers, f"it is read by {op.describe()}, which does not act on each unit apart"
        path.append(op)
        front |= set(op.outputs)
    return path, readers, None if readers else "no prunable layer reads it"


def _link(ops: list[Op], name: str, layers: set[str], modules: dict, calls: dict):
    """(Link, None) for a cuttable layer, else (None, why): the walk, checked on the recorded
    shapes (the units keep their place through every operation)."""
    layer = modules[name]
    if type(layer) not in (nn.Linear, nn.Conv2d):
        return None, f"a {type(layer).__name__} is not rebuilt"
    path, readers, why = _walk(ops, name, layers)
    if why is not None:
        return None, why
    shape = {op.outputs[0]: op.shape for op in ops if op.outputs}
    first = next(op for op in ops if op.kind == "module" and op.name == name)
    out = shape[first.outputs[0]]
    if isinstance(layer, nn.Conv2d):
        if len(out) != 4:
            return None, f"its output has shape {out}, not (batch, C, H, W)"
        layout = {first.outputs[0]: (True, 1)}  # maps; features per unit
    else:
        layout = {first.outputs[0]: (False, 1)}
    norms = []
    for op in path:
        maps, block = layout[op.first]
        step = _step(op, maps, block, shape[op.first], op.shape, calls)
        if isinstance(step, str):
            return None, step
        for v in op.outputs:
            layout[v] = step
        if _role(op) == "norm":
            norms.append((op.name, step[1]))
    found = []
    for op in readers:
        reader = modules[op.name]
        maps, block = layout[op.first]
        if isinstance(reader, nn.Conv2d) and maps and reader.in_channels == _units(layer):
            found.append(Reader(op.name, True))
        elif isinstance(reader, nn.Linear) and not maps and reader.in_features == _units(layer) * block:
            found.append(Reader(op.name, False, block))
        else:
            return None, f"layer '{op.name}' ({type(reader).__name__}) does not read its units one by one"
    return Link(name, _units(layer), tuple(found), tuple(dict.fromkeys(norms))), None


def _step(op: Op, maps: bool, block: int, before: tuple, after: tuple | None, calls: dict):
    """The layout (maps, block) after ``op``, or why the units do not keep their place."""
    role = _role(op)
    where = op.describe()
    if after is None:
        return f"{where} has no recorded output"
    if role == "norm":
        if op.kind != "module" or calls.get(op.name) != 1:
            return f"{where} runs more than once"
        if after != before or (isinstance(op.module, nn.BatchNorm2d) != maps) or len(before) not in (2, 4):
            return f"{where} does not normalise each unit apart"
        return maps, block
    if role == "pool":
        ok = maps and len(after) == 4 and after[:2] == before[:2]
        return (maps, block) if ok else f"{where} does not pool each channel apart"
    if after == before:
        return maps, block
    if role == "reshape" and maps and after == (before[0], math.prod(before[1:])):
        return False, math.prod(before[2:])
    return f"{where} moves the units (shape {before} to {after})"


def _agrees(traced: list[Op], name: str, layers: set[str], link: Link) -> str | None:
    """Why the fx trace disagrees with the recorded pass about layer ``name``, or None."""
    if not any(op.kind == "module" and op.name == name for op in traced):
        return "the fx trace does not call it"
    _, readers, why = _walk(traced, name, layers)
    if why is not None:
        return f"{why} (in the fx trace)"
    if sorted(op.name for op in readers) != sorted(r.name for r in link.readers):
        return "the fx trace and the recorded pass disagree on its readers"
    return None


def _units(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


# -- the cut -----------------------------------------------------------------------------------


@torch.no_grad()
def cut(model: nn.Module, plan: UnitPlan, example: torch.Tensor) -> Cut:
    """The two rules of the module docstring applied to a copy of ``model`` under ``plan``,
    then the copy rebuilt smaller."""
    work = copy.deepcopy(model).eval()
    modules = {n: work.get_submodule(n) for n in plan.layers}
    alive = {n: torch.ones(link.units, dtype=torch.bool) for n, link in plan.links.items()}
    folded: dict[str, list[int]] = {}
    changed = True
    while changed:
        changed = False
        for name, link in plan.links.items():
            layer = modules[name]
            read = _read(link, modules, alive)
            fold = alive[name] & _constant(layer) & read
            if bool(fold.any()):
                done = _fold(work, link, modules, fold, example)
                if done:
                    folded.setdefault(name, []).extend(done)
                    read = _read(link, modules, alive)
            dead = alive[name] & ~read
            if bool(dead.any()):
                alive[name] &= read
                _zero_units(layer, dead)
                changed = True
    placeholders = {}
    for name, keep in alive.items():
        if not bool(keep.any()):
            keep[0] = True  # the unit's weights and bias are zero already: nothing reads it
            placeholders[name] = 0
    widths = {n: (_width(modules[n]), int(alive[n].sum()) if n in alive else _width(modules[n]))
              for n in plan.layers}
    _rebuild(work, plan, modules, alive)
    kept = {n: keep.nonzero().flatten().tolist() for n, keep in alive.items()}
    return Cut(work, kept, widths, folded, placeholders, dict(plan.fixed))


def _width(layer: nn.Module) -> int:
    return _units(layer) if isinstance(layer, (nn.Linear, nn.Conv2d)) else layer.weight.shape[1]


def _per_unit(weight: torch.Tensor, units: int) -> torch.Tensor:
    """A reader's weight (R, N) or (R, C, kh, kw) as (R, units, weights per unit)."""
    return weight.reshape(weight.shape[0], units, math.prod(weight.shape[1:]) // units)


def _read(link: Link, modules: dict, alive: dict) -> torch.Tensor:
    """(units,) whether any kept row of any reader has a non-zero weight on each unit."""
    read = torch.zeros(link.units, dtype=torch.bool)
    for r in link.readers:
        w = modules[r.name].weight
        rows = alive.get(r.name)
        w = w if rows is None else w[rows.to(w.device)]
        read |= (_per_unit(w, link.units) != 0).any(2).any(0).cpu()
    return read


def _constant(layer: nn.Module) -> torch.Tensor:
    """(units,) units without incoming weights."""
    w = layer.weight
    return (w.reshape(w.shape[0], -1) == 0).all(1).cpu()


def _zero_units(layer: nn.Module, units: torch.Tensor) -> None:
    idx = units.nonzero().flatten().to(layer.weight.device)
    layer.weight[idx] = 0
    if layer.bias is not None:
        layer.bias[idx] = 0


def _reader_inputs(work: nn.Module, names: list[str], example: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each of ``names`` reads on ``example`` (one forward pass, eval mode)."""
    got = {}

    def hook(name):
        return lambda mod, args: got.__setitem__(name, args[0].detach().clone())

    handles = [work.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    try:
        with plain_forward():
            work(example)
    finally:
        for h in handles:
            h.remove()
    return got


def _fold(work: nn.Module, link: Link, modules: dict, fold: torch.Tensor, example) -> list[int]:
    """Rule 2 for the constant units ``fold`` of ``link``: each moved into every reader where
    that is exact; returns the units moved into all of them (now unread)."""
    seen = _reader_inputs(work, [r.name for r in link.readers], example)
    done = []
    for u in fold.nonzero().flatten().tolist():
        moved = [_fold_unit(modules[r.name], r, u, seen[r.name]) for r in link.readers]
        if all(moved):
            done.append(u)
    return done


def _fold_unit(reader: nn.Module, how: Reader, u: int, seen: torch.Tensor) -> bool:
    """Move unit u's constant image into ``reader``'s bias and zero its weights there, when
    exact (module docstring); whether it was."""
    if how.maps:
        value = seen[:, u]
        c = value.flatten()[0]
        if not bool((value == c).all()):
            return False
        w = reader.weight[:, u]
        if bool(c != 0):
            pads = reader.padding_mode == "zeros" and any(p != 0 for p in reader._reversed_padding_repeated_twice)
            if pads or reader.bias is None:
                return False
            reader.bias += (w.sum((1, 2)) * c).to(reader.bias)
        reader.weight[:, u] = 0
        return True
    cols = slice(u * how.block, (u + 1) * how.block)
    value = seen[..., cols].reshape(-1, how.block)
    if not bool((value == value[0]).all()):
        return False
    if bool((value[0] != 0).any()):
        if reader.bias is None:
            return False
        reader.bias += (reader.weight[:, cols] @ value[0].to(reader.weight)).to(reader.bias)
    reader.weight[:, cols] = 0
    return True


def _rebuild(work: nn.Module, plan: UnitPlan, modules: dict, alive: dict) -> None:
    """Every layer, reader and BatchNorm of a cut unit made smaller, in place in ``work``."""
    reading = plan.reading()
    for name in plan.layers:
        rows = alive.get(name)
        cols = None
        if name in reading:
            link, how = reading[name]
            cols = alive[link.layer] if how.maps else alive[link.layer].repeat_interleave(how.block)
        if rows is not None or cols is not None:
            _shrink_layer(modules[name], rows, cols)
    for name, link in plan.links.items():
        for bn_name, block in link.norms:
            _shrink_norm(work.get_submodule(bn_name), alive[name].repeat_interleave(block))


def _param(old: nn.Parameter, value: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(value.contiguous(), requires_grad=old.requires_grad)


def _shrink_layer(layer: nn.Module, rows: torch.Tensor | None, cols: torch.Tensor | None) -> None:
    """A Linear or Conv2d keeping output ``rows`` and input ``cols`` (boolean masks)."""
    w = layer.weight.detach()
    if rows is not None:
        w = w[rows.to(w.device)]
        if layer.bias is not None:
            layer.bias = _param(layer.bias, layer.bias.detach()[rows.to(w.device)])
    if cols is not None:
        w = w[:, cols.to(w.device)]
    layer.weight = _param(layer.weight, w)
    if isinstance(layer, nn.Linear):
        layer.out_features, layer.in_features = w.shape
    else:
        layer.out_channels, layer.in_channels = w.shape[:2]


def _shrink_norm(bn: nn.Module, keep: torch.Tensor) -> None:
    """A BatchNorm keeping the channels or features ``keep`` (boolean mask)."""
    keep = keep.to(bn.running_mean.device if bn.running_mean is not None else bn.weight.device)
    for p in ("weight", "bias"):
        if getattr(bn, p) is not None:
            setattr(bn, p, _param(getattr(bn, p), getattr(bn, p).detach()[keep]))
    for b in ("running_mean", "running_var"):
        if getattr(bn, b) is not None:
            setattr(bn, b, getattr(bn, b)[keep].clone())
    bn.num_features = int(keep.sum())


# -- the rival at the same widths ----------------------------------------------------------------


@torch.no_grad()
def magnitude_units(model: nn.Module, example: torch.Tensor, widths: dict[str, int],
                    norm: str = "outgoing") -> Cut:
    """Magnitude unit pruning, structured Net-Trim's rival at the same widths: in every layer
    named in ``widths``, keep that many units, those with the largest L2 norm of their outgoing
    weights (``norm="outgoing"``: every weight of every reader that reads the unit) or of their
    incoming weights (``"incoming"``: its row or filter, bias excluded); the others' outgoing
    weights are zeroed and the units removed (:func:`cut`). No refit, no data beyond
    ``example`` (a batch to trace the model). ``model`` is not modified."""
    require(norm in ("outgoing", "incoming"), f"norm must be 'outgoing' or 'incoming', got {norm!r}")
    require(isinstance(widths, dict), f"widths must be a dict of layer name -> units, got {type(widths).__name__}")
    model = copy.deepcopy(model).eval()
    plan = plan_units(model, example)
    unknown = sorted(set(widths) - set(plan.links))
    require(not unknown, f"no layer named {', '.join(unknown)} can lose units; those that can: "
                         f"{', '.join(plan.links) or 'none'}")
    for name, link in plan.links.items():
        if name not in widths:
            continue
        k = widths[name]
        require(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= link.units,
                f"widths[{name!r}] must be an integer in 1..{link.units}, got {k!r}")
        readers = [model.get_submodule(r.name).weight for r in link.readers]
        if norm == "outgoing":
            score = sum(_per_unit(w, link.units).square().sum((0, 2)) for w in readers).sqrt()
        else:
            w = model.get_submodule(name).weight
            score = w.reshape(link.units, -1).norm(dim=1)
        drop = score.argsort(descending=True)[k:]
        for w in readers:
            w.view(w.shape[0], link.units, -1)[:, drop] = 0
    return cut(model, plan, example)
