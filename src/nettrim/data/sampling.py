"""Reproducible subsets and DataLoaders over in-memory tensors."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from ..errors import NettrimError, require


def subset(images: torch.Tensor, labels: torch.Tensor, n: int | None, seed: int = 0,
           stratified: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples chosen reproducibly from ``seed``; ``n=None`` keeps everything.

    Stratified (default): classes are drawn round-robin in random order, so each class gets
    ``n // k`` or one more (fewer only if it runs out). Otherwise a plain random sample.
    The result is in random order.
    """
    total = labels.shape[0]
    require(images.shape[0] == total, f"subset: {images.shape[0]} images but {total} labels")
    if n is None:
        return images, labels
    if not 1 <= n <= total:
        raise NettrimError(f"subset size {n} is out of range: choose 1..{total}")
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    if stratified:
        perm = perm[_round_robin(labels[perm].long())]
    idx = perm[:n]
    return images[idx], labels[idx]


def validation_split(n_total: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): ``size`` of ``range(n_total)`` held out at random
    with ``seed``, the rest kept for training and calibration, both sorted. Every choice among
    settings is made on the validation part; the test split is only ever reported."""
    require(isinstance(size, int) and 1 <= size < n_total,
            f"validation size must lie in 1..{n_total - 1} (the training split has {n_total} "
            f"samples), got {size}")
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    return perm[size:].sort().values, perm[:size].sort().values


def _round_robin(lab: torch.Tensor) -> torch.Tensor:
    """Order positions by (rank within own class, position): one of each class per round."""
    require(bool((lab >= 0).all()), "subset: labels must be non-negative for stratified sampling")
    order = torch.sort(lab, stable=True).indices
    starts = torch.cumsum(torch.bincount(lab), 0) - torch.bincount(lab)
    rank = torch.empty_like(lab)
    rank[order] = torch.arange(len(lab)) - starts[lab[order]]
    return torch.sort(rank * len(lab) + torch.arange(len(lab))).indices


def make_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A single-process DataLoader over ``TensorDataset(images, labels)``; shuffling is seeded."""
    require(batch_size >= 1, f"batch size must be at least 1, got {batch_size}")
    require(images.shape[0] == labels.shape[0],
            f"make_loader: {images.shape[0]} images but {labels.shape[0]} labels")
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=shuffle,
                      generator=gen)
