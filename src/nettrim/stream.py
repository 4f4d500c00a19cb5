"""Calibration data streamed through the networks into each layer's statistics.

The calibration inputs are a tensor (cut into batches) or any re-iterable of batches (a list
of tensors, a ``DataLoader``): nothing ever holds them all at once unless the caller did. For
one layer, every batch runs through the original network up to the layer (a forward hook
captures the layer's rows and stops the pass), and in cascade also through the pruned
network; the rows go straight into a :class:`~nettrim.program.StatsBuilder`: the layer's
inputs (the pruned network's in cascade) and its targets (always the original network's: its
ReLU output for a ReLU layer, its pre-activation otherwise).

Rows kept. A Conv2d layer has H_out W_out patch rows per image: at most ``max_rows`` of them
are kept, spread over images and positions by a seeded hash (``nettrim.graph.conv``), the
same positions in both networks. A layer whose program holds its rows keeps at most
``max_memory / bytes_per_row`` of them, a seeded uniform sample (the same rows in both
networks); a Gram-only program streams every row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn

from .errors import NettrimError, require
from .graph.adapters import adapter_for, has_bias
from .graph.trace import plain_forward
from .program import LayerStats, StatsBuilder

MIN_ROWS = 1000  # fewer held rows than this (or all of a smaller layer) make too weak a certificate


class _Stop(Exception):
    pass


class Batches:
    """The calibration inputs as batches on the model's device, in its floating dtype.

    ``inputs``: a tensor (P, ...) cut into ``batch_size`` rows, or a re-iterable of tensors
    (iterated once per pass; it must give the same batches every time)."""

    def __init__(self, inputs, batch_size: int, model: nn.Module):
        self.inputs, self.batch_size = inputs, batch_size
        param = next((p for p in model.parameters() if p.is_floating_point()), None)
        self.device = param.device if param is not None else torch.device("cpu")
        self.dtype = param.dtype if param is not None else torch.float32
        self.tensor = isinstance(inputs, torch.Tensor)
        self.n_inputs = int(inputs.shape[0]) if self.tensor else sum(int(b.shape[0]) for b in self._raw())
        first = inputs[:2] if self.tensor else next(iter(self._raw()))[:2]
        self.example = self._ready(first)

    def _raw(self) -> Iterable[torch.Tensor]:
        if self.tensor:
            return (self.inputs[s:s + self.batch_size] for s in range(0, self.inputs.shape[0], self.batch_size))
        return self.inputs

    def _ready(self, batch) -> torch.Tensor:
        require(isinstance(batch, torch.Tensor), f"calibration batches must be tensors, got {type(batch).__name__}")
        batch = batch.to(self.device)
        return batch.to(self.dtype) if batch.is_floating_point() else batch

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batch in self._raw():
            yield self._ready(batch)


@dataclass(frozen=True)
class RowPlan:
    """How many rows each layer keeps: ``max_rows`` for Conv2d patch rows ("auto":
    max(5000, 30 N')), ``max_memory`` bytes for the rows a program holds (None: no bound),
    ``seed`` for the choice of rows."""

    max_rows: int | str = "auto"
    max_memory: int | None = None
    seed: int = 0


def bytes_per_row(n_inputs: int, n_outputs: int) -> int:
    """What one held row of a layer costs while it is pruned: its inputs with the ones column
    and its targets in float32 (4 N' + 4 M), the slack V, the active mask and the solvers'
    products on the rows (4 M + M + 16 M): 4 N' + 25 M bytes."""
    return 4 * int(n_inputs) + 25 * int(n_outputs)


def row_limit(plan: RowPlan, n_inputs: int, n_outputs: int) -> int | None:
    """The most rows a held program may keep under ``plan.max_memory`` (None: no bound)."""
    return None if plan.max_memory is None else plan.max_memory // bytes_per_row(n_inputs, n_outputs)


def layer_stats(original: nn.Module, name: str, batches: Batches, *, relu: bool, hold: bool,
                plan: RowPlan, pruned: nn.Module | None = None) -> LayerStats:
    """Layer ``name``'s statistics (module docstring): inputs from ``pruned`` when given (the
    cascade), else from ``original``; targets from ``original``."""
    module = original.get_submodule(name)
    options = dict(max_rows=plan.max_rows, seed=plan.seed, n_images=batches.n_inputs)
    if hold and plan.max_memory is not None:
        n_out = module.weight.shape[0] if not _is_conv1d(module) else module.weight.shape[1]
        options["max_rows"] = _conv_rows(plan, module, n_out)
    originals = adapter_for(module, name, **options)
    prunes = None if pruned is None else adapter_for(pruned.get_submodule(name), name, **options)
    builder = StatsBuilder(bias=has_bias(module), hold=hold)
    sampler = _Sampler(name, plan, hold)
    width = originals.get()[0].shape[1] + has_bias(module)  # the original's: the same rows in both
    for batch in batches:
        X, Z = _rows_at(original, name, originals, batch, inputs=prunes is None)
        if prunes is not None:
            X, _ = _rows_at(pruned, name, prunes, batch, inputs=True)
        keep = sampler.pick(width, Z.shape[1], batches.n_inputs, batch.shape[0], Z.shape[0])
        Y = torch.relu(Z) if relu else Z
        if keep is not None:
            X, Y = X[keep], Y[keep]
        builder.add(X, Y)
    require(builder.rows > 0, f"layer '{name}' did not run as a module in the forward pass: it cannot be captured")
    positions = getattr(originals, "positions_per_image", None)  # a Conv2d's rows: every position
    return builder.finish(rows_total=batches.n_inputs * positions if positions else sampler.total or builder.rows)


def _is_conv1d(module) -> bool:
    return not isinstance(module, (nn.Linear, nn.Conv2d))


def _conv_rows(plan: RowPlan, module: nn.Module, n_out: int) -> int | str:
    """A Conv2d's patch rows lowered to what ``max_memory`` holds."""
    if not isinstance(module, nn.Conv2d):
        return plan.max_rows
    n_in = module.weight[0].numel() + (module.bias is not None)
    limit = row_limit(plan, n_in, n_out)
    from .graph.conv import solve_rows
    rows = solve_rows(n_in - 1) if plan.max_rows == "auto" else int(plan.max_rows)
    return max(1, min(rows, limit))


def _rows_at(model: nn.Module, name: str, adapter, batch: torch.Tensor, *, inputs: bool):
    """The layer's rows on one batch: a forward pass cut short right after the layer."""
    got = {}

    def hook(mod, args, out):
        got["rows"] = adapter.matrices(args[0].detach(), out.detach(), inputs=inputs)
        raise _Stop

    handle = model.get_submodule(name).register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), plain_forward():
            model(batch)
    except _Stop:
        pass
    finally:
        handle.remove()
        model.train(was_training)
    require("rows" in got, f"layer '{name}' did not run in the forward pass: it cannot be captured")
    return got["rows"]


class _Sampler:
    """Which rows of each batch a held Linear program keeps under ``max_memory``: a seeded
    uniform sample of the layer's T rows, fixed at the first batch (T = inputs x rows per
    input), the same rows whatever the batching."""

    def __init__(self, name: str, plan: RowPlan, hold: bool):
        self.name, self.plan, self.hold = name, plan, hold
        self.keep: torch.Tensor | None = None
        self.total = 0
        self.seen = 0
        self.ready = False

    def pick(self, n_in: int, n_out: int, n_inputs: int, batch_inputs: int, rows: int):
        if not self.ready:
            self._plan(n_in, n_out, n_inputs, batch_inputs, rows)
        if self.keep is None:
            self.seen += rows
            return None
        lo, hi = torch.searchsorted(self.keep, torch.tensor([self.seen, self.seen + rows])).tolist()
        idx = self.keep[lo:hi] - self.seen
        self.seen += rows
        return idx

    def _plan(self, n_in, n_out, n_inputs, batch_inputs, rows) -> None:
        self.ready = True
        self.total = n_inputs * (rows // max(1, batch_inputs))
        limit = row_limit(self.plan, n_in, n_out) if self.hold else None
        if limit is None or limit >= self.total:
            return
        check_rows(self.name, limit, self.total, n_in, n_out)
        gen = torch.Generator().manual_seed(int(self.plan.seed))
        self.keep = torch.randperm(self.total, generator=gen)[:limit].sort().values


def check_rows(name: str, limit: int, total: int, n_in: int, n_out: int) -> None:
    """A one-line error when ``max_memory`` holds fewer than min(total, MIN_ROWS) rows."""
    need = min(int(total), MIN_ROWS)
    if limit < need:
        per_row = bytes_per_row(n_in, n_out)
        raise NettrimError(f"max_memory holds {limit} rows of layer '{name}' ({per_row} bytes a row), "
                           f"fewer than the {need} it needs: raise max_memory to at least "
                           f"{math.ceil(need * per_row / 2 ** 20)}MiB")


def network_output(model: nn.Module, batches: Batches) -> torch.Tensor:
    """The model's output on every batch (eval mode), as one tensor (a ModelOutput's logits,
    a tuple's first tensor)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), plain_forward():
            return torch.cat([output_tensor(model(b)) for b in batches])
    finally:
        model.train(was_training)


def output_tensor(out) -> torch.Tensor:
    """The tensor a model's output stands for: itself, a ``logits`` attribute (transformers'
    ModelOutput), or the first tensor of a tuple, list or dict."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    first = next((v for v in values if isinstance(v, torch.Tensor)), None)
    require(first is not None, f"the model returns {type(out).__name__}, which holds no tensor output")
    return first
