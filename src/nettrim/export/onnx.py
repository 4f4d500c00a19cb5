"""ONNX export, checked with onnxruntime against the PyTorch model before the file is kept.

The graph has one input ``input`` (batch axis dynamic) and one output ``logits``. The ONNX
metadata (``metadata_props``) records ``nettrim.arch``, ``nettrim.arch_kwargs`` (JSON),
``nettrim.sample_shape`` and ``nettrim.onnxruntime_max_abs_diff``: the largest absolute
difference between onnxruntime's and PyTorch's outputs on the sample batch.
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
from ..report.io import atomic_write

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


def max_abs_diff(path, model: nn.Module, sample: torch.Tensor) -> tuple[float, float]:
    """``(max |ort - torch|, max |torch|)`` of the outputs on ``sample``."""
    with torch.no_grad():
        want = model(sample).numpy()
    got = session(path).run(None, {"input": sample.numpy()})[0]
    return float(np.abs(got - want).max()), float(np.abs(want).max())


def _write(tmp: str, model: nn.Module, sample: torch.Tensor, meta: dict) -> float:
    onnx, _ = _modules()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (sample,), tmp, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    diff, scale = max_abs_diff(tmp, model, sample)
    require(diff <= RTOL * max(1.0, scale),
            f"onnxruntime disagrees with PyTorch by {diff:.3g} (outputs up to {scale:.3g}); "
            "the ONNX file was not written")
    graph = onnx.load(tmp)
    for key, value in dict(meta, onnxruntime_max_abs_diff=repr(diff)).items():
        graph.metadata_props.add(key=f"nettrim.{key}", value=str(value))
    onnx.save(graph, tmp)
    return diff


def write_onnx(path, model: nn.Module, arch: str, arch_kwargs: dict,
               sample: torch.Tensor) -> tuple[Path, float]:
    """Atomically write ``model`` as ONNX once onnxruntime reproduces it on ``sample``.

    Returns ``(path, max_abs_diff)``. The model itself is not modified (a copy in eval mode
    is exported).
    """
    _modules()
    model = copy.deepcopy(model).cpu().eval()
    sample = sample.detach().cpu()
    meta = {"arch": arch, "arch_kwargs": json.dumps(arch_kwargs, sort_keys=True),
            "sample_shape": json.dumps(list(sample.shape))}
    result = {}
    written = atomic_write(path, lambda tmp: result.setdefault("diff", _write(tmp, model, sample, meta)))
    return written, result["diff"]
