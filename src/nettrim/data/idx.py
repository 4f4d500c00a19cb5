"""Strict reader for IDX files (the MNIST / Fashion-MNIST format), raw or gzipped."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import NettrimError
from .registry import one_line

# Standard stems; each may also appear with '.' before 'idx' and/or a '.gz' suffix.
IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file is gzip (by magic bytes, not by name)."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as exc:
        raise NettrimError(f"cannot read IDX file {path}: {one_line(exc)}") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (magic 0x00 0x00 0x08 nd) into a uint8 array of its dims.

    Checks the magic number, the dimension header and that the payload length matches exactly.
    """
    path = Path(path)
    data = _read_bytes(path)
    bad = f"malformed IDX file {path}"
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise NettrimError(f"{bad}: bad magic number {data[:4].hex() or '(empty)'}, "
                           "expected 000008nn (unsigned bytes); re-download the dataset")
    nd = data[3]
    header = 4 + 4 * nd
    if nd == 0 or len(data) < header:
        raise NettrimError(f"{bad}: header truncated or declares {nd} dims; re-download the dataset")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=nd, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise NettrimError(f"{bad}: dims {dims} need {expected} payload bytes, found "
                           f"{len(data) - header}; re-download the dataset")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def find_idx_file(root: Path, stem: str) -> Path | None:
    """The first existing file in ``root`` matching ``stem`` (optionally '.gz' / dotted), or None."""
    for name in _candidates(stem):
        if (root / name).is_file():
            return root / name
    return None


def read_idx_split(root: Path, split: str, title: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 28, 28), labels (n,)) uint8 for ``split`` from the IDX files in ``root``."""
    img_stem, lbl_stem = IDX_STEMS[split]
    paths = [find_idx_file(root, img_stem), find_idx_file(root, lbl_stem)]
    if None in paths:
        raise NettrimError(f"{title} not found in {root}: expected {img_stem}[.gz] and "
                           f"{lbl_stem}[.gz]; {hint}")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise NettrimError(f"malformed {title} IDX files in {root}: images {images.shape} and labels "
                           f"{labels.shape} do not match (n, H, W) and (n,); re-download the dataset")
    return images, labels
