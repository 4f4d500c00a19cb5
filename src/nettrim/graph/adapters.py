"""Views of a prunable module as the matrix layer ``Z = X W^T + b`` the programs work on.

An adapter gives the layer's rows from a forward hook (``matrices``: inputs X (r, N) and
pre-activations Z (r, M)) and reads and writes its weights, W (M, N) and b (M,) or as U
(N', M) with the bias as last row (``get_U``, ``set_U``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import NettrimError
from .conv import ConvAdapter
from .trace import is_hf_conv1d


class LinearAdapter:
    """nn.Linear: X is the input (rows = samples, leading dims flattened), Z the output."""

    options: tuple[str, ...] = ()  # capture options this adapter accepts (see ``adapter_for``)

    def __init__(self, module: nn.Linear):
        self.module = module

    def matrices(self, inp: torch.Tensor, out: torch.Tensor,
                 inputs: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        X = inp.reshape(-1, inp.shape[-1]) if inputs else None
        return X, out.reshape(-1, out.shape[-1])

    def get(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        m = self.module
        return m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone()

    def set(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        m = self.module
        with torch.no_grad():
            m.weight.copy_(weight.reshape(m.weight.shape).to(m.weight))
            if m.bias is not None and bias is not None:
                m.bias.copy_(bias.to(m.bias))


class Conv1DAdapter(LinearAdapter):
    """Hugging Face ``Conv1D`` (GPT-2): y = x W + b with W stored (in, out), i.e. a Linear
    whose weight is the transpose."""

    def get(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        m = self.module
        return m.weight.detach().T.clone(), None if m.bias is None else m.bias.detach().clone()

    def set(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        m = self.module
        with torch.no_grad():
            m.weight.copy_(weight.T.to(m.weight))
            if m.bias is not None and bias is not None:
                m.bias.copy_(bias.to(m.bias))


def adapter_for(module: nn.Module, name: str, **opts):
    """The adapter of ``module``. ``opts`` are capture options shared by every layer (e.g.
    ``max_rows``, ``seed``, ``n_images`` for Conv2d); each adapter receives only those named in
    its ``options`` attribute."""
    if isinstance(module, nn.Linear):
        return LinearAdapter(module)
    if isinstance(module, nn.Conv2d):
        return ConvAdapter(module, **{k: v for k, v in opts.items() if k in ConvAdapter.options and v is not None})
    if is_hf_conv1d(module):
        return Conv1DAdapter(module)
    raise NettrimError(f"layer '{name}' ({type(module).__name__}) has no pruning adapter")


def get_U(module: nn.Module, name: str = "") -> torch.Tensor:
    """The layer's weights as U (N', M): W^T with the bias as last row when it has one."""
    weight, bias = adapter_for(module, name).get()
    U = weight.T
    return torch.cat([U, bias.reshape(1, -1)]) if bias is not None else U.contiguous()


def set_U(module: nn.Module, U: torch.Tensor, name: str = "") -> None:
    """Write U (N', M) back into the layer (cast to its dtype)."""
    has_bias = getattr(module, "bias", None) is not None
    weight, bias = (U[:-1].T, U[-1]) if has_bias else (U.T, None)
    adapter_for(module, name).set(weight.contiguous(), bias)


def has_bias(module: nn.Module) -> bool:
    return getattr(module, "bias", None) is not None
