"""Capture one layer's inputs and outputs with forward hooks, batch by batch.

Hooks see a layer through whatever graph feeds it (residual adds, attention, custom code), so
capturing from a partly pruned copy gives the pruned network's inputs to that layer. The fused
transformer fast path is off while capturing (``plain_forward``): it would skip the Linear
modules of an eval-mode ``nn.TransformerEncoderLayer``.

Only the requested layer's matrices are kept; the forward pass is cut short right after that
layer, so capture never holds more than X (P x N) and Z (P x M) of one layer.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import require
from .adapters import adapter_for
from .dataflow import plain_forward


class _Stop(Exception):
    pass


def capture_layer(model: nn.Module, name: str, inputs: torch.Tensor,
                  batch_size: int = 1024, **adapter_opts) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs X (P, N) and pre-activation outputs Z (P, M) of layer ``name`` on ``inputs``.

    ``adapter_opts`` go to the layer's adapter (see ``adapter_for``), e.g. ``max_rows`` and
    ``seed`` for the patch rows of a Conv2d; the number of images is passed as ``n_images``.
    """
    module = model.get_submodule(name)
    adapter = adapter_for(module, name, n_images=int(inputs.shape[0]), **adapter_opts)
    xs, zs = [], []

    def hook(mod, args, out):
        X, Z = adapter.matrices(args[0].detach(), out.detach())
        xs.append(X.clone())
        zs.append(Z.clone())
        raise _Stop

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), plain_forward():
            for start in range(0, inputs.shape[0], batch_size):
                try:
                    model(inputs[start:start + batch_size])
                except _Stop:
                    pass
    finally:
        handle.remove()
        model.train(was_training)
    require(bool(xs), f"layer '{name}' ({type(module).__name__}) did not run as a module in the "
                      f"forward pass: it cannot be captured; list layers with nettrim.capture.trace_layers")
    return torch.cat(xs), torch.cat(zs)


def network_output(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The model's output on ``inputs`` in eval mode, batched."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), plain_forward():
            return torch.cat([model(inputs[s:s + batch_size])
                              for s in range(0, inputs.shape[0], batch_size)])
    finally:
        model.train(was_training)
