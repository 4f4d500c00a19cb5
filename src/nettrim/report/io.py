"""Atomic writes: a reader never sees a half-written report, figure or model file.

Everything is written to a temporary file in the destination folder, flushed, then moved
into place with ``os.replace``; on any error the temporary file is removed and an existing
file at the destination is left as it was.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import require


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, fsync, then move the file to ``path``."""
    path = Path(path)
    require(not path.is_dir(), f"cannot write to {path}: it is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(obj: Any) -> Any:
    """Plain-Python copy of ``obj`` (numpy scalars/arrays, tuples, sets, Paths, dataclasses such
    as ADMMSettings, torch dtypes); NaN/Inf become None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, (set, frozenset)):
        return sorted(_jsonable(v) for v in obj)
    if isinstance(obj, torch.dtype):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Strict JSON (NaN/Inf written as null), atomically."""
    text = json.dumps(_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_figure_atomic(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """``fig.savefig(path)`` atomically; the format comes from the suffix (default png)."""
    fmt = savefig_kwargs.pop("format", None) or (Path(path).suffix.lstrip(".") or "png")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_kwargs))


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
