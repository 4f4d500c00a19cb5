"""Capture one layer's inputs and outputs with forward hooks, streamed batch by batch.

Hooks see a layer through whatever graph feeds it (residual adds, attention, custom code), so
capturing from a partly pruned copy gives the pruned network's inputs to that layer. The fused
transformer fast path is off while capturing (``plain_forward``): it would skip the Linear
modules of an eval-mode ``nn.TransformerEncoderLayer``.

Only the requested layer's matrices are kept; the forward pass is cut short right after that
layer. The rows are written batch by batch into matrices allocated once (their size is known
after the first batch), so capture never holds more than X (P x N) and Z (P x M) of one layer
plus one batch. ``max_memory`` keeps a seeded uniform sample of the rows
(``nettrim.capture.memory``); ``keep_inputs=False`` keeps Z alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import require
from .adapters import adapter_for
from .dataflow import plain_forward
from .memory import check_budget, row_budget, sample_rows


class _Stop(Exception):
    pass


@dataclass
class Capture:
    """One layer's captured rows: ``X`` (rows, N) or None, ``Z`` (rows, M); ``rows_total``
    the rows the capture saw (every patch position of a Conv2d), ``rows_limit`` the most rows
    ``max_memory`` allowed (None without it)."""

    X: torch.Tensor | None
    Z: torch.Tensor
    rows_total: int
    rows_limit: int | None = None


def capture_layer(model: nn.Module, name: str, inputs: torch.Tensor,
                  batch_size: int = 1024, **options) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Inputs X (P, N) and pre-activation outputs Z (P, M) of layer ``name`` on ``inputs``
    (``capture_rows`` for the options)."""
    got = capture_rows(model, name, inputs, batch_size, **options)
    return got.X, got.Z


def capture_rows(model: nn.Module, name: str, inputs: torch.Tensor, batch_size: int = 1024, *,
                 max_memory: int | None = None, keep_inputs: bool = True, **adapter_opts) -> Capture:
    """Layer ``name``'s rows on ``inputs``, batch by batch.

    ``adapter_opts`` go to the layer's adapter (see ``adapter_for``), e.g. ``max_rows`` and
    ``seed`` for the patch rows of a Conv2d; the number of images is passed as ``n_images``.
    ``max_memory`` (bytes): keep at most ``memory.row_budget`` rows, a uniform sample drawn
    with ``seed`` (a Conv2d's patch rows: its ``max_rows`` lowered to that); too few rows for
    the layer is a one-line error. ``keep_inputs=False``: X is not kept (None).
    """
    module = model.get_submodule(name)
    adapter = adapter_for(module, name, n_images=int(inputs.shape[0]), **adapter_opts)
    sink = _Sink(name, module, adapter, int(inputs.shape[0]), max_memory,
                 int(adapter_opts.get("seed") or 0), keep_inputs)

    batch = [0]

    def hook(mod, args, out):
        sink.add(*adapter.matrices(args[0].detach(), out.detach()), samples=batch[0])
        raise _Stop

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), plain_forward():
            for start in range(0, inputs.shape[0], batch_size):
                batch[0] = min(batch_size, inputs.shape[0] - start)  # inputs in this batch
                try:
                    model(inputs[start:start + batch_size])
                except _Stop:
                    pass
    finally:
        handle.remove()
        model.train(was_training)
    require(sink.Z is not None or sink.parts is not None,
            f"layer '{name}' ({type(module).__name__}) did not run as a module in the forward pass: "
            f"it cannot be captured; list layers with nettrim.capture.trace_layers")
    return sink.result()


class _Sink:
    """Where a capture's batches go: the kept rows of each, written into X and Z allocated at
    the first batch (the rows are known then: P samples times the first batch's rows per
    sample, or the patch rows the Conv2d adapter picks, each capped by the budget); a Conv2d
    captured as images (4-D) is concatenated instead."""

    def __init__(self, name, module, adapter, n_images, max_memory, seed, keep_inputs):
        self.name, self.adapter, self.n_images = name, adapter, n_images
        self.max_memory, self.seed, self.keep_inputs = max_memory, seed, keep_inputs
        self.n_features = module.weight[0].numel()
        self.n_outputs = module.weight.shape[0]
        self.patches = hasattr(adapter, "positions_per_image")  # a Conv2d's sampled patch rows
        self.limit = None if max_memory is None else row_budget(max_memory, self.n_features, self.n_outputs)
        require(max_memory is None or not getattr(adapter, "images", False),
                "max_memory does not apply to a Conv2d captured as images (images=True): drop one")
        if self.patches and self.limit is not None:  # the adapter spreads its rows over images
            adapter.max_rows = max(1, min(adapter.max_rows, self.limit))
        self.X = self.Z = self.keep = self.parts = None
        self.total = self.seen = self.filled = 0

    def add(self, X: torch.Tensor, Z: torch.Tensor, samples: int) -> None:
        """One batch of ``samples`` inputs (its rows as the adapter gave them): the kept rows
        written after the rows already there."""
        if Z.ndim != 2:  # a Conv2d's images (operator form): kept whole
            self.parts = (self.parts or []) + [(X.clone() if self.keep_inputs else None, Z.clone())]
            self.total += Z.shape[0] * Z.shape[2] * Z.shape[3]
            return
        if self.Z is None:
            self._allocate(X, Z, samples)
        rows = Z.shape[0]
        if self.keep is not None:  # this batch's kept rows, by global row index
            lo, hi = torch.searchsorted(self.keep, torch.tensor([self.seen, self.seen + rows])).tolist()
            idx = self.keep[lo:hi] - self.seen
            X, Z = X[idx], Z[idx]
        self.seen += rows
        end = self.filled + Z.shape[0]
        require(end <= self.Z.shape[0], f"layer '{self.name}' gave more rows than its first batch "
                                        f"announced: capture it in one batch (batch_size >= samples)")
        if self.X is not None:
            self.X[self.filled:end] = X
        self.Z[self.filled:end] = Z
        self.filled = end

    def _allocate(self, X: torch.Tensor, Z: torch.Tensor, samples: int) -> None:
        """Rows in all and rows kept, from the first batch; the budget checked; X, Z allocated."""
        if self.patches:  # the adapter's own choice, lowered to the budget in __init__
            self.total = self.n_images * int(self.adapter.positions_per_image)
            rows = min(self.adapter.max_rows, self.total)
        else:  # rows per sample from the first batch (several for a Linear applied to tokens)
            self.total = rows = self.n_images * (Z.shape[0] // max(1, samples))
        if self.max_memory is not None:
            rows = min(rows, check_budget(self.name, self.max_memory, self.n_features,
                                          self.n_outputs, self.total))
        if not self.patches:
            self.keep = sample_rows(self.total, rows, self.seed)
        self.Z = Z.new_empty((rows, Z.shape[1]))
        self.X = X.new_empty((rows, X.shape[1])) if self.keep_inputs else None

    def result(self) -> Capture:
        """The capture; every announced row must have come."""
        if self.parts is not None:
            X = torch.cat([x for x, _ in self.parts]) if self.keep_inputs else None
            return Capture(X, torch.cat([z for _, z in self.parts]), self.total)
        require(self.filled == self.Z.shape[0], f"layer '{self.name}' gave {self.filled} rows, "
                                                f"{self.Z.shape[0]} expected")
        return Capture(self.X, self.Z, self.total, self.limit)


def network_output(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The model's output on ``inputs`` in eval mode, batched."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), plain_forward():
            return torch.cat([model(inputs[s:s + batch_size])
                              for s in range(0, inputs.shape[0], batch_size)])
    finally:
        model.train(was_training)
