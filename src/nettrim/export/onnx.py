"""ONNX export, checked with onnxruntime against the PyTorch model before the file is kept.

Any module that ``torch.onnx.export`` traces: the graph has one input ``input`` (or
``input0``, ``input1``, ... for a tuple of inputs) and one output ``logits`` (or ``output0``,
... for a model returning several tensors), the first axis of each dynamic (the batch). The
ONNX metadata (``metadata_props``) records ``nettrim.sample_shape``,
``nettrim.onnxruntime_max_abs_diff`` (the largest absolute difference between onnxruntime's
and PyTorch's outputs on the sample batch) and, when nettrim knows the architecture,
``nettrim.arch`` and ``nettrim.arch_kwargs`` (JSON).
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import NettrimError, require
from . import files

OPSET = 17
RTOL = 1e-4  # largest accepted difference, relative to the largest |output| (at least 1)


def _modules():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise NettrimError("format 'onnx' needs the onnx and onnxruntime packages: "
                           "pip install 'nettrim[export]'") from None
    return onnx, onnxruntime


def sample_batch(shape: tuple[int, ...], dtype=torch.float32, n: int = 16) -> torch.Tensor:
    """``n`` inputs of ``shape`` drawn uniformly from [0, 1) with a fixed seed."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, *shape, generator=gen).to(dtype)


def session(path, threads: int | None = None):
    """An onnxruntime CPU inference session for the ONNX file at ``path``."""
    _, ort = _modules()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _inputs(sample) -> tuple[torch.Tensor, ...]:
    """The sample as a tuple of CPU tensors (one tensor, or a tuple/list of them)."""
    batch = tuple(sample) if isinstance(sample, (tuple, list)) else (sample,)
    require(len(batch) > 0 and all(isinstance(t, torch.Tensor) for t in batch),
            f"sample must be a tensor or a tuple of tensors (the model's inputs), got {type(sample).__name__}")
    return tuple(t.detach().cpu() for t in batch)


def input_names(n: int) -> list[str]:
    return ["input"] if n == 1 else [f"input{i}" for i in range(n)]


def _outputs(value) -> list[torch.Tensor]:
    """The tensors of a model's output, in the order ONNX lists them (a tensor, or the
    tensors of a tuple, list, dict or transformers ModelOutput)."""
    from torch.utils._pytree import tree_leaves

    if hasattr(value, "to_tuple"):
        value = value.to_tuple()
    return [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)]


def max_abs_diff(path, model: nn.Module, sample) -> tuple[float, float]:
    """``(max |ort - torch|, max |torch|)`` over every output on ``sample``."""
    batch = _inputs(sample)
    with torch.no_grad():
        want = [t.numpy() for t in _outputs(model(*batch))]
    got = session(path).run(None, dict(zip(input_names(len(batch)), (t.numpy() for t in batch))))
    require(len(got) == len(want), f"the ONNX graph has {len(got)} outputs, the model {len(want)}")
    diff = max(float(np.abs(g - w).max()) if w.size else 0.0 for g, w in zip(got, want))
    scale = max(float(np.abs(w).max()) if w.size else 0.0 for w in want)
    return diff, scale


def _write(tmp: str, model: nn.Module, batch: tuple, meta: dict) -> float:
    onnx, _ = _modules()
    with torch.no_grad():
        n_out = len(_outputs(model(*batch)))
    names_in = input_names(len(batch))
    names_out = ["logits"] if n_out == 1 else [f"output{i}" for i in range(n_out)]
    axes = {name: {0: "batch"} for name in [*names_in, *names_out]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, batch, tmp, dynamo=False, opset_version=OPSET,
                              input_names=names_in, output_names=names_out, dynamic_axes=axes)
        except (RuntimeError, TypeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NettrimError(f"torch.onnx.export cannot export {type(model).__name__}: {reason[:200]}") from None
    diff, scale = max_abs_diff(tmp, model, batch)
    require(diff <= RTOL * max(1.0, scale),
            f"onnxruntime disagrees with PyTorch by {diff:.3g} (outputs up to {scale:.3g}); "
            "the ONNX file was not written")
    graph = onnx.load(tmp)
    for key, value in dict(meta, onnxruntime_max_abs_diff=repr(diff)).items():
        graph.metadata_props.add(key=f"nettrim.{key}", value=str(value))
    onnx.save(graph, tmp)
    return diff


def write_onnx(path, model: nn.Module, arch: str | None, arch_kwargs: dict | None, sample) -> float:
    """Atomically write ``model`` as ONNX once onnxruntime reproduces it on ``sample`` (a
    tensor or a tuple of tensors: the model's inputs); returns the largest difference.

    The model itself is not modified (a copy in eval mode is exported). ``path`` must have
    been checked with :func:`nettrim.export.files.check`.
    """
    _modules()
    batch = _inputs(sample)
    model = copy.deepcopy(model).cpu().eval()
    meta = {"sample_shape": json.dumps([list(t.shape) for t in batch] if len(batch) > 1 else list(batch[0].shape))}
    if arch is not None:
        meta.update(arch=arch, arch_kwargs=json.dumps(arch_kwargs, sort_keys=True))
    try:
        with torch.no_grad():
            _outputs(model(*batch))
    except Exception as exc:  # the user's model on the user's sample: say what it raised
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NettrimError(f"{type(model).__name__} does not run on the sample "
                           f"({type(exc).__name__}: {reason[:200]})") from None
    result = {}
    files.replace(path, lambda tmp: result.setdefault("diff", _write(tmp, model, batch, meta)))
    return result["diff"]
