"""Bounded-memory capture: how many rows of a layer fit in a byte budget, and which rows.

A layer's rows are held three times over while it is pruned: the capture keeps X (P, N), the
pre-activations Z (P, M) and the targets Y (P, M) in float32; the solver adds A = [X 1] and
Y, V in float32 with the boolean active pattern, and the refit (``nettrim.layer.refit``) a
float64 copy of A, Y and V. Per row that is

    bytes_per_row(N, M) = 4 (N + 2M)  +  4 (N + 1) + 8 M + M  +  8 (N + 1) + 16 M
                        = 16 N + 33 M + 12.

A budget of B bytes keeps floor(B / bytes_per_row) rows of a layer; fewer than
``MIN_ROWS`` (or all rows, when the layer has fewer) is refused. The rows kept are a uniform
sample drawn with a seeded generator from the layer's T rows: the same (seed, T) gives the
same rows whatever the batching, so a cascade layer's original targets and pruned inputs are
captured on the same rows. What the budget does not cover: the model, the calibration inputs,
one batch's forward pass, and the solver's per-iteration work on its own row sample
(``NetTrim(solve_rows=...)``).
"""
from __future__ import annotations

import math
import re

import torch

from ..errors import NettrimError, require

MIN_ROWS = 1000  # below this a layer's certificate covers too few rows to mean much (docs/distributed.md)
_UNITS = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
          "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_memory(value) -> int:
    """Bytes from an int (bytes) or a string "<number>[unit]", unit one of B, KB, MB, GB, TB
    (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), case-insensitive; must be >= 1."""
    if isinstance(value, bool):
        value = repr(value)
    if isinstance(value, int):
        require(value >= 1, f"max_memory must be a positive number of bytes, got {value}")
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    unit = match.group(2).upper() if match else None
    if unit not in _UNITS:
        raise NettrimError(f"max_memory must be a size such as 2GiB, 512MiB or 1000000 (bytes; units "
                           f"B, KB, MB, GB, KiB, MiB, GiB), got {value!r}")
    size = math.floor(float(match.group(1)) * _UNITS[unit])
    require(size >= 1, f"max_memory must be at least 1 byte, got {value!r}")
    return size


def bytes_per_row(n_features: int, n_outputs: int) -> int:
    """What one row of a layer with N inputs and M outputs costs: 16 N + 33 M + 12 (module doc)."""
    return 16 * int(n_features) + 33 * int(n_outputs) + 12


def row_budget(max_memory: int, n_features: int, n_outputs: int) -> int:
    """floor(max_memory / bytes_per_row(N, M)): the most rows of the layer the budget holds."""
    return int(max_memory) // bytes_per_row(n_features, n_outputs)


def check_budget(name: str, max_memory: int, n_features: int, n_outputs: int, total: int) -> int:
    """The rows to keep, min(total, row_budget); a one-line error when the budget holds fewer
    than min(total, MIN_ROWS) rows."""
    rows = row_budget(max_memory, n_features, n_outputs)
    need = min(int(total), MIN_ROWS)
    if rows < need:
        per_row = bytes_per_row(n_features, n_outputs)
        raise NettrimError(f"max_memory={max_memory} bytes holds {rows} rows of layer '{name}' "
                           f"({per_row} bytes a row), fewer than the {need} it needs: raise "
                           f"max_memory to at least {_mib(need * per_row)}")
    return min(int(total), rows)


def _mib(n: int) -> str:
    return f"{math.ceil(n / 2 ** 20)}MiB"


def sample_rows(total: int, keep: int, seed: int) -> torch.Tensor | None:
    """Sorted indices of ``keep`` of ``total`` rows, uniform without replacement (a seeded
    permutation); None when every row is kept."""
    if keep >= total:
        return None
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(int(total), generator=gen)[:int(keep)].sort().values


def check_layers(model: torch.nn.Module, names: list[str], inputs: torch.Tensor, max_memory: int) -> None:
    """Every named layer's budget checked before any work (``check_budget``): its rows are
    P times its rows per sample, read from one forward pass on one sample."""
    from .dataflow import plain_forward

    shapes: dict[str, tuple[int, int, int]] = {}

    def hook(name):
        def record(mod, args, out):
            per_sample = out.shape[2] * out.shape[3] if out.ndim == 4 else out.numel() // out.shape[-1]
            shapes.setdefault(name, (mod.weight[0].numel(), mod.weight.shape[0], per_sample))
        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), plain_forward():
            model(inputs[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for name in names:
        if name in shapes:
            n, m, per_sample = shapes[name]
            check_budget(name, max_memory, n, m, per_sample * int(inputs.shape[0]))
