"""Small helpers shared by the experiments: atomic writes and seeded random generators."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _jsonable(obj: Any) -> Any:
    """Plain-Python copy of ``obj`` (numpy scalars/arrays, tuples, Paths); NaN/Inf become None."""
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_in(path: Path) -> Path:
    """An empty temporary file next to ``path`` with ordinary permissions (mkstemp gives 0600)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically (temporary file in the same folder,
    then ``os.replace``), so a reader never sees a half-written file. NaN/Inf are written as null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_in(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_jsonable(obj), f, indent=indent, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_figure_atomic(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """``fig.savefig(path)`` atomically: the format comes from ``path``'s suffix (default png)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = savefig_kwargs.pop("format", None) or (path.suffix.lstrip(".") or "png")
    tmp = _tmp_in(path)
    try:
        fig.savefig(tmp, format=fmt, **savefig_kwargs)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def seeded_generator(seed: int | Sequence[int]) -> np.random.Generator:
    """A numpy Generator from an int or a sequence of ints, e.g. ``(seed, N, s, trial)``: the
    same key always gives the same stream, whatever the order or process it is drawn in."""
    return np.random.default_rng(seed if isinstance(seed, int) else [int(v) for v in seed])
