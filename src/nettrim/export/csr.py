"""Run a pruned model with its fully connected weights as ``torch.sparse_csr`` matrices.

:func:`to_sparse_csr` returns a copy in which every ``nn.Linear`` is a :class:`SparseLinear`:
``y = x W^T + b`` computed as ``(W_csr @ x^T)^T + b``, a sparse-dense product whose cost
follows the non-zeros of ``W``. Other layers (convolutions included) stay as they are.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


class SparseLinear(nn.Module):
    """An ``nn.Linear`` whose weight is held as a CSR sparse matrix (inference only)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.register_buffer("weight", linear.weight.detach().to_sparse_csr())
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (self.weight @ x.reshape(-1, self.in_features).T).T
        y = y if self.bias is None else y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"nnz={self.weight.values().numel()}")


def to_sparse_csr(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every ``nn.Linear`` replaced by :class:`SparseLinear`."""
    model = copy.deepcopy(model).eval()
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, SparseLinear(child))
    return model
