"""Which registered architecture (``nettrim.models.ARCHITECTURES``) a model is.

A model matches ``(arch, kwargs)`` when ``build_model(arch, **kwargs)`` prints the same module
tree (``repr``: layer types, sizes, kernels, dropout rates) and has the same state-dict keys
and shapes. Candidate keywords come from the model's own layers; the probes are built
on the meta device, so no weights are allocated.
"""
from __future__ import annotations

import functools
import inspect
import json

import torch
from torch import nn

from ..errors import NettrimError, require
from ..models.architectures import ARCHITECTURES, build_model, mlp
from ..options import Check, Integer, Real, is_int

_SIDES = (28, 32, *range(8, 97))


def _signature(state: dict) -> list:
    return [(k, tuple(v.shape)) for k, v in state.items()]


def matches(model: nn.Module, arch: str, kwargs: dict) -> bool:
    """Whether ``build_model(arch, **kwargs)`` has ``model``'s structure and state-dict names and
    shapes (dtypes may differ: a half-precision copy is still the architecture)."""
    try:
        with torch.device("meta"):
            probe = build_model(arch, **kwargs)
    except (NettrimError, TypeError, ValueError, RuntimeError):
        return False
    return repr(probe) == repr(model) and \
        _signature(probe.state_dict()) == _signature(model.state_dict())


def _layer_types(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.modules() if not isinstance(m, (nn.Dropout, nn.Sequential))]


@functools.cache
def _default_types(arch: str) -> tuple[str, ...]:
    with torch.device("meta"):
        return tuple(_layer_types(build_model(arch)))


def _keywords(arch: str) -> set[str]:
    """The keyword arguments the builder of ``arch`` accepts."""
    params = dict(inspect.signature(ARCHITECTURES[arch]).parameters)
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        params = {**inspect.signature(mlp).parameters, **params}  # the MLP builders forward to mlp
    return {name for name, p in params.items() if p.kind == p.KEYWORD_ONLY}


def _candidates(model: nn.Module, arch: str, widths: bool = False):
    """Keyword dicts worth trying for ``arch``, most likely first; with ``widths`` those that
    also give the model's own layer widths (a structurally pruned, narrower network)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not linears:
        return
    base = {"n_classes": linears[-1].out_features,
            "dropout": next((m.p for m in model.modules() if isinstance(m, nn.Dropout)), 0.0)}
    if convs:
        base["width"] = convs[0].out_channels
        shapes = [{"in_shape": [convs[0].in_channels, s, s]} for s in _SIDES]
    else:
        shapes = [{"in_features": linears[0].in_features}]
    keys = _keywords(arch)
    if widths:
        sizes = {"channels": [m.out_channels for m in convs], "hidden": [m.out_features for m in linears[:-1]]}
        if not keys & set(sizes):
            return
        base.update(sizes)
    for shape in shapes:
        yield {k: v for k, v in {**base, **shape}.items() if k in keys}


def _simplest(model: nn.Module, arch: str, kwargs: dict) -> dict:
    """``kwargs`` without the entries the builder's defaults already give."""
    out = dict(kwargs)
    for key in list(kwargs):
        trial = {k: v for k, v in out.items() if k != key}
        if matches(model, arch, trial):
            out = trial
    return out


def identify(model: nn.Module) -> tuple[str, dict]:
    """``(arch, kwargs)`` such that ``build_model(arch, **kwargs)`` rebuilds ``model``'s layout.

    Raises :class:`NettrimError` naming the model's class when no registered architecture fits.
    """
    types = tuple(_layer_types(model))
    for widths in (False, True):  # an architecture at its own widths first
        for arch in (a for a in ARCHITECTURES if _default_types(a) == types):
            for kwargs in _candidates(model, arch, widths):
                if matches(model, arch, kwargs):
                    return arch, _simplest(model, arch, kwargs)
    raise NettrimError(
        f"cannot export {type(model).__name__}: its layers match none of nettrim's architectures "
        f"({', '.join(ARCHITECTURES)}); export a model built by nettrim.models.build_model, "
        "or pass arch= and arch_kwargs=")


