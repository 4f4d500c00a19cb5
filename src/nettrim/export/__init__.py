"""Ship a pruned model: sparse or dense safetensors files, ONNX, or a compressed-tensors
directory for Hugging Face transformers, and loading them back.

``export(model, path, format)`` writes, for any ``nn.Module``, one of

* ``"sparse"`` (default): safetensors holding the model's state dict by its own names, each
  tensor either as it is or as its non-zero values plus a Golomb-Rice code of their positions
  (:mod:`nettrim.export.sparse`);
* ``"dense"``: an ordinary safetensors file of the state dict;
* ``"onnx"``: an ONNX graph, checked with onnxruntime on a sample batch
  (:mod:`nettrim.export.onnx`); ``sample=`` gives the batch (needed unless nettrim knows the
  model's architecture, and so its input shape);
* ``"compressed-tensors"``: a directory that ``transformers``' ``from_pretrained`` loads, the
  weights of its linear layers in the sparse-bitmask format of the compressed-tensors package
  (:mod:`nettrim.export.compressed`), for a transformers model.

The safetensors files record the architecture (``arch`` and ``arch_kwargs``, as
``nettrim.models.build_model`` takes them) when the model is one nettrim builds, tied
(shared) tensors once with their aliases, and a sha256 of their content
(:mod:`nettrim.export.container`). ``load(path)`` gives back the model when the file names an
architecture, else the state dict; ``load(path, into=model)`` fills a model in place. Loading
never unpickles and builds nothing before the file's names, shapes and dtypes agree with what
is built (:func:`load`). Every write goes through :mod:`nettrim.export.files`: the path is
checked before any work, the file is written beside it and moved into place, and an existing
file is replaced only with ``force=True``. The package itself is callable:
``nettrim.export(model, path)`` is :func:`export`.
"""
from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import NettrimError, require
from ..models.architectures import ARCHITECTURES, build_model
from . import container, files, sparse, state
from .arch import check_kwargs, identify, input_shape, probe_specs, resolve
from .csr import SparseLinear, to_sparse_csr

FORMATS = ("sparse", "dense", "onnx", "compressed-tensors")

__all__ = ["export", "load", "export_checkpoint", "ExportInfo", "FORMATS", "identify",
           "to_sparse_csr", "SparseLinear"]


@dataclass(frozen=True)
class ExportInfo:
    """What :func:`export` wrote: path, format, size in bytes (of every file, for a
    directory), the architecture (None when nettrim does not build the model), and for ONNX
    the largest difference between onnxruntime's and PyTorch's outputs on the sample batch."""

    path: Path
    format: str
    bytes: int
    arch: str | None
    arch_kwargs: dict | None
    onnx_max_abs_diff: float | None = None


