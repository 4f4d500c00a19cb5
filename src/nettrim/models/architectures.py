"""Reference architectures: plain ``nn.Sequential`` stacks of standard torch modules.

Every builder takes keyword arguments only, so a model is fully described by its registry
name plus a small dict of plain values (what a checkpoint stores).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import NettrimError, require

MNIST_SHAPE = (1, 28, 28)
CIFAR_SHAPE = (3, 32, 32)


def _check_shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in in_shape)
    require(len(shape) == 3 and all(s > 0 for s in shape),
            f"in_shape must be (C, H, W) with positive sizes, got {tuple(in_shape)}")
    return shape  # type: ignore[return-value]


def _dense_stack(sizes: Sequence[int], dropout: float) -> list[nn.Module]:
    """Linear/ReLU(/Dropout) layers through ``sizes``; no activation after the last Linear."""
    require(0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return layers


def mlp(hidden: Sequence[int], *, in_shape: Sequence[int] = MNIST_SHAPE,
        in_features: int | None = None, n_classes: int = 10, dropout: float = 0.0) -> nn.Sequential:
    """Flatten, then fully connected ReLU layers of widths ``hidden``, then ``n_classes`` logits.

    ``in_features`` overrides ``prod(in_shape)`` (e.g. for PCA-projected inputs).
    """
    n_in = int(in_features) if in_features is not None else math.prod(_check_shape(in_shape))
    require(n_in > 0 and n_classes > 0, "in_features and n_classes must be positive")
    return nn.Sequential(nn.Flatten(), *_dense_stack([n_in, *hidden, n_classes], dropout))


def _flat_size(features: nn.Sequential, in_shape: tuple[int, int, int]) -> int:
    """Number of features the convolutional part produces for one input of ``in_shape``."""
    with torch.no_grad():
        out = features.eval()(torch.zeros(1, *in_shape))
    features.train()
    require(out.numel() > 0, f"input shape {in_shape} is too small for this architecture")
    return out.numel()


def _with_head(features: list[nn.Module], in_shape: tuple[int, int, int],
               sizes: Sequence[int], dropout: float) -> nn.Sequential:
    conv = nn.Sequential(*features, nn.Flatten())
    try:
        n_flat = _flat_size(conv, in_shape)
    except RuntimeError as exc:
        raise NettrimError(f"input shape {in_shape} does not fit this architecture") from exc
    return nn.Sequential(*conv, *_dense_stack([n_flat, *sizes], dropout))


def lenet5(*, in_shape: Sequence[int] = MNIST_SHAPE, n_classes: int = 10) -> nn.Sequential:
    """LeNet-5 (6 and 16 channels, 120-84 dense head) for 28x28 inputs."""
    c, _, _ = shape = _check_shape(in_shape)
    feats = [nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)]
    return _with_head(feats, shape, [120, 84, n_classes], 0.0)


def lenet_demo(*, in_shape: Sequence[int] = MNIST_SHAPE, n_classes: int = 10,
               dropout: float = 0.5) -> nn.Sequential:
    """The TensorFlow-tutorial LeNet: 32 and 64 channels, a 512-unit dense layer, dropout."""
    c, _, _ = shape = _check_shape(in_shape)
    feats = [nn.Conv2d(c, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
    return _with_head(feats, shape, [512, n_classes], dropout)


def cifar_cnn(*, in_shape: Sequence[int] = CIFAR_SHAPE, n_classes: int = 10,
              width: int = 32, dropout: float = 0.0) -> nn.Sequential:
    """Three conv blocks (width, 2*width, 4*width channels), each Conv-BN-ReLU-Conv-ReLU-MaxPool,
    then a 256-unit dense layer."""
    c, _, _ = shape = _check_shape(in_shape)
    require(width > 0, f"width must be positive, got {width}")
    feats: list[nn.Module] = []
    for w in (width, 2 * width, 4 * width):
        feats += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                  nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c = w
    return _with_head(feats, shape, [256, n_classes], dropout)


def _mlp_builder(*hidden: int) -> Callable[..., nn.Module]:
    def build(**kw) -> nn.Module:
        return mlp(hidden, **kw)
    build.__doc__ = f"MLP with hidden widths {list(hidden)}; keywords as :func:`mlp`."
    return build


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "lenet-300-100": _mlp_builder(300, 100),
    "mlp-100-100": _mlp_builder(100, 100),
    "mlp-60-60": _mlp_builder(60, 60),
    "mlp-300-300-300": _mlp_builder(300, 300, 300),
    "mlp-deep": _mlp_builder(256, 256, 256, 256, 256),
    "lenet5": lenet5,
    "lenet-demo": lenet_demo,
    "cifar-cnn": cifar_cnn,
}


def build_model(name: str, **kw) -> nn.Module:
    """Build the registered architecture ``name`` with keyword arguments ``kw``."""
    require(name in ARCHITECTURES,
            f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[name](**kw)
    except TypeError as exc:
        raise NettrimError(f"bad arguments for architecture {name!r}: {exc}") from exc
