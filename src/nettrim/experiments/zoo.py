"""The trained networks the experiments need: trained once, cached on disk, reloaded after.

A model is fully described by its key: architecture, dataset, epochs, seed, input features,
the training subset size, the recipe (dropout, learning rate, weight decay, batch size) and
the input representation (pixels, or the coordinates on the first k principal components of
the training images). The checkpoint file name carries a hash of the key and the checkpoint's
``meta`` stores the key itself, so a stale or foreign file is never reused: it is retrained.

Cache folder: ``$NETTRIM_CACHE`` when set, else ``runs/cache`` (relative to the working
directory), or the ``cache_dir`` argument.

PCA (for the dimensionality experiment): the basis is fitted on the (normalized) TRAINING
images only (``pca_fit_samples`` of them, chosen by seed), centred on their mean; the test
images are projected with the same mean and basis. ``pca_mode="coords"`` feeds the k
coordinates (``in_features = k``); ``"reconstruct"`` feeds the 784-pixel reconstruction
(the images restricted to a k-dimensional affine subspace, same network shape).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data import load_dataset, subset, validation_split
from ..data.registry import dataset_info
from ..errors import NettrimError, require
from ..models import build_model, evaluate, load_checkpoint, save_checkpoint, train

CACHE_ENV = "NETTRIM_CACHE"
DEFAULT_CACHE = Path("runs/cache")
PCA_MODES = ("coords", "reconstruct")


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``override``, else ``$NETTRIM_CACHE``, else ``runs/cache``."""
    if override is not None:
        return Path(override)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else DEFAULT_CACHE


@dataclass(frozen=True)
class Data:
    """Network inputs (already transformed) and labels of both splits."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# data, optionally PCA-projected


def pca_basis(dataset: str, k: int, *, fit_samples: int | None = 20000, seed: int = 0,
              cache: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), basis (D, k)) of the normalized training images, cached.

    Fitted on ``fit_samples`` training images drawn with ``seed`` (None: all of them); the
    basis columns are the leading eigenvectors of the centred data's scatter matrix (float64),
    ordered by decreasing variance, with a deterministic sign (largest entry positive)."""
    x, y = load_dataset(dataset, "train")
    D = x[0].numel()
    require(1 <= k <= D, f"k must lie in [1, {D}], got {k}")
    key = dict(kind="pca", dataset=dataset, fit_samples=fit_samples, seed=seed)
    path = cache_dir(cache) / f"pca-{dataset}-{_digest(key)}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == key:
                return saved["mean"], saved["basis"][:, :k].contiguous()
        except Exception:  # unreadable cache file: recompute
            pass
    xs, _ = subset(x, y, None if fit_samples is None else min(fit_samples, len(x)), seed=seed)
    flat = xs.reshape(len(xs), -1).double()
    mean = flat.mean(0)
    centred = flat - mean
    evals, evecs = torch.linalg.eigh(centred.T @ centred)  # ascending
    basis = evecs.flip(1)  # (D, D), decreasing variance
    idx = basis.abs().argmax(0)
    basis = basis * torch.sign(basis[idx, torch.arange(basis.shape[1])])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"key": key, "mean": mean.float(), "basis": basis.float()}, tmp)
    os.replace(tmp, path)
    return mean.float(), basis[:, :k].float().contiguous()


def project(x: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor, mode: str = "coords"
            ) -> torch.Tensor:
    """Images (n, ...) -> PCA coordinates (n, k) or their reconstruction (n, ...)."""
    require(mode in PCA_MODES, f"pca_mode must be one of {PCA_MODES}, got {mode!r}")
    coords = (x.reshape(len(x), -1) - mean) @ basis
    if mode == "coords":
        return coords.contiguous()
    return (coords @ basis.T + mean).reshape(x.shape).contiguous()


def load_data(dataset: str, *, pca_k: int | None = None, pca_mode: str = "coords",
              pca_fit_samples: int | None = 20000, seed: int = 0,
              cache: str | os.PathLike | None = None) -> Data:
    """Both splits of ``dataset`` as network inputs: pixels, or projected on ``pca_k``
    principal components (fitted on training images only)."""
    x, y = load_dataset(dataset, "train")
    xt, yt = load_dataset(dataset, "test")
    if pca_k is not None:
        mean, basis = pca_basis(dataset, pca_k, fit_samples=pca_fit_samples, seed=seed, cache=cache)
        x, xt = project(x, mean, basis, pca_mode), project(xt, mean, basis, pca_mode)
    return Data(x, y, xt, yt)


# --------------------------------------------------------------------------------------------
# models


@dataclass(frozen=True)
class ModelKey:
    """Everything that determines a trained model."""

    arch: str
    dataset: str
    epochs: int
    seed: int
    in_features: int | None = None
    train_samples: int | None = None
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    schedule: str = "cosine"
    pca_k: int | None = None
    pca_mode: str = "coords"
    pca_fit_samples: int | None = 20000
    validation: int | None = None

    def file_name(self) -> str:
        tag = f"-pca{self.pca_k}{self.pca_mode[0]}" if self.pca_k is not None else ""
        n = "all" if self.train_samples is None else str(self.train_samples)
        return (f"{self.arch}-{self.dataset}{tag}-n{n}-e{self.epochs}-s{self.seed}-"
                f"{_digest(asdict(self))}.pt")


