"""Known datasets: shapes, class counts and the fixed normalization constants."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import NettrimError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset; ``mean``/``std`` are per channel, on the [0, 1] scale."""

    name: str
    shape: tuple[int, int, int]
    n_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,)),
    "fashion-mnist": DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,)),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10,
                           (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "svhn": DatasetInfo("svhn", (3, 32, 32), 10,
                        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}

TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "svhn": "SVHN"}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` for ``name``; unknown names raise :class:`NettrimError`."""
    if name not in DATASETS:
        raise NettrimError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def check_split(split: str) -> str:
    """Return ``split`` if it is 'train' or 'test', else raise :class:`NettrimError`."""
    if split not in SPLITS:
        raise NettrimError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    return split


def one_line(exc: BaseException) -> str:
    """An exception as a single line: its type and message with whitespace collapsed."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
