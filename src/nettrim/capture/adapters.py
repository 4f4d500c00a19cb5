"""Views of a prunable module as the matrix layer ``Z = X W^T + b`` the solvers work on."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import NettrimError


class LinearAdapter:
    """nn.Linear: X is the input (rows = samples, leading dims flattened), Z the output."""

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


ADAPTERS: dict[type, type] = {nn.Linear: LinearAdapter}


def adapter_for(module: nn.Module, name: str):
    for cls, adapter in ADAPTERS.items():
        if isinstance(module, cls):
            return adapter(module)
    raise NettrimError(f"layer '{name}' ({type(module).__name__}) has no pruning adapter")