def get_model(arch: str, dataset: str, epochs: int, seed: int, in_features: int | None = None, *,
              train_samples: int | None = None, dropout: float = 0.2, lr: float = 1e-3,
              weight_decay: float = 0.0, batch_size: int = 128, schedule: str = "cosine",
              pca_k: int | None = None, pca_mode: str = "coords",
              pca_fit_samples: int | None = 20000, validation: int | None = None,
              cache: str | os.PathLike | None = None,
              progress: bool = True, log=None) -> tuple[torch.nn.Module, dict]:
    """Load the model with this key from the cache, or train it there (Adam, cross-entropy).

    Args:
        arch: a registered architecture (``nettrim.models.ARCHITECTURES``).
        dataset: "mnist" or "fashion-mnist" (anything ``load_dataset`` reads).
        epochs, seed: training length and seed (data subset, initialization, batches).
        in_features: the network's input size; default 784 for pixels (and for
            ``pca_mode="reconstruct"``), k for ``pca_mode="coords"``.
        train_samples: train on a stratified subset of this size (None: the whole split).
        dropout, lr, weight_decay, batch_size, schedule: the recipe.
        pca_k, pca_mode, pca_fit_samples: train on PCA-projected inputs (see :func:`load_data`).
        validation: hold out this many training images (``validation_split``, seed 0: the same
            split for every model seed) and train on the rest.
        cache: cache folder (default :func:`cache_dir`).
    Returns:
        (model in eval mode, info) with info = {"key", "path", "test_accuracy",
        "train_seconds", "cached"}.
    """
    require(pca_mode in PCA_MODES, f"pca_mode must be one of {PCA_MODES}, got {pca_mode!r}")
    if pca_k is not None and pca_mode == "coords":
        require(in_features in (None, pca_k),
                f"in_features ({in_features}) must equal pca_k ({pca_k}) for PCA coordinates")
        in_features = pca_k
    key = ModelKey(arch, dataset, int(epochs), int(seed), in_features, train_samples,
                   float(dropout), float(lr), float(weight_decay), int(batch_size), schedule,
                   pca_k, pca_mode, pca_fit_samples if pca_k is not None else None, validation)
    path = cache_dir(cache) / key.file_name()
    if path.exists():
        try:
            model, info = load_checkpoint(path)
            if info["meta"].get("key") == asdict(key):
                return model, dict(key=asdict(key), path=str(path), cached=True,
                                   test_accuracy=info["meta"]["test_accuracy"],
                                   train_seconds=info["meta"]["train_seconds"])
        except NettrimError:
            pass  # unreadable or foreign: train again
    data = load_data(dataset, pca_k=pca_k, pca_mode=pca_mode, pca_fit_samples=key.pca_fit_samples,
                     seed=0, cache=cache)
    x, y = data.x_train, data.y_train
    if validation is not None:
        keep, _ = validation_split(len(x), validation)
        x, y = x[keep], y[keep]
    if train_samples is not None:
        x, y = subset(x, y, min(train_samples, len(x)), seed=seed)
    info_ds = dataset_info(dataset)
    kwargs: dict = {"n_classes": info_ds.n_classes}
    if in_features is not None:
        kwargs["in_features"] = int(in_features)
    if dropout:
        kwargs["dropout"] = float(dropout)
    torch.manual_seed(seed)
    model = build_model(arch, **kwargs)
    if log is not None:
        log(f"training {path.name} on {len(x)} samples")
    t0 = time.perf_counter()
    train(model, x, y, epochs=int(epochs), lr=lr, weight_decay=weight_decay, batch_size=batch_size,
          schedule=schedule, seed=seed, progress=progress)
    seconds = time.perf_counter() - t0
    acc = evaluate(model, data.x_test, data.y_test)
    meta = dict(key=asdict(key), test_accuracy=acc, train_seconds=seconds)
    save_checkpoint(path, model, arch, kwargs, meta)
    return model.eval(), dict(key=asdict(key), path=str(path), cached=False, test_accuracy=acc,
                              train_seconds=seconds)


def resolve_preset(preset, presets: dict):
    """``presets[preset]`` for a name, or ``preset`` itself when it is already a preset object
    (tests pass smaller ones); unknown names raise ValueError."""
    if isinstance(preset, str):
        if preset not in presets:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
        return presets[preset]
    return preset


def describe(info: dict) -> dict:
    """A JSON-ready summary of a :func:`get_model` info dict (for experiment payloads)."""
    return dict(info["key"], test_accuracy=info["test_accuracy"],
                train_seconds=info["train_seconds"], cached=info["cached"],
                file=Path(info["path"]).name)


__all__ = ["CACHE_ENV", "Data", "ModelKey", "cache_dir", "describe", "get_model", "load_data",
           "pca_basis", "project", "resolve_preset"]
