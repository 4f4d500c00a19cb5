"""Fold eval-mode BatchNorm2d layers into the Conv2d that feeds them.

In eval mode ``bn(conv(x)) = conv'(x)`` with ``W' = W * s`` (per output channel) and
``b' = (b - mean) * s + beta``, ``s = gamma / sqrt(var + eps)``. Folding before pruning makes
``Conv -> BN -> ReLU`` a plain ``Conv -> ReLU`` layer whose target is the ReLU output, so the
Net-Trim program and Proposition 1 apply to it unchanged; the BN is replaced by ``nn.Identity``.

A pair is folded only when the BN's input is exactly the conv's output and nothing else uses
that output. This is read from a ``torch.fx`` trace of the model when one is possible, else
from adjacency inside ``nn.Sequential`` containers (where it holds by construction).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, list[tuple[str, str]]]:
    """A deep copy of ``model`` with every foldable (Conv2d, BatchNorm2d) pair folded.

    Returns ``(model_copy, folded)`` where ``folded`` lists the ``(conv_name, bn_name)`` pairs
    folded, in model order; each such BN is an ``nn.Identity`` in the copy and its conv has a
    bias (created if it had none). BNs without running statistics (``track_running_stats=False``,
    which normalize with batch statistics even in eval mode) are left alone. The copy is in
    eval mode; it computes exactly what ``model.eval()`` computes (up to float rounding).
    The input model is not modified.
    """
    folded_model = copy.deepcopy(model).eval()
    pairs = _pairs(folded_model)
    done = []
    for conv_name, bn_name in pairs:
        conv = folded_model.get_submodule(conv_name)
        bn = folded_model.get_submodule(bn_name)
        if bn.running_mean is None or bn.running_var is None or bn.num_features != conv.out_channels:
            continue
        _fold(conv, bn)
        _set_submodule(folded_model, bn_name, nn.Identity())
        done.append((conv_name, bn_name))
    return folded_model, done


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
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


def _pairs(model: nn.Module) -> list[tuple[str, str]]:
    try:
        return _pairs_fx(model)
    except Exception:  # not traceable (data-dependent control flow, ...): Sequential adjacency
        return _pairs_sequential(model)


def _pairs_fx(model: nn.Module) -> list[tuple[str, str]]:
    from torch import fx

    graph = fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    pairs = []
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0] if node.args else None
        if not (isinstance(src, fx.Node) and src.op == "call_module"
                and isinstance(modules.get(src.target), nn.Conv2d)):
            continue
        if len(src.users) == 1 and calls[src.target] == 1 and calls[node.target] == 1:
            pairs.append((src.target, node.target))
    return pairs


def _pairs_sequential(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Sequential):
            continue
        children = list(mod.named_children())
        for (a, ma), (b, mb) in zip(children, children[1:]):
            if isinstance(ma, nn.Conv2d) and isinstance(mb, nn.BatchNorm2d):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + a, prefix + b))
    return pairs


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
