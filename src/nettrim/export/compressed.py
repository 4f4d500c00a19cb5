"""A Hugging Face transformers model as a compressed-tensors directory, its sparse weights in
the sparse-bitmask format, so that ``from_pretrained`` decompresses them on load.

The directory is what ``save_pretrained`` writes (``config.json``, safetensors weights,
``generation_config.json`` for generative models), with every targeted weight ``W`` (shape
``(d_0, ..., d_{m-1})``) replaced by four tensors under its module's name ``NAME``:

* ``NAME.shape``: int64 ``[d_0, ..., d_{m-1}]``;
* ``NAME.compressed``: the entries of ``W`` that are not zero, in row-major order, in
  ``W``'s dtype;
* ``NAME.bitmask``: uint8 of shape ``(d_0, ..., d_{m-2}, ceil(d_{m-1} / 8))``: bit ``j mod 8``
  (least significant first) of byte ``j // 8`` along the last axis is 1 exactly where
  ``W[..., j]`` is not zero;
* ``NAME.row_offsets``: int64, for each row ``W[..., :]`` (the last axis) in row-major order,
  the index in ``compressed`` of its first entry;

and ``config.json`` carrying ``quantization_config = {"quant_method": "compressed-tensors",
"sparsity_config": {"format": "sparse-bitmask", "targets": [the module names], "ignore": [],
"global_sparsity": the fraction of zeros over the targeted weights, "sparsity_structure":
"unstructured"}}``.

A weight is targeted when its module is an ``nn.Linear``, an ``nn.Conv2d`` or transformers'
``Conv1D``, it is floating point, it is not tied to another tensor (a tied output layer stays
as ``save_pretrained`` writes it, by its source) and the four tensors are smaller than the
dense weight. A negative zero comes back as +0.0, the value it equals.

Loading it back needs a transformers that still reads sparsity configs: transformers 4.x up
to 4.55 with compressed-tensors up to 0.14 (later releases dropped the sparse-bitmask
format), and ``torch_dtype="auto"`` to keep the stored dtype (the quantizer's default is
float16). A tied output layer (GPT-2's ``lm_head``) comes back equal to its source but as a
tensor of its own: the loader replaces the parameters it decompresses. :func:`read_state`
decodes a directory without transformers.
"""
from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import NettrimError, require
from . import files, state

FORMAT = "sparse-bitmask"
CONFIG = "config.json"


def _is_targetable(module: nn.Module) -> bool:
    cls = type(module)
    conv1d = cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers.")
    return isinstance(module, (nn.Linear, nn.Conv2d)) or conv1d


def encode(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four sparse-bitmask tensors of ``weight`` (see the module docstring), unprefixed."""
    w = weight.detach().cpu().contiguous()
    mask = w != 0
    counts = mask.reshape(-1, w.shape[-1]).sum(dim=1)
    return {"shape": torch.tensor(list(w.shape), dtype=torch.int64),
            "compressed": w[mask].clone(),
            "bitmask": torch.from_numpy(np.packbits(mask.numpy(), axis=-1, bitorder="little")),
            "row_offsets": torch.cumsum(counts, 0) - counts}


def decode(parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The dense weight that :func:`encode` gave ``parts`` for."""
    shape = [int(s) for s in parts["shape"].tolist()]
    mask = np.unpackbits(parts["bitmask"].numpy(), axis=-1, count=shape[-1], bitorder="little")
    mask = torch.from_numpy(mask.reshape(shape).astype(bool))
    out = torch.zeros(shape, dtype=parts["compressed"].dtype)
    out[mask] = parts["compressed"]
    return out


def _encoded_bytes(w: torch.Tensor, nnz: int) -> int:
    rows = w.numel() // max(w.shape[-1], 1)
    return nnz * w.element_size() + rows * (math.ceil(w.shape[-1] / 8) + 8) + 8 * w.ndim


def _targets(model: nn.Module, tensors: dict, ties: dict) -> list[str]:
    """Names of the modules whose weights are stored as sparse bitmasks."""
    tied = set(ties) | set(ties.values())
    out = []
    for name, module in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        w = tensors.get(key)
        if (not _is_targetable(module) or w is None or key in tied or not w.is_floating_point()
                or w.ndim < 2 or w.numel() == 0):
            continue
        if _encoded_bytes(w, int((w != 0).sum())) < w.numel() * w.element_size():
            out.append(name)
    return out


def _check_model(model: nn.Module) -> None:
    config = getattr(model, "config", None)
    require(callable(getattr(model, "save_pretrained", None)) and hasattr(config, "to_dict"),
            f"format 'compressed-tensors' is for Hugging Face transformers models (a PreTrainedModel "
            f"with a config); {type(model).__name__} is not one: use format 'sparse'")


def _save(model, directory: str, tensors: dict[str, torch.Tensor], config: dict) -> None:
    kwargs = {"state_dict": tensors}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True
    model.save_pretrained(directory, **kwargs)
    path = Path(directory) / CONFIG
    data = json.loads(path.read_text())
    data["quantization_config"] = config
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_compressed(model: nn.Module, path: Path) -> Path:
    """Write the directory ``path`` (checked with :func:`nettrim.export.files.check` for a
    directory) for the transformers ``model``; returns ``path``."""
    _check_model(model)
    tensors, ties = state.collect(model)
    targets = _targets(model, tensors, ties)
    out = dict(tensors)
    zeros = total = 0
    for name in targets:
        w = out.pop(f"{name}.weight")
        zeros, total = zeros + int((w == 0).sum()), total + w.numel()
        out.update({f"{name}.{part}": t for part, t in encode(w).items()})
    out.update({alias: out[source] for alias, source in ties.items() if source in out})
    config = {"quant_method": "compressed-tensors",
              "sparsity_config": {"format": FORMAT, "targets": targets, "ignore": [],
                                  "global_sparsity": zeros / total if total else 0.0,
                                  "sparsity_structure": "unstructured"}}
    try:
        files.replace(path, lambda tmp: _save(model, tmp, out, config), directory=True)
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        if isinstance(exc, NettrimError):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NettrimError(f"cannot write {path}: save_pretrained failed ({reason[:200]})") from None
    return path


def read_state(path) -> dict[str, torch.Tensor]:
    """The dense state dict stored in a compressed-tensors directory written by
    :func:`write_compressed` (every ``*.safetensors`` file; targeted weights decoded),
    without transformers. Tied entries ``save_pretrained`` left out stay out."""
    from safetensors.torch import load_file

    path = Path(path)
    require((path / CONFIG).is_file(), f"{path} is not a saved model directory (no {CONFIG})")
    config = json.loads((path / CONFIG).read_text()).get("quantization_config", {})
    targets = (config.get("sparsity_config") or {}).get("targets", [])
    stored: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        stored.update(load_file(str(file)))
    for name in targets:
        parts = {p: stored.pop(f"{name}.{p}") for p in ("shape", "compressed", "bitmask", "row_offsets")}
        stored[f"{name}.weight"] = decode(parts)
    return stored
