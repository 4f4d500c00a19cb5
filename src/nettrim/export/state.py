"""The tensors a file stores for a module: its state dict, by its own names, checked.

``collect(model)`` returns the state dict as CPU tensors plus its ties: an entry that is the
same tensor as an earlier one (the same storage, offset, shape, strides and dtype: a shared
or tied parameter, e.g. an embedding reused as the output layer) is stored once and recorded
as ``alias -> source``; a tensor that only overlaps another one's memory is stored as a copy.
Entries nettrim cannot store are refused in one line, naming the entry: a non-tensor (extra
state), a tensor on the meta device (no values), a sparse or otherwise non-strided layout, a
dtype outside :data:`nettrim.export.container.DTYPES`.

``Spec`` is what a file says of one entry before any of it is decoded (dtype and shape), so
that ``load`` can compare a file with a model, or with an architecture, before allocating.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import NettrimError, require
from .container import DTYPES, dtype_name


@dataclass(frozen=True)
class Spec:
    """dtype and shape of one state-dict entry."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def show(self) -> str:
        return f"{str(self.dtype).removeprefix('torch.')} {list(self.shape)}"


def spec_of(t: torch.Tensor) -> Spec:
    return Spec(t.dtype, tuple(t.shape))


def _identity(t: torch.Tensor) -> tuple:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _check_entry(name: str, value) -> torch.Tensor:
    require(isinstance(value, torch.Tensor),
            f"cannot export {name!r}: its state-dict entry is a {type(value).__name__}, not a tensor")
    require(value.device.type != "meta",
            f"cannot export {name!r}: it is on the meta device (no values); load the model's weights first")
    require(value.layout == torch.strided,
            f"cannot export {name!r}: it has layout {str(value.layout).removeprefix('torch.')}; "
            "convert it to a dense tensor first")
    try:
        dtype_name(value.dtype)
    except NettrimError as exc:
        raise NettrimError(f"cannot export {name!r}: {exc}") from None
    return value.detach()


def collect(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, ties)``: the state dict of ``model`` without its aliases, as contiguous
    CPU tensors that share no memory, and ``{alias: source}`` for the aliases."""
    require(isinstance(model, nn.Module), f"model must be a torch.nn.Module, got {type(model).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    ties: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storages: set[tuple] = set()
    for name, value in model.state_dict(keep_vars=False).items():
        t = _check_entry(name, value)
        key = _identity(t)
        if key in seen and t.numel() > 0:
            ties[name] = seen[key]
            continue
        seen.setdefault(key, name)
        storage = (t.device.type, t.untyped_storage().data_ptr())
        shared = storage in storages and t.numel() > 0
        storages.add(storage)
        t = t.cpu()
        tensors[name] = t.clone(memory_format=torch.contiguous_format) if shared else t.contiguous()
    return tensors, ties


def with_ties(state: dict[str, torch.Tensor], ties: dict[str, str]) -> dict[str, torch.Tensor]:
    """``state`` with each alias bound to its source's tensor (the same object)."""
    return {**state, **{alias: state[source] for alias, source in ties.items()}}


def parse_ties(raw, names, where) -> dict[str, str]:
    """The ``tied`` metadata of a file: a JSON object alias -> source, both checked."""
    import json

    if raw is None:
        return {}
    try:
        ties = json.loads(raw)
    except ValueError:
        raise NettrimError(f"{where}: tied metadata is not JSON; export the model again") from None
    require(isinstance(ties, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in ties.items()),
            f"{where}: tied metadata is not a JSON object of names")
    bad = next((k for k, v in ties.items() if k in names or v not in names), None)
    require(bad is None, f"{where}: tied entry {bad!r} names a tensor the file does not hold as its source")
    return ties


def specs_of_model(model: nn.Module) -> dict[str, Spec]:
    return {name: spec_of(t) for name, t in model.state_dict().items() if isinstance(t, torch.Tensor)}


def first_mismatch(have: dict[str, Spec], want: dict[str, Spec], have_what: str, want_what: str,
                   same_kind_only: bool = False) -> str | None:
    """One line naming the first difference between two sets of specs (names, then shapes,
    then dtypes; ``same_kind_only``: a floating-point dtype may stand for another one), or None."""
    missing = next((k for k in want if k not in have), None)
    if missing is not None:
        return f"{have_what} holds no tensor {missing!r}, which {want_what} has"
    extra = next((k for k in have if k not in want), None)
    if extra is not None:
        return f"{have_what} holds a tensor {extra!r}, which {want_what} does not have"
    for name, other in want.items():
        spec = have[name]
        if spec.shape != other.shape:
            return (f"tensor {name!r} is {list(spec.shape)} in {have_what} but "
                    f"{list(other.shape)} in {want_what}")
        floats = spec.dtype.is_floating_point and other.dtype.is_floating_point
        if spec.dtype != other.dtype and not (same_kind_only and floats):
            return (f"tensor {name!r} is {dtype_name(spec.dtype)} in {have_what} but "
                    f"{dtype_name(other.dtype)} in {want_what}")
    return None


def memory_bytes() -> int:
    """Memory this process may use for decoded tensors: MemAvailable where /proc/meminfo
    says it, else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 40


def require_memory(specs: dict[str, Spec], where) -> None:
    """Refuse, before allocating, a file whose tensors would not fit in memory."""
    need = sum(s.nbytes for s in specs.values())
    have = memory_bytes()
    require(need <= have, f"{where} holds {need / 1e9:.3g} GB of tensors once decoded, more than "
                          f"the {have / 1e9:.3g} GB of memory available; it is damaged or forged")


__all__ = ["Spec", "collect", "with_ties", "parse_ties", "specs_of_model", "first_mismatch",
           "require_memory", "DTYPES"]