def _check_target(path, format: str, force: bool) -> Path:
    require(format in FORMATS, f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    return files.check(path, force=force, directory=format == "compressed-tensors")


def _architecture(model: nn.Module, arch: str | None, arch_kwargs: dict | None):
    """``(arch, kwargs)`` to record: the one given (checked), the one recognised, or
    ``(None, None)`` for a model nettrim does not build."""
    if arch is not None or arch_kwargs is not None:
        return resolve(model, arch, arch_kwargs)
    try:
        return identify(model)
    except NettrimError:
        return None, None


def export(model: nn.Module, path, format: str = "sparse", *, arch: str | None = None,
           arch_kwargs: dict | None = None, force: bool = False, sample=None) -> ExportInfo:
    """Write ``model`` (any ``nn.Module``) to ``path`` as ``format``.

    ``arch``/``arch_kwargs`` name the registered architecture that rebuilds the model (checked
    against it); by default it is recognised from the model's layers, and a model that matches
    none is written by its state dict alone. ``sample``: the ONNX check batch, a tensor or a
    tuple of tensors (default for a recognised architecture: 16 uniform [0, 1) inputs, fixed
    seed). The path is checked before anything else is done.
    """
    path = _check_target(path, format, force)
    require(isinstance(model, nn.Module), f"model must be a torch.nn.Module, got {type(model).__name__}")
    if format == "compressed-tensors":
        from .compressed import write_compressed

        return ExportInfo(write_compressed(model, path), format, files.size(path), None, None)
    arch, arch_kwargs = _architecture(model, arch, arch_kwargs)
    if format == "onnx":
        return _export_onnx(model, path, arch, arch_kwargs, sample)
    tensors, ties = state.collect(model)
    meta = {"format": f"nettrim-{format}/1"}
    if arch is not None:
        meta.update(arch=arch, arch_kwargs=json.dumps(arch_kwargs, sort_keys=True))
    if format == "sparse":
        tensors, layout = sparse.pack(tensors)
        meta["layout"] = json.dumps(layout)
    if ties:
        meta["tied"] = json.dumps(ties)
    container.write(path, tensors, meta)
    return ExportInfo(path, format, files.size(path), arch, arch_kwargs)


def _export_onnx(model, path, arch, arch_kwargs, sample) -> ExportInfo:
    from .onnx import sample_batch, write_onnx

    state.collect(model)  # meta tensors and the like: one line before tracing
    if sample is None:
        require(arch is not None,
                f"format 'onnx' needs sample= (an example input batch) for {type(model).__name__}: "
                "nettrim does not know its input shape")
        dtype = next(model.parameters(), torch.empty(0)).dtype
        sample = sample_batch(input_shape(arch, arch_kwargs), dtype)
    diff = write_onnx(path, model, arch, arch_kwargs, sample)
    return ExportInfo(path, "onnx", files.size(path), arch, arch_kwargs, diff)


def export_checkpoint(checkpoint, path, format: str = "sparse", *, force: bool = False) -> ExportInfo:
    """:func:`export` the model of a nettrim checkpoint (``nettrim.models.save_checkpoint``)."""
    from ..models import load_checkpoint

    _check_target(path, format, force)
    model, info = load_checkpoint(checkpoint)
    return export(model, path, format, arch=info["arch"], arch_kwargs=info["arch_kwargs"],
                  force=force)


# ---- loading -------------------------------------------------------------------------------


def _layout(meta: dict, path: Path) -> dict:
    try:
        layout = json.loads(meta.get("layout", ""))
    except ValueError:
        raise NettrimError(f"{path}: layout metadata is not JSON; export the model again") from None
    require(isinstance(layout, dict), f"{path}: layout metadata is not a JSON object")
    return layout


def _stored(tensors: dict, meta: dict, path: Path):
    """``(specs, decode)``: what the file says of each entry, before anything is decoded, and
    a function that decodes the state dict (aliases of tied entries included)."""
    if meta["format"] == "nettrim-sparse/1":
        layout = _layout(meta, path)
        specs = sparse.specs(layout, path)
        ties = state.parse_ties(meta.get("tied"), specs, path)
        decode = lambda: sparse.unpack(tensors, layout, path)  # noqa: E731
    else:
        specs = {name: state.spec_of(t) for name, t in tensors.items()}
        ties = state.parse_ties(meta.get("tied"), specs, path)
        decode = lambda: tensors  # noqa: E731
    full = state.with_ties(specs, ties)
    return full, lambda: state.with_ties(decode(), ties)


def _fill(model: nn.Module, specs: dict, decode, path: Path) -> nn.Module:
    """Copy the file's tensors into ``model``'s own, once names, shapes and dtypes agree."""
    require(isinstance(model, nn.Module), f"into must be a torch.nn.Module, got {type(model).__name__}")
    own = model.state_dict()
    meta_name = next((k for k, v in own.items() if isinstance(v, torch.Tensor) and v.device.type == "meta"), None)
    require(meta_name is None, f"cannot load {path} into {type(model).__name__}: its tensor {meta_name!r} "
                               "is on the meta device; build the model on a real device first")
    mismatch = state.first_mismatch(specs, state.specs_of_model(model), str(path), type(model).__name__)
    require(mismatch is None, f"cannot load into {type(model).__name__}: {mismatch}")
    with torch.no_grad():
        for name, t in decode().items():
            own[name].copy_(t)
    return model


def _build(meta: dict, specs: dict, decode, path: Path) -> nn.Module:
    """The architecture the file names, checked against the stored specs before it is built."""
    arch = meta["arch"]
    require(arch in ARCHITECTURES, f"{path}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    try:
        kwargs = json.loads(meta.get("arch_kwargs", "{}"))
    except ValueError:
        raise NettrimError(f"{path}: arch_kwargs metadata is not JSON") from None
    kwargs = check_kwargs(arch, kwargs, path, len(specs))
    mismatch = state.first_mismatch(specs, probe_specs(arch, kwargs, path), str(path),
                                    f"architecture {arch!r}", same_kind_only=True)
    require(mismatch is None, f"{path} does not hold architecture {arch!r}: {mismatch}")
    state.require_memory(specs, path)
    with torch.device("meta"):
        model = build_model(arch, **kwargs)
    model.load_state_dict(decode(), assign=True)  # the stored tensors themselves: dtypes and bits kept
    left = next((k for k, v in [*model.named_parameters(), *model.named_buffers()] if v.device.type == "meta"), None)
    if left is not None:  # a buffer outside the state dict: build on the CPU instead
        model = build_model(arch, **kwargs)
        model.load_state_dict(decode(), assign=True)
    return model.eval()


def load(path, *, into: nn.Module | None = None):
    """What a sparse or dense nettrim safetensors file holds, with the stored tensors: same
    dtypes, same bits (a negative zero in a Rice-coded tensor comes back as +0.0, see
    :mod:`nettrim.export.sparse`); tied entries come back as one tensor.

    * ``into=model``: the file's tensors copied into ``model``'s own (in place; names, shapes
      and dtypes must agree, else one line naming the first mismatch); returns ``model``;
    * else, when the file names an architecture nettrim builds: that model, in eval mode on
      the CPU. Its ``arch_kwargs`` are checked by type and range, and the shapes and dtypes
      they give (built on the meta device) compared with the stored ones, before it is built;
    * else: the state dict (a dict of tensors).

    Never unpickles. One-line :class:`NettrimError` for anything else, and for damaged files.
    """
    path = files._as_path(path)
    tensors, meta = container.read(path)
    specs, decode = _stored(tensors, meta, path)
    if into is not None:
        return _fill(into, specs, decode, path)
    if "arch" in meta:
        return _build(meta, specs, decode, path)
    state.require_memory(specs, path)
    return decode()


class _CallableModule(types.ModuleType):
    """This package, callable: ``nettrim.export(model, path, ...)`` is :func:`export`, while
    ``nettrim.export.load`` and the submodules stay reachable as attributes."""

    def __call__(self, *args, **kwargs) -> ExportInfo:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
