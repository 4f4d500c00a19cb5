"""Training, masked fine-tuning, evaluation and non-zero counting for ``nn.Module`` classifiers.

Inputs may be torch tensors or numpy arrays; ``uint8`` images are scaled to [0, 1] batch by
batch, any other dtype is cast to float32 as is. Labels are integer class indices.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import require

PRUNABLE = (nn.Linear, nn.Conv2d)


@dataclass
class TrainLog:
    """Per-epoch mean training loss, training accuracy (percent) and wall-clock seconds."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def _inputs(batch: torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Move a batch to ``device`` in the model's floating dtype (uint8 scaled by 1/255)."""
    batch = batch.to(device, non_blocking=True)
    return batch.to(dtype).div_(255.0) if batch.dtype == torch.uint8 else batch.to(dtype)


def _float_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter (float32 when it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _data(images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _tensor(images), _tensor(labels)
    require(x.ndim >= 2 and len(x) > 0, f"images must be a non-empty batch, got shape {tuple(x.shape)}")
    require(y.ndim == 1 and len(y) == len(x),
            f"labels must be 1-D with one per image: {len(x)} images, labels of shape {tuple(y.shape)}")
    require(not y.is_floating_point() and not y.is_complex(), "labels must be integer class indices")
    return x, y.long()


def _device(model: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every Linear and Conv2d layer, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]


def masks_from_model(model: nn.Module) -> dict[str, torch.Tensor]:
    """Bool masks ``param != 0`` for the weights and biases of every Linear/Conv2d layer,
    keyed by parameter name (as in ``model.named_parameters()``)."""
    masks = {}
    for name, m in prunable_layers(model):
        for pname, p in m.named_parameters(recurse=False):
            masks[f"{name}.{pname}" if name else pname] = p.detach() != 0
    return masks


def _masked_params(model: nn.Module, masks: dict[str, torch.Tensor] | None,
                   device: torch.device) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """Pair each masked parameter with its inverted (True = pruned) mask on ``device``."""
    if not masks:
        return []
    params = dict(model.named_parameters())
    pairs = []
    for name, mask in masks.items():
        require(name in params, f"mask for {name!r} matches no parameter of the model")
        require(tuple(mask.shape) == tuple(params[name].shape),
                f"mask for {name!r} has shape {tuple(mask.shape)}, parameter has {tuple(params[name].shape)}")
        pairs.append((params[name], ~_tensor(mask).to(device=device, dtype=torch.bool)))
    return pairs


def _zero_pruned(pairs, grads: bool) -> None:
    with torch.no_grad():
        for p, pruned in pairs:
            t = p.grad if grads else p
            if t is not None:
                t.masked_fill_(pruned, 0.0)


def _optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float):
    require(lr > 0, f"lr must be positive, got {lr}")
    require(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}")
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    require(name == "sgd", f"optimizer must be 'adam' or 'sgd', got {name!r}")
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def train(model: nn.Module, images, labels, *, epochs: int, batch_size: int = 128,
          lr: float = 1e-3, weight_decay: float = 0.0, optimizer: str = "adam",
          momentum: float = 0.9, seed: int = 0, progress: bool = True,
          masks: dict[str, torch.Tensor] | None = None, device=None,
          schedule: str = "constant") -> TrainLog:
    """Train ``model`` in place with cross-entropy; reproducible from ``seed``.

    ``schedule``: "constant" learning rate, or "cosine" annealing to zero over the epochs.

    ``masks`` (name -> bool, True = keep) pins the other entries at exactly zero: they are
    zeroed once before training, their gradients before every step, and the entries after it.
    ``momentum`` applies to SGD only. The model ends on ``device`` (default: where it is),
    in the train/eval mode it started in.
    """
    require(int(epochs) == epochs and epochs >= 0, f"epochs must be an integer >= 0, got {epochs}")
    require(int(batch_size) == batch_size and batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
    x, y = _data(images, labels)
    dev = _device(model, device)
    model.to(dev)
    pairs = _masked_params(model, masks, dev)
    opt = _optimizer(model, optimizer, lr, weight_decay, momentum)
    require(schedule in ("constant", "cosine"), f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(int(epochs), 1)) \
        if schedule == "cosine" else None
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    was_training, log = model.training, TrainLog()
    model.train()
    _zero_pruned(pairs, grads=False)
    try:
        for epoch in range(int(epochs)):
            _train_epoch(model, x, y, opt, pairs, gen, int(batch_size), dev, log,
                         tqdm(total=len(x), desc=f"epoch {epoch + 1}/{epochs}", unit="img",
                              disable=not progress, leave=False))
            if sched is not None:
                sched.step()
    finally:
        model.train(was_training)
    return log


def _train_epoch(model, x, y, opt, pairs, gen, batch_size, dev, log: TrainLog, bar) -> None:
    start, total_loss, correct = time.perf_counter(), torch.zeros((), device=dev), torch.zeros((), device=dev)
    order = torch.randperm(len(x), generator=gen)
    with bar:
        for idx in order.split(batch_size):
            xb, yb = _inputs(x[idx], dev, _float_dtype(model)), y[idx].to(dev, non_blocking=True)
            out = model(xb)
            loss = nn.functional.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            _zero_pruned(pairs, grads=True)
            opt.step()
            _zero_pruned(pairs, grads=False)
            total_loss += loss.detach() * len(idx)
            correct += (out.argmax(1) == yb).sum()
            bar.update(len(idx))
        log.loss.append(total_loss.item() / len(x))
        log.accuracy.append(100.0 * correct.item() / len(x))
        log.seconds.append(time.perf_counter() - start)
        bar.set_postfix(loss=f"{log.loss[-1]:.4f}", acc=f"{log.accuracy[-1]:.2f}%")


def finetune(model: nn.Module, images, labels, *, epochs: int = 1,
             masks: dict[str, torch.Tensor] | None = None, lr: float = 1e-4,
             batch_size: int = 128, weight_decay: float = 0.0, optimizer: str = "adam",
             momentum: float = 0.9, seed: int = 0, progress: bool = True, device=None,
             schedule: str = "constant") -> TrainLog:
    """Fine-tune a pruned model keeping its zeros: :func:`train` with ``masks`` defaulting to
    :func:`masks_from_model` (every zero weight/bias of a Linear/Conv2d layer stays zero).
    ``schedule`` as in :func:`train` ("cosine" anneals to zero: for longer retraining)."""
    masks = masks_from_model(model) if masks is None else masks
    return train(model, images, labels, epochs=epochs, batch_size=batch_size, lr=lr,
                 weight_decay=weight_decay, optimizer=optimizer, momentum=momentum, seed=seed,
                 progress=progress, masks=masks, device=device, schedule=schedule)


@torch.no_grad()
def predict(model: nn.Module, images, batch_size: int = 1000, device=None) -> torch.Tensor:
    """Logits for ``images`` (eval mode, no grad; the previous mode is restored), on CPU."""
    require(int(batch_size) == batch_size and batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
    x, dev, was_training = _tensor(images), _device(model, device), model.training
    require(len(x) > 0, "images must be a non-empty batch")
    model.eval()
    try:
        dtype = _float_dtype(model)
        return torch.cat([model(_inputs(xb, dev, dtype)).cpu() for xb in x.split(int(batch_size))])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, images, labels, batch_size: int = 1000, device=None) -> float:
    """Top-1 accuracy in percent (eval mode, no grad; the previous mode is restored)."""
    x, y = _data(images, labels)
    return 100.0 * (predict(model, x, batch_size, device).argmax(1) == y).float().mean().item()


def count_nonzero(model: nn.Module) -> dict:
    """Non-zeros of the weights and biases of every Linear/Conv2d layer.

    Returns ``{"layers": {name: {"weight", "bias", "nonzero", "total"}}, "nonzero", "total",
    "density"}``; ``weight``/``bias``/``nonzero`` count non-zeros, ``total`` counts entries.
    """
    layers = {}
    for name, m in prunable_layers(model):
        w = int(torch.count_nonzero(m.weight))
        b = int(torch.count_nonzero(m.bias)) if m.bias is not None else 0
        size = m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        layers[name] = {"weight": w, "bias": b, "nonzero": w + b, "total": size}
    nonzero = sum(v["nonzero"] for v in layers.values())
    total = sum(v["total"] for v in layers.values())
    return {"layers": layers, "nonzero": nonzero, "total": total,
            "density": nonzero / total if total else 0.0}
