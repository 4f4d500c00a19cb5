"""The public entry points: ``prune`` (one run) and ``shrink`` (the sparsest model within an
accuracy budget), each with its options objects."""
from __future__ import annotations

import math
import numbers
from typing import ClassVar

import torch
from torch import nn

from .errors import NettrimError, require
from .graph.model import ModelGraph
from .methods import Method, NetTrim, resolve_method
from .options import Either, Flag, Function, Integer, Names, OneOf, Options, Real, Size, options
from .scheme import MODES, Plan, PruneResult, run_scheme
from .stream import Batches, RowPlan
from .units import finish_units, unit_plan


def _backend_check():
    from .pruners.backend import LocalBackend, RayBackend
    from .options import Instance

    return Instance((LocalBackend, RayBackend), what="a LocalBackend or RayBackend")


def _store_check():
    from .options import Instance
    from .pruners.resume import RunStore

    return Instance(RunStore, none=True, what="a nettrim.resume.RunStore")


@options
class RunOptions(Options):
    """How a run goes, for any method.

    Attributes:
        batch_size: calibration inputs per forward pass.
        layers: names of the layers to prune (None: all; the others are reported skipped,
            and the network bound is then not given).
        max_rows: patch rows kept per Conv2d layer: an integer, or "auto" = max(5000, 30 N')
            (``nettrim.graph.conv``); every Linear row is used.
        max_memory: bytes (or a size such as "2GiB") that bound the rows a layer's program
            holds (a ReLU layer's); a layer with more is solved and certified on a seeded
            uniform sample of them; None: no bound. Gram-only programs stream every row.
        seed: seeds every sample of rows.
        progress: a progress bar on a terminal, one line per layer in a log.
        backend: "local" or "ray" (the layers of a parallel run as Ray tasks), or a backend
            object (``nettrim.backend``).
        store: a ``nettrim.resume.RunStore``: finished layers kept there, an interrupted run
            resumed after its last finished layer (bit-identical).
    """

    batch_size: int = 1024
    layers: tuple | None = None
    max_rows: int | str = "auto"
    max_memory: int | str | None = None
    seed: int = 0
    progress: bool = True
    backend: object = "local"
    store: object = None

    CHECKS: ClassVar = dict(
        batch_size=Integer(ge=1), layers=Names(none=True, empty=False),
        max_rows=Either(Integer(ge=1), OneOf("auto")), max_memory=Size(none=True), seed=Integer(ge=0),
        progress=Flag(), backend=Either(OneOf("local", "ray"), _backend_check()), store=_store_check())

    def row_plan(self) -> RowPlan:
        return RowPlan(self.max_rows, self.max_memory, self.seed)


def prune(model: nn.Module, inputs, method: Method | str = NetTrim(), *, mode: str = "cascade",
          sparsity: float | None = None, counts: dict[str, int] | None = None,
          run: RunOptions = RunOptions(), **unknown) -> PruneResult:
    """Prune a trained network; returns ``.model`` (a pruned deep copy) and ``.report``.

    Args:
        model: any nn.Module that runs on ``inputs``; its Linear, Conv2d (and transformers'
            Conv1D) layers are pruned (a layer followed by its own ReLU gets the ReLU program,
            any other the linear one). It is not modified.
        inputs: calibration inputs, a tensor (P, ...) or a re-iterable of batches.
        method: a method object (``nettrim.NetTrim(...)``, ``nettrim.SparseGPT()``, ...) or
            a registered name (its default object).
        mode: "cascade" (layer l sees the pruned network's inputs) or "parallel".
        sparsity: fraction of zeros per pruned layer (weights and biases), in (0, 1);
            required by the methods without a tolerance, optional for Net-Trim.
        counts: exact non-zeros per layer name (overrides ``sparsity`` for those layers).
        run: a :class:`RunOptions`.

    Any other keyword is refused with one line saying where it belongs (a method's option on
    the method object, a run option in ``run``). The report's ``run`` records the options, the
    targets, the number of inputs and the (layer, BatchNorm) pairs folded before pruning.
    """
    method = resolve_method(method)
    refuse_unknown("prune", unknown, method)
    require(isinstance(run, RunOptions), f"run must be a nettrim.RunOptions, got {type(run).__name__}")
    batches = checked_batches(model, inputs, mode, run.batch_size)
    require(counts is None or isinstance(counts, dict) and all(isinstance(k, str) for k in counts),
            f"counts must be a dict of layer name -> count, got {str(counts)[:60]}")
    graph = ModelGraph.build(model, batches.example)
    layers = _chosen(graph, run.layers, method.layer_names() | set(counts or ()))
    units = unit_plan(model, batches, method, sparsity is not None or bool(counts))  # refused early; groups
    targets = layer_counts(model, graph, layers, sparsity, counts, method)
    if targets is not None and sparsity is not None and getattr(method, "allocation", "uniform") != "uniform":
        targets.update(_allocated(model, graph, batches, [n for n in layers if n not in (counts or {})],
                                  sparsity, method, run))
    backend = _backend(run.backend)
    plan = Plan(method, targets, mode, run.row_plan(), None if run.layers is None else tuple(run.layers),
                run.progress, backend, _scope(run, model, inputs, method, mode, targets),
                groups=None if units is None else units.groups())
    result = run_scheme(model, batches, plan)
    if units is not None:  # the units no layer reads cut, each claim measured on the cut network
        result = finish_units(result, model, batches, plan, units)
    result.report.run = {"options": run.record(), "sparsity": sparsity, "counts": counts,
                         "inputs": batches.n_inputs, "folded_batchnorm": [list(p) for p in graph.bn_pairs]}
    return result


