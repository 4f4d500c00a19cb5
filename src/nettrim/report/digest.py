"""sha256 digests of tensors: which weights and which calibration draw a report was written for.

A digest covers each tensor's name, dtype, shape and bytes, in the order of sorted names, so
that two states agree exactly when they hold the same tensors bit for bit (a module's class and
the order it registers its parameters do not enter). The calibration draw is digested by its
rows in order, as the run saw them (in the model's floating dtype): the digest does not depend
on how it was cut into batches.

A report records (``PruneReport.digests``)::

    {"algorithm": "sha256",
     "original": the original model's state dict (parameters and buffers),
     "pruned":   the pruned model's state dict,
     "layers":   {layer name: the pruned layer's own tensors (weight, bias)},
     "inputs":   the calibration inputs}
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

import torch
from torch import nn

ALGORITHM = "sha256"


def _bytes(t: torch.Tensor) -> bytes:
    """The tensor's values as bytes in C order (any dtype, bfloat16 included)."""
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    return t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _header(name: str, t: torch.Tensor) -> bytes:
    return f"{name}\0{str(t.dtype)}\0{tuple(t.shape)}\0".encode()


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, by sorted name (hex)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(_header(name, t))
        h.update(_bytes(t))
    return h.hexdigest()


def state_digest(model: nn.Module) -> str:
    """The digest of ``model.state_dict()`` (every parameter and persistent buffer)."""
    return tensors_digest(model.state_dict())


def layer_digest(model: nn.Module, name: str) -> str:
    """The digest of layer ``name``'s own tensors (its weight and bias)."""
    return tensors_digest(model.get_submodule(name).state_dict())


def rows_digest(batches: Iterable[torch.Tensor]) -> str:
    """sha256 over the rows of the batches in order: the per-row dtype and shape once, then
    every row's bytes (the same for any batching of the same rows)."""
    h = hashlib.sha256()
    head = None
    for batch in batches:
        row = (str(batch.dtype), tuple(batch.shape[1:]))
        if head is None:
            head = row
            h.update(f"{row[0]}\0{row[1]}\0".encode())
        elif row != head:  # a different row shape or dtype makes a different draw
            h.update(f"\0{row[0]}\0{row[1]}\0".encode())
            head = row
        h.update(_bytes(batch))
    return h.hexdigest()


def report_digests(original: nn.Module, pruned: nn.Module, layers: Iterable[str], batches) -> dict:
    """What a report records (module docstring)."""
    return {"algorithm": ALGORITHM, "original": state_digest(original), "pruned": state_digest(pruned),
            "layers": {name: layer_digest(pruned, name) for name in layers}, "inputs": rows_digest(batches)}
