"""Exact removal of dead units between two fully connected layers.

A hidden unit m of layer l whose outgoing weights (column m of layer l+1) are all zero
contributes nothing: its incoming weights and bias can be zeroed. A unit whose incoming
weights are all zero outputs the constant relu(b_m): its contribution W_{l+1}[:, m] relu(b_m)
moves into layer l+1's bias and its outgoing weights are zeroed. The network function is
unchanged on every input; only the count of non-zeros drops.
"""
from __future__ import annotations

import torch
from torch import nn


def remove_dead_units(first: nn.Linear, second: nn.Linear) -> int:
    """Apply both rules to the pair until nothing changes; return the weights removed."""
    before = _nnz(first) + _nnz(second)
    with torch.no_grad():
        while True:
            changed = _drop_unused_units(first, second) | _fold_constant_units(first, second)
            if not changed:
                break
    return before - (_nnz(first) + _nnz(second))


def _nnz(layer: nn.Linear) -> int:
    n = int((layer.weight != 0).sum())
    return n + (int((layer.bias != 0).sum()) if layer.bias is not None else 0)


def _drop_unused_units(first: nn.Linear, second: nn.Linear) -> bool:
    unused = (second.weight == 0).all(dim=0)
    live = (first.weight != 0).any(dim=1)
    if first.bias is not None:
        live |= first.bias != 0
    hit = unused & live
    if not hit.any():
        return False
    first.weight[hit] = 0
    if first.bias is not None:
        first.bias[hit] = 0
    return True


def _fold_constant_units(first: nn.Linear, second: nn.Linear) -> bool:
    constant = (first.weight == 0).all(dim=1) & (second.weight != 0).any(dim=0)
    if first.bias is None:
        value = torch.zeros_like(constant, dtype=first.weight.dtype)
    else:
        value = first.bias.clamp_min(0)
    if second.bias is None:
        constant &= value == 0
    if not constant.any():
        return False
    if second.bias is not None:
        second.bias += second.weight[:, constant] @ value[constant]
    second.weight[:, constant] = 0
    if first.bias is not None:
        first.bias[constant] = 0
    return True