def resolve(model: nn.Module, arch: str | None, arch_kwargs: dict | None) -> tuple[str, dict]:
    """The architecture to record for ``model``: the one given (checked), else :func:`identify`."""
    if arch is None:
        require(arch_kwargs is None, "arch_kwargs needs arch: pass both, or neither")
        return identify(model)
    require(arch in ARCHITECTURES,
            f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    try:
        kwargs = json.loads(json.dumps(dict(arch_kwargs or {})))
    except (TypeError, ValueError) as exc:
        raise NettrimError(f"arch_kwargs must hold plain JSON values: {exc}") from None
    build_model(arch, **kwargs)  # bad keywords raise a one-line NettrimError
    require(matches(model, arch, kwargs),
            f"cannot export {type(model).__name__} as {arch!r} with arch_kwargs {kwargs}: "
            "build_model gives a different layout (layers or state-dict shapes)")
    return arch, kwargs


def input_shape(arch: str, kwargs: dict) -> tuple[int, ...]:
    """The shape of one input of ``build_model(arch, **kwargs)`` (without the batch axis)."""
    if kwargs.get("in_features") is not None:
        return (int(kwargs["in_features"]),)
    fn = ARCHITECTURES[arch]
    params = inspect.signature(fn).parameters
    default = (params["in_shape"] if "in_shape" in params
               else inspect.signature(mlp).parameters["in_shape"]).default
    return tuple(int(s) for s in kwargs.get("in_shape", default))


# ---- the architecture a file names, checked before anything is built -------------------------

MAX_SIZE = 2 ** 31 - 1  # a width, a side, a class count: what an int32 index reaches


class _IntList(Check):
    """A list of integers in [1, MAX_SIZE]; ``length``: exactly that many."""

    def __init__(self, length: int | None = None):
        self.length = length
        self.allows = (f"a list of {length}" if length else "a list of") + f" integers in [1, {MAX_SIZE}]"

    def __call__(self, owner, name, value):
        ok = isinstance(value, list) and all(is_int(v) and 1 <= v <= MAX_SIZE for v in value)
        if not ok or (self.length is not None and len(value) != self.length):
            raise self.fail(owner, name, value)
        return [int(v) for v in value]


_SIZE = Integer(ge=1, le=MAX_SIZE)
# Every keyword a registered builder takes, with what a file may say for it.
KEYWORDS: dict[str, Check] = {
    "in_shape": _IntList(3), "in_features": Integer(ge=1, le=MAX_SIZE, none=True),
    "n_classes": _SIZE, "dropout": Real(ge=0.0, lt=1.0),
    "hidden": _IntList(), "channels": _IntList(), "width": _SIZE, "blocks": _SIZE,
    "dim": _SIZE, "depth": _SIZE, "heads": _SIZE, "mlp_ratio": _SIZE,
    "patch": Integer(ge=1, le=MAX_SIZE, none=True),
}
# Keywords that multiply the number of layers: each layer stores at least one tensor.
_COUNTS = ("blocks", "depth")


def check_kwargs(arch: str, kwargs, where, n_tensors: int) -> dict:
    """The ``arch_kwargs`` a file records for ``arch``, checked by type and range (one line
    naming the first bad entry); layer counts may not exceed the ``n_tensors`` it stores."""
    require(isinstance(kwargs, dict), f"{where}: arch_kwargs metadata is not a JSON object")
    allowed = _keywords(arch)
    owner = f"{where}: arch_kwargs"
    out = {}
    for key, value in kwargs.items():
        require(key in allowed and key in KEYWORDS,
                f"{where}: arch_kwargs has {key!r}, which architecture {arch!r} does not take "
                f"(it takes {', '.join(sorted(allowed))})")
        out[key] = KEYWORDS[key](owner, key, value)
    for key in (*_COUNTS, "hidden", "channels"):
        count = len(out[key]) if isinstance(out.get(key), list) else out.get(key)
        require(count is None or count <= n_tensors,
                f"{owner}.{key} asks for {count} layers, but the file stores only {n_tensors} tensors")
    return out


def probe_specs(arch: str, kwargs: dict, where) -> dict:
    """``{name: Spec}`` of ``build_model(arch, **kwargs)``, built on the meta device (nothing
    allocated); one line when the keywords do not build."""
    from .state import specs_of_model

    try:
        with torch.device("meta"):
            probe = build_model(arch, **kwargs)
    except NettrimError as exc:
        raise NettrimError(f"{where}: arch_kwargs do not build {arch!r}: {exc}") from None
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NettrimError(f"{where}: arch_kwargs do not build {arch!r}: {reason}") from None
    return specs_of_model(probe)
