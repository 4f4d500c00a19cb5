"""Fold eval-mode BatchNorm layers into the Conv2d (BatchNorm2d) or Linear (BatchNorm1d) feeding them.

In eval mode ``bn(conv(x)) = conv'(x)`` with ``W' = W * s`` (per output channel) and
``b' = (b - mean) * s + beta``, ``s = gamma / sqrt(var + eps)``; the same holds for a Linear
and a BatchNorm1d over its output features. Folding before pruning makes ``Conv -> BN -> ReLU``
a plain ``Conv -> ReLU`` layer whose target is the ReLU output, so the Net-Trim program and
Proposition 1 apply to it unchanged; the BN is replaced by ``nn.Identity``.

A pair is folded only when the BN's input is exactly the layer's output and nothing else uses
that output. This is read from a ``torch.fx`` trace of the model when one is possible, else
from a recorded forward pass on ``example`` (``nettrim.capture.dataflow``), else from adjacency
inside ``nn.Sequential`` containers (where it holds by construction). A BatchNorm1d normalizes
dimension 1, which is the Linear's features only when the Linear's output is 2-D (samples,
features): a Linear + BatchNorm1d pair is folded only when a forward pass on ``example`` shows
that, so without ``example`` only Conv2d + BatchNorm2d pairs are folded.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


FOLDABLE = ((nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d))


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm1d or BatchNorm2d that :func:`fold_batchnorm` may fold."""
    return any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())


def fold_batchnorm(model: nn.Module, example: torch.Tensor | None = None
                   ) -> tuple[nn.Module, list[tuple[str, str]]]:
    """A deep copy of ``model`` with every foldable (Conv2d, BatchNorm2d) pair folded, and every
    (Linear, BatchNorm1d) pair whose Linear output is 2-D on ``example`` (a small input batch).

    Returns ``(model_copy, folded)`` where ``folded`` lists the ``(conv_name, bn_name)`` pairs
    folded, in model order; each such BN is an ``nn.Identity`` in the copy and its conv has a
    bias (created if it had none). BNs without running statistics (``track_running_stats=False``,
    which normalize with batch statistics even in eval mode) are left alone. The copy is in
    eval mode; it computes exactly what ``model.eval()`` computes (up to float rounding).
    The input model is not modified.
    """
    folded_model = copy.deepcopy(model).eval()
    pairs = _pairs(folded_model, example)
    linear_pairs = [bn for lin, bn in pairs if isinstance(folded_model.get_submodule(lin), nn.Linear)]
    flat = _two_dim_inputs(folded_model, example, linear_pairs) if linear_pairs else set()
    done = []
    for conv_name, bn_name in pairs:
        conv = folded_model.get_submodule(conv_name)
        bn = folded_model.get_submodule(bn_name)
        out = conv.out_features if isinstance(conv, nn.Linear) else conv.out_channels
        if bn.running_mean is None or bn.running_var is None or bn.num_features != out:
            continue
        if isinstance(conv, nn.Linear) and bn_name not in flat:
            continue
        _fold(conv, bn)
        _set_submodule(folded_model, bn_name, nn.Identity())
        done.append((conv_name, bn_name))
    return folded_model, done


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
            raise ValueError(f"BatchNorm '{bn_name}' has no bias to carry the folded shift")
        _set_submodule(out, bn_name, bn.eval())
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


def _foldable(layer, bn) -> bool:
    return any(type(layer) is a and type(bn) is b for a, b in FOLDABLE)


def _pairs(model: nn.Module, example=None) -> list[tuple[str, str]]:
    try:
        return _pairs_fx(model)
    except Exception:  # not traceable (data-dependent control flow, ...)
        pass
    if example is not None:
        try:
            return _pairs_recorded(model, example)
        except Exception:  # does not run: the pruner reports that with the module's name
            pass
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
        if node.op != "call_module" or not node.args:
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module"
                and _foldable(modules.get(src.target), modules.get(node.target))):
            continue
        if len(src.users) == 1 and calls[src.target] == 1 and calls[node.target] == 1:
            pairs.append((src.target, node.target))
    return pairs


def _pairs_recorded(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Pairs from one recorded forward pass: the BN's data input is the layer's output object
    and no other recorded operation (nor the model's output) reads it."""
    from .dataflow import record_ops

    ops, _, calls = record_ops(model, example)
    modules = dict(model.named_modules())
    pairs = []
    for i, op in enumerate(ops):
        if op.kind != "module" or not op.outputs or calls.get(op.name) != 1:
            continue
        value = op.outputs[0]
        readers = [o for o in ops[i + 1:] if value in o.inputs and not o.meta]
        if len(readers) != 1:
            continue
        bn = readers[0]
        if (bn.kind == "module" and bn.first == value and bn.inputs.count(value) == 1
                and calls.get(bn.name) == 1 and _foldable(modules[op.name], modules[bn.name])):
            pairs.append((op.name, bn.name))
    return pairs


def _two_dim_inputs(model: nn.Module, example, names: list[str]) -> set[str]:
    """The BatchNorm1d modules among ``names`` whose input is 2-D on ``example`` (none without it)."""
    if example is None:
        return set()
    from .dataflow import plain_forward

    dims: dict[str, set] = {n: set() for n in names}
    hooks = [model.get_submodule(n).register_forward_pre_hook(
        lambda mod, args, n=n: dims[n].add(args[0].ndim if args and isinstance(args[0], torch.Tensor) else -1))
        for n in names]
    try:
        with torch.no_grad(), plain_forward():
            model(example)
    except Exception:
        return set()
    finally:
        for h in hooks:
            h.remove()
    return {n for n, d in dims.items() if d == {2}}


def _pairs_sequential(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Sequential):
            continue
        children = list(mod.named_children())
        for (a, ma), (b, mb) in zip(children, children[1:]):
            if _foldable(ma, mb):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + a, prefix + b))
    return pairs


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
