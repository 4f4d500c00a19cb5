"""Ship a pruned model: sparse or dense safetensors files, or ONNX, and loading them back.

``export(model, path, format)`` writes one of

* ``"sparse"``: safetensors holding, per state-dict tensor, either the tensor or its non-zero
  values plus a Golomb-Rice code of their positions (:mod:`nettrim.export.sparse`);
* ``"dense"``: an ordinary safetensors file of the state dict;
* ``"onnx"``: an ONNX graph, checked with onnxruntime on a sample batch
  (:mod:`nettrim.export.onnx`).

The safetensors files record the architecture (``arch`` and ``arch_kwargs``, as
``nettrim.models.build_model`` takes them) and a sha256 of their content
(:mod:`nettrim.export.container`); ``load(path)`` rebuilds the model from either kind without
unpickling anything. Every write is atomic, and an existing file is replaced only with
``force=True``. The package itself is callable: ``nettrim.export(model, path)`` is
:func:`export`.
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
from . import container, sparse
from .arch import identify, input_shape, resolve
from .csr import SparseLinear, to_sparse_csr

FORMATS = ("sparse", "dense", "onnx")

__all__ = ["export", "load", "export_checkpoint", "ExportInfo", "FORMATS", "identify",
           "to_sparse_csr", "SparseLinear"]


@dataclass(frozen=True)
class ExportInfo:
    """What :func:`export` wrote: path, format, size in bytes, architecture, and for ONNX the
    largest difference between onnxruntime's and PyTorch's outputs on the sample batch."""

    path: Path
    format: str
    bytes: int
    arch: str
    arch_kwargs: dict
    onnx_max_abs_diff: float | None = None


def _check_target(path: Path, format: str, force: bool) -> None:
    require(format in FORMATS, f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    require(not path.is_dir(), f"cannot write to {path}: it is a directory")
    require(force or not path.exists(),
            f"{path} already exists; choose another path, or pass --force (force=True) to replace it")


def export(model: nn.Module, path, format: str = "sparse", *, arch: str | None = None,
           arch_kwargs: dict | None = None, force: bool = False,
           sample: torch.Tensor | None = None) -> ExportInfo:
    """Write ``model`` to ``path`` as ``format`` ("sparse", "dense" or "onnx").

    ``arch``/``arch_kwargs`` name the registered architecture that rebuilds the model; by
    default it is recognised from the model's layers (one-line error if none fits).
    ``sample``: the ONNX check batch (default 16 uniform [0, 1) inputs, fixed seed).
    """
    path = Path(path)
    _check_target(path, format, force)
    require(isinstance(model, nn.Module), f"model must be a torch.nn.Module, got {type(model).__name__}")
    meta_tensors = [k for k, v in model.state_dict().items() if v.device.type == "meta"]
    require(not meta_tensors, f"cannot export {meta_tensors[0] if meta_tensors else ''!r}: it is on the "
                              "meta device (no values); load the model's weights first")
    arch, arch_kwargs = resolve(model, arch, arch_kwargs)
    if format == "onnx":
        from .onnx import sample_batch, write_onnx

        dtype = next(model.parameters(), torch.empty(0)).dtype
        batch = sample if sample is not None else sample_batch(input_shape(arch, arch_kwargs), dtype)
        path, diff = write_onnx(path, model, arch, arch_kwargs, batch)
        return ExportInfo(path, format, path.stat().st_size, arch, arch_kwargs, diff)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {"format": f"nettrim-{format}/1", "arch": arch,
            "arch_kwargs": json.dumps(arch_kwargs, sort_keys=True)}
    if format == "sparse":
        state, layout = sparse.pack(state)
        meta["layout"] = json.dumps(layout)
    path = container.write(path, state, meta)
    return ExportInfo(path, format, path.stat().st_size, arch, arch_kwargs)


def export_checkpoint(checkpoint, path, format: str = "sparse", *, force: bool = False) -> ExportInfo:
    """:func:`export` the model of a nettrim checkpoint (``nettrim.models.save_checkpoint``)."""
    from ..models import load_checkpoint

    _check_target(Path(path), format, force)
    model, info = load_checkpoint(checkpoint)
    return export(model, path, format, arch=info["arch"], arch_kwargs=info["arch_kwargs"],
                  force=force)


def _architecture(meta: dict, path: Path) -> nn.Module:
    arch = meta.get("arch")
    require(arch in ARCHITECTURES,
            f"{path}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    try:
        kwargs = json.loads(meta.get("arch_kwargs", "{}"))
    except ValueError:
        raise NettrimError(f"{path}: arch_kwargs metadata is not JSON") from None
    require(isinstance(kwargs, dict), f"{path}: arch_kwargs metadata is not a JSON object")
    return build_model(arch, **kwargs)


def load(path) -> nn.Module:
    """The model stored in a sparse or dense nettrim safetensors file, in eval mode on CPU,
    with the stored tensors: same dtypes, same bits (a negative zero in a Rice-coded tensor
    comes back as +0.0, see :mod:`nettrim.export.sparse`).

    Never unpickles. One-line :class:`NettrimError` for anything else, and for damaged files.
    """
    path = Path(path)
    tensors, meta = container.read(path)
    if meta["format"] == "nettrim-sparse/1":
        try:
            layout = json.loads(meta.get("layout", ""))
        except ValueError:
            raise NettrimError(f"{path}: layout metadata is not JSON; export the model again") from None
        require(isinstance(layout, dict), f"{path}: layout metadata is not a JSON object")
        tensors = sparse.unpack(tensors, layout, path)
    model = _architecture(meta, path)
    want = model.state_dict()
    require(set(tensors) == set(want),
            f"{path}: tensors do not match architecture {meta['arch']!r} (missing "
            f"{sorted(set(want) - set(tensors))[:3]}, unexpected {sorted(set(tensors) - set(want))[:3]})")
    bad = [k for k in want if tensors[k].shape != want[k].shape]
    require(not bad, f"{path}: tensors {bad[:3]} have the wrong shape for {meta['arch']!r}")
    model.load_state_dict(tensors, assign=True)  # the stored tensors themselves: dtypes and bits kept
    return model.eval()


class _CallableModule(types.ModuleType):
    """This package, callable: ``nettrim.export(model, path, ...)`` is :func:`export`, while
    ``nettrim.export.load`` and the submodules stay reachable as attributes."""

    def __call__(self, *args, **kwargs) -> ExportInfo:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
