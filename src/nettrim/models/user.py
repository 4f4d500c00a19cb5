"""A user's model for the command line: ``--model module.path:factory`` builds it, ``--weights``
fills it.

The factory is imported by its module path (the current directory on ``sys.path``, as for
``python -m``) and called with no arguments; it must return a ``torch.nn.Module`` (a module
class itself qualifies). The weights are a state dict: a ``.safetensors`` file (a nettrim
sparse or dense file included), or anything else read with ``torch.load(weights_only=True)``
holding a dict of tensors (or a dict with such a dict under ``"state_dict"``, a nettrim
checkpoint included). They must fit the model exactly: the same names, shapes and dtypes; the
first mismatch is named. Every problem is one :class:`NettrimError` line.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import pickle
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import NettrimError, require
from ..data.registry import one_line


@dataclass(frozen=True)
class UserModel:
    """A built and filled user model with what rebuilds it: the factory string and the
    weights file (absolute path, sha256)."""

    model: nn.Module
    factory: str
    weights: str
    weights_sha256: str

    def record(self) -> dict:
        return {"factory": self.factory, "weights": {"path": self.weights, "sha256": self.weights_sha256}}


def load_user_model(factory: str, weights) -> UserModel:
    """Build the model with ``factory`` and fill it with ``weights`` (eval mode, CPU)."""
    path = Path(weights).expanduser()
    require(path.is_file(), f"weights not found: {path}" if not path.is_dir()
            else f"weights {path} is a directory: name the state-dict file")
    model = build_from_factory(factory)
    fill(model, path, factory)
    return UserModel(model.eval(), factory, str(path.resolve()), file_sha256(path))


def split_factory(spec: str) -> tuple[str, str]:
    """``"pkg.module:attr"`` -> ("pkg.module", "attr"); ``attr`` may be dotted."""
    module, sep, attr = str(spec).partition(":")
    ok = sep and all(p.isidentifier() for p in module.split(".")) and all(p.isidentifier() for p in attr.split("."))
    require(ok, f"--model {spec!r} must name a factory as module.path:function (e.g. my_pkg.nets:build), "
                "importable from the current directory")
    return module, attr


@contextlib.contextmanager
def _cwd_on_path():
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        yield
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def build_from_factory(spec: str) -> nn.Module:
    """Import the factory ``spec`` names and call it; one line when it does not import, raises
    or returns anything but a module."""
    module_name, attr = split_factory(spec)
    with _cwd_on_path():
        try:
            obj = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:
            raise NettrimError(f"--model {spec}: cannot import {module_name}: {one_line(exc)}") from None
        for part in attr.split("."):
            require(hasattr(obj, part), f"--model {spec}: {module_name} has no {attr!r}")
            obj = getattr(obj, part)
        require(callable(obj), f"--model {spec}: {attr} is a {type(obj).__name__}, not a function")
        try:
            model = obj()
        except (Exception, SystemExit) as exc:
            raise NettrimError(f"--model {spec}: the factory raised {one_line(exc)}") from None
    require(isinstance(model, nn.Module),
            f"--model {spec}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def fill(model: nn.Module, path: Path, factory: str) -> None:
    """Copy the state dict in ``path`` into ``model`` once every name, shape and dtype agrees."""
    if path.suffix.lower() == ".safetensors" and _nettrim_file(path):
        from ..export import load

        load(path, into=model)  # names, shapes and dtypes checked there, one line each
        return
    state = read_state_dict(path)
    mismatch = first_mismatch(model.state_dict(), state)
    require(mismatch is None, f"{path} does not fit the model of --model {factory}: {mismatch}")
    model.load_state_dict(state)


def _nettrim_file(path: Path) -> bool:
    """Whether ``path`` is a safetensors file nettrim wrote (its tensors need decoding)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return str((f.metadata() or {}).get("format", "")).startswith("nettrim-")
    except Exception:
        return False  # read_state_dict names what is wrong with it


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, or of a ``torch.load(weights_only=True)`` file."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise NettrimError(f"cannot read {path} as safetensors: {one_line(exc)}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise NettrimError(f"{path} needs pickle beyond torch.load(weights_only=True) (it holds Python "
                           "objects, not only tensors), which nettrim never runs; save "
                           "model.state_dict() with torch.save, or as safetensors") from None
    except Exception as exc:
        raise NettrimError(f"cannot read {path} with torch.load: {one_line(exc)}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    require(isinstance(obj, dict), f"{path} holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    require(bad is None, f"{path} is not a state dict: {bad!r} holds a {type(obj.get(bad)).__name__}, not a tensor")
    return obj


def first_mismatch(want: dict, have: dict) -> str | None:
    """The first difference between the model's state dict and the file's, in the model's
    order (a missing or wrongly shaped or typed tensor), then the file's extra names; None when
    they agree."""
    for name, t in want.items():
        if name not in have:
            return f"it has no tensor {name!r}"
        got = have[name]
        if tuple(got.shape) != tuple(t.shape):
            return f"{name!r} has shape {list(got.shape)}, the model's is {list(t.shape)}"
        if got.dtype != t.dtype:
            return f"{name!r} is {str(got.dtype).removeprefix('torch.')}, the model's is {str(t.dtype).removeprefix('torch.')}"
    extra = [k for k in have if k not in want]
    return f"it has {extra[0]!r}, which the model has not" if extra else None


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
