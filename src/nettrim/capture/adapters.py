"""Views of a prunable module as the matrix layer ``Z = X W^T + b`` the solvers work on."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import NettrimError
from .conv import ConvAdapter


class LinearAdapter:
    """nn.Linear: X is the input (rows = samples, leading dims flattened), Z the output."""

    options: tuple[str, ...] = ()  # capture options this adapter accepts (see ``adapter_for``)

    def __init__(self, module: nn.Linear):
        self.module = module

    def matrices(self, inp: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return inp.reshape(-1, inp.shape[-1]), out.reshape(-1, out.shape[-1])

    def get(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        m = self.module
        return m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone()

    def set(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        m = self.module
        with torch.no_grad():
            m.weight.copy_(weight.reshape(m.weight.shape).to(m.weight))
            if m.bias is not None and bias is not None:
                m.bias.copy_(bias.to(m.bias))


ADAPTERS: dict[type, type] = {nn.Linear: LinearAdapter, nn.Conv2d: ConvAdapter}


def adapter_for(module: nn.Module, name: str, **opts):
    """The adapter of ``module``. ``opts`` are capture options shared by every layer (e.g.
    ``max_rows``, ``seed``, ``n_images`` for Conv2d); each adapter receives only those named in
    its ``options`` attribute, the others are ignored (a Linear layer has none)."""
    for cls, adapter in ADAPTERS.items():
        if isinstance(module, cls):
            accepted = getattr(adapter, "options", ())
            return adapter(module, **{k: v for k, v in opts.items() if k in accepted and v is not None})
    raise NettrimError(f"layer '{name}' ({type(module).__name__}) has no pruning adapter")