def refuse_unknown(entry: str, unknown: dict, method: Method) -> None:
    """A one-line NettrimError for the first keyword ``entry`` does not take, saying where it
    belongs: on the method object, in ``run=RunOptions(...)``, or nowhere."""
    if not unknown:
        return
    import dataclasses

    from .methods import METHODS

    name = sorted(unknown)[0]
    head = f"{entry}() has no option {name!r}"
    if name in {f.name for f in dataclasses.fields(RunOptions)}:
        raise NettrimError(f"{head}: it is a run option; pass run=nettrim.RunOptions({name}=...)")
    own = {f.name for f in dataclasses.fields(method)}
    cls = type(method).__name__
    if name in own:
        raise NettrimError(f"{head}: it must be set on the method object, e.g. nettrim.{cls}({name}=...)")
    if any(name in {f.name for f in dataclasses.fields(m)} for m in METHODS.values()):
        raise NettrimError(f"{head}: method options are set on the method object, and {cls} has no "
                           f"option {name!r} (its options: {', '.join(sorted(own)) or 'none'})")
    raise NettrimError(f"{head}; its options: method, mode, sparsity, counts, run")


def checked_batches(model, inputs, mode: str, batch_size: int) -> Batches:
    """The checks every entry point makes on the model, the inputs and the mode; the batches."""
    require(isinstance(model, nn.Module), f"model must be a torch.nn.Module, got {type(model).__name__}")
    require(mode in MODES, f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if isinstance(inputs, torch.Tensor):
        require(inputs.ndim >= 1 and inputs.shape[0] > 0, "inputs must be a non-empty tensor of samples, shape (P, ...)")
        require(inputs.ndim >= 2 or not inputs.is_floating_point(),
                f"inputs of shape {tuple(inputs.shape)} have no feature axis: pass (P, features, ...) "
                "(inputs[:, None] for one feature)")
        require(inputs.device.type != "meta", "inputs are on the meta device (no values): pass real tensors")
        require(not inputs.is_floating_point() or bool(torch.isfinite(inputs).all()), "inputs contain NaN or Inf")
    else:
        require(hasattr(inputs, "__iter__") and not isinstance(inputs, (str, bytes, dict)),
                f"inputs must be a tensor or an iterable of tensor batches, got {type(inputs).__name__}")
        _check_batches(inputs)
    for name, p in [*model.named_parameters(), *model.named_buffers()]:
        require(p.device.type != "meta", f"'{name}' of the model is on the meta device (no values): "
                                         "load its weights first")
    for name, p in model.named_parameters():
        require(not p.is_floating_point() or bool(torch.isfinite(p).all()), f"parameter '{name}' contains NaN or Inf")
    return Batches(inputs, batch_size, model)


def _check_batches(inputs) -> None:
    """Calibration batches given as an iterable: re-iterable (every layer reads them again),
    not empty, each a non-empty tensor of samples shaped as the first, without NaN or Inf (one
    pass)."""
    require(iter(inputs) is not inputs, f"inputs must be re-iterable (a tensor, a list of tensors or a "
                                        f"DataLoader), got a one-shot {type(inputs).__name__}")
    first = None
    for i, batch in enumerate(inputs):
        require(isinstance(batch, torch.Tensor) and batch.ndim >= 1 and batch.shape[0] > 0,
                f"inputs batch {i} must be a non-empty tensor of samples, shape (B, ...), got "
                f"{type(batch).__name__ if not isinstance(batch, torch.Tensor) else tuple(batch.shape)}")
        first = batch if first is None else first
        require(batch.shape[1:] == first.shape[1:], f"inputs batch {i} has shape {tuple(batch.shape)} but batch 0 "
                                                    f"{tuple(first.shape)}: every batch must have the same sample shape")
        require(batch.device.type != "meta", "inputs are on the meta device (no values): pass real tensors")
        require(not batch.is_floating_point() or bool(torch.isfinite(batch).all()),
                f"inputs batch {i} contains NaN or Inf")
    require(first is not None, "inputs are empty: pass calibration samples (a tensor or a list of batches)")


def _chosen(graph: ModelGraph, layers, named: set[str]) -> list[str]:
    """The layers to prune; every name the options use must be a prunable layer."""
    prunable = graph.names
    unknown = sorted((set(layers or ()) | named) - set(prunable))
    require(not unknown, f"no prunable layer named {', '.join(unknown)}; prunable layers: {', '.join(prunable)}")
    return prunable if layers is None else [n for n in prunable if n in layers]


def layer_counts(model, graph, layers, sparsity, counts, method: Method) -> dict[str, int] | None:
    """Non-zeros to keep per pruned layer: ``counts[name]``, else round(total (1 - sparsity));
    None for a method's own tolerance (no target)."""
    if sparsity is not None:
        require(isinstance(sparsity, numbers.Real) and not isinstance(sparsity, bool)
                and math.isfinite(sparsity) and 0 < sparsity < 1, f"sparsity must lie in (0, 1), got {sparsity!r}")
    require(counts is None or isinstance(counts, dict),
            f"counts must be a dict of layer name -> count, got {type(counts).__name__}")
    if sparsity is None and not counts:
        require(not method.needs_target, f"method {method.name!r} needs a target: pass sparsity=... (or counts=...)")
        return None
    out = {}
    for name in layers:
        total = _size(model.get_submodule(name))
        if counts and name in counts:
            k = counts[name]
            require(isinstance(k, numbers.Integral) and not isinstance(k, bool) and 0 <= k <= total,
                    f"counts[{name!r}] must be an integer in [0, {total}] (non-zeros to keep), got {k!r}")
            out[name] = int(k)
        else:
            require(sparsity is not None, f"layer '{name}' has no count and there is no sparsity: give every "
                                          "pruned layer a count, pass sparsity=..., or name the layers in "
                                          "RunOptions(layers=[...])")
            out[name] = int(round(total * (1 - float(sparsity))))
    return out


def _allocated(model, graph: ModelGraph, batches, names, sparsity, method, run) -> dict[str, int]:
    """The counts of the method's allocation over ``names`` (``nettrim.methods.allocation``),
    scored on the original network with its BatchNorms folded."""
    from .graph.batchnorm import fold_batchnorm
    from .methods.allocation import allocated_counts

    folded = fold_batchnorm(model, graph.bn_pairs) if graph.bn_pairs else model
    totals = {n: _size(model.get_submodule(n)) for n in names}
    return allocated_counts(method, folded, batches, names, totals, sparsity, run.row_plan())


def _size(module) -> int:
    return module.weight.numel() + (module.bias.numel() if getattr(module, "bias", None) is not None else 0)


def _scope(run: RunOptions, model, inputs, method: Method, mode: str, targets):
    """The run store's scope of this computation: its fingerprint covers everything a layer's
    weights depend on (the model's state, the inputs, the method, mode, targets and rows)."""
    if run.store is None:
        return None
    from .pruners.resume import digest

    require(isinstance(inputs, torch.Tensor), "a run store needs the calibration inputs as one tensor "
                                              "(their hash keys the finished layers)")
    return run.store.scope("prune", digest(model, inputs, method.record(), mode, targets,
                                           run.row_plan().__dict__, run.layers, run.batch_size))


def _backend(backend):
    from .pruners.backend import make_backend

    return make_backend(backend)
