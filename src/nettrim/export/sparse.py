"""The sparse layout of a state dict: per tensor, plain or non-zero values plus a Rice code.

A tensor is stored one of two ways, whichever is smaller:

* ``plain``: the tensor itself, under its state-dict name;
* ``rice``: ``NAME/values``, the entries that are not equal to zero (NaN included), in their
  own dtype and memory order, and ``NAME/positions``, a uint8 Golomb-Rice code of their flat
  positions (see :mod:`nettrim.export.codec`).

The layout (metadata entry ``layout``, JSON) maps each state-dict name, in order, to
``{"coding", "dtype", "shape"}`` plus ``"k"`` and ``"nnz"`` for ``rice``. Decoding puts the
values into a zero tensor: every entry comes back with the same bits, except that in a
``rice`` tensor a negative zero (solvers leave many in place of removed weights) comes back
as +0.0, the value it equals (``torch.equal`` holds; keeping the sign would cost about one bit
per removed weight).
"""
from __future__ import annotations

import math

import torch

from ..errors import NettrimError, require
from . import codec
from .container import DTYPES, dtype_name

ENTRY_BYTES = 96  # what one more safetensors entry costs in the header, about


def nonzero_mask(flat: torch.Tensor) -> torch.Tensor:
    """Entries of the 1-D ``flat`` that are not equal to zero (NaN is not)."""
    return flat != 0


def pack_tensor(name: str, t: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict]:
    """The safetensors entries and the layout record of one tensor (smaller coding wins)."""
    t = t.detach().cpu().contiguous()
    spec = {"dtype": dtype_name(t.dtype), "shape": list(t.shape)}
    flat = t.reshape(-1)
    mask = nonzero_mask(flat)
    positions = mask.nonzero().squeeze(1).numpy()
    gaps = codec.gaps_of(positions)
    k = codec.best_k(gaps)
    sparse_bytes = positions.size * t.element_size() + codec.code_bytes(gaps, k) + ENTRY_BYTES
    if sparse_bytes >= flat.numel() * t.element_size():
        return {name: t.clone()}, dict(spec, coding="plain")
    code, k = codec.encode(positions)
    entries = {f"{name}/values": flat[mask].clone(), f"{name}/positions": torch.from_numpy(code)}
    return entries, dict(spec, coding="rice", k=k, nnz=int(positions.size))


def pack(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """``(tensors, layout)`` for a whole state dict."""
    tensors, layout = {}, {}
    for name, t in state.items():
        entries, layout[name] = pack_tensor(name, t)
        tensors.update(entries)
    return tensors, layout


def unpack_tensor(name: str, spec: dict, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rebuild one state-dict tensor from its layout record and the file's tensors."""
    dtype, shape = DTYPES[spec["dtype"]], torch.Size(int(s) for s in spec["shape"])
    if spec["coding"] == "plain":
        t = tensors[name]
    elif spec["coding"] == "rice":
        values, code = tensors[f"{name}/values"], tensors[f"{name}/positions"]
        nnz = int(spec["nnz"])
        if values.dtype != dtype or values.shape != (nnz,) or code.dtype != torch.uint8:
            raise ValueError(f"{name}: values or positions do not fit the layout")
        positions = codec.decode(code.numpy(), int(spec["k"]), nnz)
        t = torch.zeros(shape.numel(), dtype=dtype)
        t[torch.from_numpy(positions)] = values
    else:
        raise ValueError(f"{name}: unknown coding {spec['coding']!r}")
    if t.dtype != dtype or t.numel() != shape.numel():
        raise ValueError(f"{name}: stored {t.dtype} {list(t.shape)}, layout says {dtype} {list(shape)}")
    return t.reshape(shape)


def _spec(name: str, spec) -> "Spec":
    from .state import Spec

    require(isinstance(spec, dict) and spec.get("coding") in ("plain", "rice"),
            f"entry {name!r} has no known coding")
    require(spec.get("dtype") in DTYPES, f"entry {name!r} has dtype {spec.get('dtype')!r}")
    shape = spec.get("shape")
    require(isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)
            and math.prod(shape) < 2 ** 62, f"entry {name!r} has shape {shape!r}")
    if spec["coding"] == "rice":
        nnz, k = spec.get("nnz"), spec.get("k")
        require(type(nnz) is int and 0 <= nnz <= math.prod(shape) and type(k) is int and 0 <= k <= 62,
                f"entry {name!r} has nnz {nnz!r} and k {k!r}")
    return Spec(DTYPES[spec["dtype"]], tuple(shape))


def specs(layout: dict, where) -> dict:
    """``{name: Spec}`` that a layout describes, every record checked, nothing decoded."""
    try:
        return {name: _spec(name, spec) for name, spec in layout.items()}
    except NettrimError as exc:
        raise NettrimError(f"{where} has a malformed sparse layout ({exc}); export the model again") from None


def unpack(tensors: dict[str, torch.Tensor], layout: dict[str, dict], where) -> dict:
    """The state dict a sparse file holds; one-line error naming ``where`` if malformed."""
    try:
        return {name: unpack_tensor(name, spec, tensors) for name, spec in layout.items()}
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise NettrimError(f"{where} has a malformed sparse layout ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); export the model again") from None
