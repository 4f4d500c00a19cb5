"""Fold eval-mode BatchNorm layers into the Conv2d (BatchNorm2d) or Linear (BatchNorm1d) feeding them.

In eval mode ``bn(conv(x)) = conv'(x)`` with ``W' = W * s`` (per output channel) and
``b' = (b - mean) * s + beta``, ``s = gamma / sqrt(var + eps)``; the same holds for a Linear
and a BatchNorm1d over its output features. Folding before pruning makes ``Conv -> BN -> ReLU``
a plain ``Conv -> ReLU`` layer whose target is the ReLU output, so the Net-Trim program and
Proposition 1 apply to it unchanged; the BN is replaced by ``nn.Identity``. Which pairs fold
is the model graph's rule (``nettrim.graph.model``).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import NettrimError


def fold_batchnorm(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """A deep copy of ``model`` (eval mode) with every (layer, BatchNorm) pair of ``pairs``
    folded: each such BN an ``nn.Identity``, its layer given a bias if it had none. It computes
    what ``model.eval()`` computes (up to float rounding); ``model`` is not modified."""
    folded = copy.deepcopy(model).eval()
    for layer_name, bn_name in pairs:
        _fold(folded.get_submodule(layer_name), folded.get_submodule(bn_name))
        set_submodule(folded, bn_name, nn.Identity())
    return folded


@torch.no_grad()
def restore_batchnorm(folded_model: nn.Module, model: nn.Module,
                      folded: list[tuple[str, str]]) -> nn.Module:
    """``folded_model`` (from :func:`fold_batchnorm` of ``model``, weights since changed) back
    in ``model``'s architecture: each folded BN is put back as a BN that only adds the layer's
    folded bias (weight 1, bias b', running mean 0, running variance 1 - eps, so that in eval
    mode it maps x to x + b'), and a layer that had no bias loses the one the fold gave it.
    The model computes what ``folded_model`` computes (up to float rounding) and has the same
    classes and state-dict keys as ``model``, so it saves and loads as that architecture."""
    out = folded_model
    for layer_name, bn_name in folded:
        layer, original = out.get_submodule(layer_name), model.get_submodule(layer_name)
        bn = copy.deepcopy(model.get_submodule(bn_name))
        shift = layer.bias.detach().clone()
        if original.bias is None:
            layer.bias = None
        else:
            shift.zero_()  # the layer keeps its folded bias; the BN adds nothing
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        if bn.weight is not None:
            bn.weight.data.fill_(1.0)
        if bn.bias is not None:
            bn.bias.data.copy_(shift.to(bn.bias.dtype))
        elif bool(shift.any()):
            raise NettrimError(f"BatchNorm '{bn_name}' has no bias to carry the folded shift: "
                               "give it affine=True or leave this layer out (layers=...)")
        set_submodule(out, bn_name, bn.eval())
    return out


@torch.no_grad()
def _fold(conv: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    s = gamma / torch.sqrt(var + bn.eps)
    w = conv.weight.double() * s.reshape(-1, *([1] * (conv.weight.ndim - 1)))
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
    b = (b - mean) * s + beta
    conv.weight.copy_(w.to(conv.weight.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(b.to(conv.weight.dtype))
    else:
        conv.bias.copy_(b.to(conv.bias.dtype))


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
