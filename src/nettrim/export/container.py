"""Safetensors files with nettrim metadata and a sha256 of their content.

Every file nettrim writes carries, in the safetensors ``__metadata__`` (all strings):
``format`` (``nettrim-sparse/1`` or ``nettrim-dense/1``), ``arch`` and ``arch_kwargs`` (JSON)
when nettrim builds the model, ``tied`` (JSON, alias -> source) when it has shared tensors,
format-specific entries, and ``sha256``: the hex digest of the other metadata entries (JSON,
sorted keys) followed by, for each tensor in name order, its name, dtype and shape (JSON) and
its raw bytes. Reading recomputes the digest, so a truncated or altered file is refused.
Reading never unpickles: the file is parsed by ``safetensors`` from bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import NettrimError, require
from . import files

FORMATS = ("nettrim-sparse/1", "nettrim-dense/1")
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool)}


def dtype_name(dtype: torch.dtype) -> str:
    """``"float32"`` for ``torch.float32``; one-line error for a dtype files cannot hold."""
    name = str(dtype).removeprefix("torch.")
    require(name in DTYPES, f"cannot export a tensor of dtype {name}; "
                            f"supported: {', '.join(DTYPES)}")
    return name


def raw_bytes(t: torch.Tensor) -> memoryview:
    """The bytes of ``t`` in memory order (any dtype, any shape, zero-size included)."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def digest(meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the metadata (without ``sha256``) and of every tensor, in name order."""
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "sha256"},
                                  sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(raw_bytes(t))
    return h.hexdigest()


def write(path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    """Atomically write ``tensors`` with ``meta`` plus its ``sha256`` (through
    :func:`nettrim.export.files.replace`; check ``path`` first); returns the path."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = dict(meta, sha256=digest(meta, tensors))
    return files.replace(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))


def _not_safetensors(data: bytes, path: Path, why: str) -> NettrimError:
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        return NettrimError(f"{path} is a torch.save file, not a safetensors export; "
                            "load checkpoints with nettrim.models.load_checkpoint")
    return NettrimError(f"{path} is not a safetensors file ({why}); nettrim.load reads files "
                        "written by nettrim.export with format 'sparse' or 'dense'")


def _metadata(data: bytes, path: Path) -> dict:
    """The ``__metadata__`` of a safetensors image (8-byte length, JSON header, data)."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < size <= len(data) - 8 or data[8:9] != b"{":
        raise _not_safetensors(data, path, "no valid header")
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, ValueError):
        raise _not_safetensors(data, path, "its header is not JSON") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def read(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a nettrim safetensors file, its sha256 checked.

    One-line :class:`NettrimError` for a missing file, a file that is not safetensors, a
    safetensors file nettrim did not write, and a damaged (truncated or altered) file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    require(not os.path.isdir(path), f"{path} is a directory, not a file written by nettrim.export")
    require(os.path.isfile(path), f"file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NettrimError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    meta = _metadata(data, path)
    try:
        tensors = load(data)
    except SafetensorError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NettrimError(f"{path} is damaged (truncated or altered): {reason}; "
                           "export the model again") from None
    require(meta.get("format") in FORMATS,
            f"{path} is a safetensors file without nettrim metadata (format "
            f"{meta.get('format')!r}); nettrim.load reads files written by nettrim.export")
    require(meta.get("sha256") == digest(meta, tensors),
            f"{path} is damaged (truncated or altered): its content does not match the stored "
            "sha256; export the model again")
    return tensors, meta
