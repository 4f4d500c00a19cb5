"""Checkpoints: plain ``torch.save`` dicts loadable with ``torch.load(path, weights_only=True)``.

File layout: ``{"format", "arch", "arch_kwargs", "state_dict", "meta"}`` holding only tensors,
str, int, float, bool, None, lists, tuples and dicts. Writes are atomic (temp file + os.replace).
"""
from __future__ import annotations

import numbers
import os
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from ..report.io import atomic_write
from ..errors import NettrimError, require
from .architectures import ARCHITECTURES, build_model, widths_kwargs

FORMAT = "nettrim-checkpoint/1"
_KEYS = ("arch", "arch_kwargs", "state_dict", "meta")


def _plain(obj, where: str):
    """A copy of ``obj`` made of types ``torch.load(weights_only=True)`` accepts."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)  # a str enum (nettrim.Status) as its plain value
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, dict):
        require(all(isinstance(k, str) for k in obj), f"{where} has a non-string key")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    raise NettrimError(f"{where} has type {type(obj).__name__}; checkpoints hold only "
                       "tensors, str, int, float, bool, None, lists, tuples and dicts")


def save_checkpoint(path, model: nn.Module, arch: str, arch_kwargs: dict | None = None,
                    meta: dict | None = None) -> Path:
    """Atomically write ``model``'s state with what rebuilds it: ``build_model(arch, **arch_kwargs)``
    (checked before writing: a mismatch raises :class:`NettrimError`). A network narrower than
    ``arch_kwargs`` say (structured pruning) is saved with its own widths added to them
    (``widths_kwargs``) when the architecture takes them."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    arch_kwargs = _with_widths(arch, dict(arch_kwargs or {}), model, state)
    _check_state(build_model(arch, **arch_kwargs), state, arch, Path(path))
    payload = {"format": FORMAT, "arch": arch,
               "arch_kwargs": _plain(dict(arch_kwargs or {}), "arch_kwargs"),
               "state_dict": state,
               "meta": _plain(dict(meta or {}), "meta")}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _with_widths(arch: str, kwargs: dict, model: nn.Module, state: dict) -> dict:
    """``kwargs``, or with the model's widths when only they differ from ``build_model``'s."""
    with torch.device("meta"):
        probe = build_model(arch, **kwargs).state_dict()
    if [(k, tuple(v.shape)) for k, v in probe.items()] == [(k, tuple(v.shape)) for k, v in state.items()]:
        return kwargs
    try:
        return widths_kwargs(arch, kwargs, model)
    except NettrimError:
        return kwargs  # _check_state names the mismatch


def _read(path: Path) -> dict:
    require(path.is_file(), f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise NettrimError(f"{path} is not a nettrim checkpoint: it holds Python objects other "
                           "than tensors and plain values, which nettrim never unpickles "
                           f"({type(exc).__name__})") from None
    except Exception as exc:
        raise NettrimError(f"{path} is not a nettrim checkpoint (torch.load failed: "
                           f"{type(exc).__name__})") from None
    require(isinstance(ckpt, dict) and all(k in ckpt for k in _KEYS),
            f"{path} is not a nettrim checkpoint (expected a dict with keys {', '.join(_KEYS)})")
    require(isinstance(ckpt["arch_kwargs"], dict) and isinstance(ckpt["state_dict"], dict)
            and isinstance(ckpt["meta"], dict),
            f"{path} is not a nettrim checkpoint (arch_kwargs, state_dict and meta must be dicts)")
    return ckpt


def _check_state(model: nn.Module, state: dict, arch: str, path: Path) -> None:
    """One-line error when ``state`` does not fit ``model`` (missing/extra keys, shapes)."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and (not isinstance(state[k], torch.Tensor)
                                                  or state[k].shape != want[k].shape)]
    problems = [f"{label} {keys[:3]}{' ...' if len(keys) > 3 else ''}"
                for label, keys in (("missing", missing), ("unexpected", extra),
                                    ("wrong shape", shapes)) if keys]
    require(not problems, f"{path}: state dict does not match architecture {arch!r}: "
            + "; ".join(problems))


def load_checkpoint(path, device=None) -> tuple[nn.Module, dict]:
    """Rebuild the model saved at ``path`` (in eval mode, on ``device``, default CPU).

    Returns ``(model, info)`` with ``info = {"arch", "arch_kwargs", "meta", "path"}``.
    """
    path = Path(path)
    ckpt = _read(path)
    arch, kwargs = ckpt["arch"], ckpt["arch_kwargs"]
    require(isinstance(arch, str) and arch in ARCHITECTURES,
            f"{path}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    try:
        model = build_model(arch, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise NettrimError(f"{path}: cannot rebuild {arch!r} from arch_kwargs {kwargs}: {exc}") from exc
    _check_state(model, ckpt["state_dict"], arch, path)
    model.load_state_dict(ckpt["state_dict"])
    if device is not None:
        model.to(device)
    info = {"arch": arch, "arch_kwargs": kwargs, "meta": ckpt["meta"], "path": str(path)}
    return model.eval(), info


def export_safetensors(path, model: nn.Module, metadata: dict[str, str] | None = None) -> Path:
    """Atomically write ``model.state_dict()`` as a ``.safetensors`` file."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta or None))
