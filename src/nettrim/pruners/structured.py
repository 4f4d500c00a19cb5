"""Structured Net-Trim: whole units removed, the network rebuilt smaller (docs/structured.md).

``NetTrim(structure="units")`` solves every layer with the group-l1 objective
sum_g sqrt(|g|) ||U_g||_F, one group per INPUT unit of the layer: a neuron of the layer below
(its input feature, or, for a Linear layer behind a Flatten, the H x W features of one channel)
or an input channel of a Conv2d (all the kernel weights that read it). A group that is zero
means that no output of the layer reads that unit.

After the layers are solved, :func:`remove_units` rebuilds a plain chain smaller:

* a hidden unit whose outgoing weights (its group in the next layer) are all zero is removed:
  the layer below loses its output row and bias entry, the layer above loses the input, a
  BatchNorm between them loses the channel (or, behind a Flatten, its features);
* a constant unit (no incoming weights: it outputs its bias, or 0, at every position) whose
  image through the modules between the layers is zero loses its outgoing weights; when that
  image is not zero it is folded into the next layer's bias (a Linear next layer, or a Conv2d
  without padding reading a spatially constant map), and the unit is then removed;
* the two rules are applied until nothing changes; every hidden layer keeps at least one unit.

Both rules leave the network's function unchanged on every input (up to float rounding in
the folded biases). A *plain chain* is an ``nn.Sequential`` (nested ones allowed) of Linear and
Conv2d layers with only channel-wise or element-wise modules between two of them (ReLU,
Dropout, Identity, BatchNorm, max/average pooling) and at most a Flatten; there the data flow
is the order of the modules, so the rewiring is exact by construction. Any other model keeps
its zero groups as zeros, with the reason in the report.

Each layer's certificate is then measured again on the smaller network (:func:`recertify`):
its response on its inputs (the smaller network's own, in cascade), restricted to the units it
keeps, against the program it was solved under restricted to those units.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..capture import LayerSpec, adapter_for, capture_layer
from ..errors import require
from .base import LayerJob
from .certificate import check_layer

STRUCTURES = ("weights", "units")
LAYERS = (nn.Linear, nn.Conv2d)
MAP_WISE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
            nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity)  # act on each channel apart
FEATURE_WISE = (nn.ReLU, nn.Dropout, nn.Identity, nn.BatchNorm1d)  # act on each feature apart


@dataclass
class Chain:
    """A plain chain (module doc), or why the model is not one (``reason``).

    ``leaves``: (name, module) in forward order; ``positions``: index in ``leaves`` of each
    prunable layer; ``block[i]``: input features of layer i+1 per unit of layer i (1, or the
    H x W of a channel behind a Flatten); ``out_shapes[i]``: layer i's output shape on one input.
    """

    reason: str | None = None
    leaves: list = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    block: list[int] = field(default_factory=list)
    out_shapes: list[tuple] = field(default_factory=list)

    def between(self, i: int) -> list[tuple[str, nn.Module]]:
        return self.leaves[self.positions[i] + 1:self.positions[i + 1]]


def _leaves(module: nn.Module, prefix: str = ""):
    """(name, module) of an ``nn.Sequential`` tree in forward order; None when a container of
    another type (whose forward may do anything) is met."""
    out = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            inner = _leaves(child, full + ".")
            if inner is None:
                return None
            out += inner
        elif any(True for _ in child.children()):
            return None
        else:
            out.append((full, child))
    return out


def plain_chain(model: nn.Module, specs: list[LayerSpec], example: torch.Tensor) -> Chain:
    """The model as a plain chain (module doc), or a Chain whose ``reason`` says why not."""
    if type(model) is not nn.Sequential:
        return Chain(f"{type(model).__name__} is not an nn.Sequential: its forward may route units anywhere")
    leaves = _leaves(model)
    if leaves is None:
        return Chain("a container inside the model is not an nn.Sequential")
    positions = [k for k, (_, m) in enumerate(leaves) if isinstance(m, LAYERS)]
    names = [leaves[k][0] for k in positions]
    if names != [s.name for s in specs]:
        return Chain("the prunable layers do not all run once, in module order")
    shapes, modes = [], [m.training for _, m in leaves]
    try:
        with torch.no_grad():
            x = example[:1]
            for _, m in leaves:
                x = m.eval()(x)
                shapes.append(tuple(x.shape))
    finally:  # the caller's model keeps its modes
        for (_, m), mode in zip(leaves, modes):
            m.train(mode)
    chain = Chain(None, leaves, positions, [], [shapes[k] for k in positions])
    for i in range(len(positions) - 1):
        block, why = _pair(chain, i, shapes)
        if why:
            return Chain(f"between '{names[i]}' and '{names[i + 1]}': {why}")
        chain.block.append(block)
    return chain


def _pair(chain: Chain, i: int, shapes) -> tuple[int, str | None]:
    """(features per unit as layer i+1 reads them, or why the pair is not plain)."""
    first, nxt = chain.leaves[chain.positions[i]][1], chain.leaves[chain.positions[i + 1]][1]
    if len(chain.out_shapes[i]) not in (2, 4):
        return 0, f"layer output of shape {chain.out_shapes[i]}: only (batch, features) or (batch, C, H, W)"
    maps = isinstance(first, nn.Conv2d)
    block = 1
    for k, (name, m) in enumerate(chain.between(i), start=chain.positions[i] + 1):
        if isinstance(m, nn.Flatten) and maps:
            if not (m.start_dim == 1 and m.end_dim == -1):
                return 0, f"'{name}' flattens other dimensions than (C, H, W)"
            before = shapes[k - 1]
            block, maps = math.prod(before[2:]), False
        elif isinstance(m, nn.Flatten) and not maps:
            continue  # a Flatten of (batch, features) changes nothing
        elif not isinstance(m, MAP_WISE if maps else FEATURE_WISE):
            return 0, f"'{name}' ({type(m).__name__}) is not a channel-wise or element-wise module"
    if isinstance(nxt, nn.Conv2d):
        if not maps or nxt.groups != 1:
            return 0, "a Conv2d reads flattened features or has groups"
        return 1, None
    if maps:
        return 0, "a Linear reads feature maps"
    units = chain.out_shapes[i][1]
    if nxt.in_features != units * block:
        return 0, f"the Linear reads {nxt.in_features} features, not {units} x {block}"
    return block, None


def input_groups(model: nn.Module, specs: list[LayerSpec], chain: Chain) -> dict[str, torch.Tensor]:
    """Per layer name, the (N,) input unit of each input feature (column of its X): a Conv2d's
    patch column (C_in, kh, kw) belongs to its input channel; a Linear's feature to the unit of
    the layer below that produces it (a channel behind a Flatten), or to itself."""
    groups = {}
    for i, spec in enumerate(specs):
        m = model.get_submodule(spec.name)
        if isinstance(m, nn.Conv2d):
            groups[spec.name] = torch.arange(m.in_channels).repeat_interleave(math.prod(m.kernel_size))
        else:
            block = chain.block[i - 1] if chain.reason is None and i > 0 else 1
            groups[spec.name] = torch.arange(m.in_features) // block
    return groups


# -- surgery -----------------------------------------------------------------------------------


@dataclass
class Surgery:
    """The smaller model and what was cut: ``kept[name]`` the output units (indices into the
    original layer) each layer keeps; ``widths`` the units before and after (the first entry
    is the network's input, features or channels); ``folded`` the constant units whose value
    moved into the next layer's bias; ``placeholders`` the layers none of whose units is read,
    which keep one unit (the first, weights and bias zeroed) to stay a layer."""

    model: nn.Module
    kept: dict[str, torch.Tensor]
    widths: dict
    folded: dict[str, list[int]]
    placeholders: dict[str, int] = field(default_factory=dict)


def _units(w: torch.Tensor, n_units: int) -> torch.Tensor:
    """A weight (R, N) or (R, C, kh, kw) as (R, n_units, features per unit)."""
    return w.reshape(w.shape[0], n_units, math.prod(w.shape[1:]) // n_units)


@torch.no_grad()
def remove_units(model: nn.Module, chain: Chain) -> Surgery:
    """The smaller copy of ``model`` (a plain chain) without its unread units (module doc)."""
    require(chain.reason is None, f"units can only be removed from a plain chain: {chain.reason}")
    model = copy.deepcopy(model).eval()
    layers = [chain.leaves[k][1] for k in chain.positions]
    names = [chain.leaves[k][0] for k in chain.positions]
    W = [m.weight.detach().clone() for m in layers]
    b = [None if m.bias is None else m.bias.detach().clone() for m in layers]
    L = len(layers)
    alive = [torch.ones(W[i].shape[0], dtype=torch.bool) for i in range(L)]
    folded: dict[str, list[int]] = {}
    changed = True
    while changed:
        changed = False
        for i in range(L - 1):
            n = W[i].shape[0]
            inputs_alive = alive[i - 1] if i > 0 else None
            incoming = W[i] if inputs_alive is None else _units(W[i], len(inputs_alive))[:, inputs_alive]
            constant = alive[i] & (incoming.reshape(n, -1) == 0).all(1)
            outgoing = _units(W[i + 1][alive[i + 1]], n) != 0  # (rows alive, n, features)
            read = outgoing.any(2).any(0)
            fold = constant & read
            if fold.any():
                done = _fold_constants(chain, i, fold, layers[i], b, W)
                if done:
                    folded.setdefault(names[i], []).extend(done)
                    changed = True
                    read = (_units(W[i + 1][alive[i + 1]], n) != 0).any(2).any(0)
            dead = alive[i] & ~read
            if dead.any():
                alive[i] = alive[i] & read
                changed = True
    placeholders = {}
    for i in range(L - 1):
        if not alive[i].any():  # an empty layer is no layer: keep one unit that nothing reads
            alive[i][0] = True
            W[i][0] = 0
            if b[i] is not None:
                b[i][0] = 0
            placeholders[names[i]] = 0
    widths = {"layers": names,
              "before": [_in_units(layers[0])] + [int(w.shape[0]) for w in W],
              "after": [_in_units(layers[0])] + [int(a.sum()) for a in alive]}
    _rebuild(model, chain, names, layers, W, b, alive)
    kept = {names[i]: alive[i].nonzero().flatten() for i in range(L)}
    return Surgery(model, kept, widths, folded, placeholders)


def _in_units(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def _fold_constants(chain: Chain, i: int, fold: torch.Tensor, layer: nn.Module, b, W) -> list[int]:
    """Move the constant units ``fold`` of layer i into layer i+1 where exact; their outgoing
    weights become zero. Returns the units folded."""
    shape = (1, *chain.out_shapes[i][1:])
    pre = torch.zeros(shape, dtype=W[i].dtype)
    if b[i] is not None:
        pre += b[i].reshape(1, -1, *([1] * (len(shape) - 2)))
    x = pre
    for _, m in chain.between(i):
        x = m(x)
    nxt_conv = W[i + 1].ndim == 4
    done = []
    for u in fold.nonzero().flatten().tolist():
        if nxt_conv:
            value = x[0, u]
            w = W[i + 1][:, u]
            if bool((value == 0).all()):
                contribution = None
            elif bool((value == value.flatten()[0]).all()) and _no_padding(chain, i + 1) and b[i + 1] is not None:
                contribution = w.sum((1, 2)) * value.flatten()[0]
            else:
                continue
            W[i + 1][:, u] = 0
        else:
            block = chain.block[i]
            value = x.reshape(-1)[u * block:(u + 1) * block]
            cols = slice(u * block, (u + 1) * block)
            if bool((value == 0).all()):
                contribution = None
            elif b[i + 1] is not None:
                contribution = W[i + 1][:, cols] @ value
            else:
                continue
            W[i + 1][:, cols] = 0
        if contribution is not None:
            b[i + 1] += contribution.to(b[i + 1])
        done.append(u)
    return done


def _no_padding(chain: Chain, i: int) -> bool:
    m = chain.leaves[chain.positions[i]][1]
    return m.padding == "valid" or all(p == 0 for p in m.padding)


def _columns(alive: torch.Tensor, block: int) -> torch.Tensor:
    """The features (unit u -> u*block .. u*block+block-1) of the alive units."""
    return alive.repeat_interleave(block)


def _rebuild(model, chain, names, layers, W, b, alive) -> None:
    """Replace every layer (and BatchNorm between two layers) by its smaller copy in ``model``."""
    L = len(layers)
    for i, (name, layer) in enumerate(zip(names, layers)):
        rows = alive[i] if i < L - 1 else torch.ones(W[i].shape[0], dtype=torch.bool)
        w = W[i][rows]
        if i > 0:
            keep_in = alive[i - 1] if isinstance(layer, nn.Conv2d) else _columns(alive[i - 1], chain.block[i - 1])
            w = w[:, keep_in]
        new = _resized(layer, w, None if b[i] is None else b[i][rows])
        _set(model, name, new)
        if i < L - 1:
            maps = isinstance(layer, nn.Conv2d)
            for bn_name, m in chain.between(i):
                if isinstance(m, nn.Flatten):
                    maps = False
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    keep = alive[i] if maps or not isinstance(layer, nn.Conv2d) else _columns(alive[i], chain.block[i])
                    _set(model, bn_name, _sliced_norm(m, keep))


def _resized(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    kw = dict(bias=bias is not None, dtype=weight.dtype, device=weight.device)
    if isinstance(layer, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], **kw)
    else:
        new = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, layer.stride,
                        layer.padding, layer.dilation, 1, padding_mode=layer.padding_mode, **kw)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new.train(layer.training)


def _sliced_norm(bn, keep: torch.Tensor):
    new = type(bn)(int(keep.sum()), bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                   device=bn.weight.device if bn.affine else None)
    with torch.no_grad():
        for pname in ("weight", "bias"):
            if getattr(bn, pname) is not None:
                getattr(new, pname).copy_(getattr(bn, pname)[keep])
        for bname in ("running_mean", "running_var"):
            if getattr(bn, bname) is not None:
                getattr(new, bname).copy_(getattr(bn, bname)[keep])
        if bn.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


# -- certificates on the smaller model -------------------------------------------------------


def input_columns(layer: nn.Module, kept_inputs: torch.Tensor | None, block: int) -> torch.Tensor | None:
    """The columns of the original layer's X (patch columns of a Conv2d) that the smaller layer
    reads, for the input units ``kept_inputs`` (indices); None when it reads them all."""
    if kept_inputs is None:
        return None
    if isinstance(layer, nn.Conv2d):
        per = math.prod(layer.kernel_size)
        return (kept_inputs[:, None] * per + torch.arange(per)).flatten()
    return (kept_inputs[:, None] * block + torch.arange(block)).flatten()


def recertify(job: LayerJob, zeroed: tuple, smaller: nn.Module, name: str, kept_out: torch.Tensor,
              in_cols: torch.Tensor | None, inputs: torch.Tensor, mode: str, batch_size: int,
              capture: dict, claim: dict, placeholder: bool = False):
    """The layer's claim measured on the smaller network.

    ``job`` is the layer's job on the zeroed (full-width) network, ``zeroed`` the layer's
    (weight, bias) there: Y and Z (hence V) are those of the program the layer was solved under. The smaller layer's inputs are the
    smaller network's own (cascade, after the first layer) or the original network's restricted
    to the kept input units (parallel, and the first layer); its response on its kept outputs
    must meet the program restricted to them. Returns (Check, max |response - zeroed response|
    over the kept outputs). With ``placeholder`` the layer's one unit is read by nothing (it
    only keeps the layer a layer) and is not measured."""
    layer = smaller.get_submodule(name)
    weight, bias = adapter_for(layer, name).get()
    if placeholder:
        weight, bias, kept_out = weight[:0], None if bias is None else bias[:0], kept_out[:0]
    if mode == "cascade" and not job.first:
        rows = {"max_rows": job.X.shape[0]} if isinstance(layer, nn.Conv2d) else {}
        X = capture_layer(smaller, name, inputs, batch_size, **{**capture, **rows})[0]
    else:
        X = job.X if in_cols is None else job.X[:, in_cols]
    small = LayerJob(job.spec, weight, bias, X, job.Y[:, kept_out], job.Z[:, kept_out],
                     job.first, job.last, job.images, tuple(layer.weight.shape))
    before = job.responses(*zeroed)[0][:, kept_out]
    diff = float((small.responses(weight, bias)[0] - before).abs().max()) if before.numel() else 0.0
    check = check_layer(small, weight, bias, claim, Z=job.Z[:, kept_out])
    return check, diff


def layer_groups(job: LayerJob) -> torch.Tensor:
    """A layer's groups without a chain: a Conv2d's input channels, a Linear's input features."""
    if job.spec.kind == "conv2d" and len(job.shape) == 4:
        _, c_in, kh, kw = job.shape
        return torch.arange(c_in).repeat_interleave(kh * kw)
    return torch.arange(job.X.shape[1])


def _nnz(layer: nn.Module) -> int:
    return int((layer.weight != 0).sum()) + (0 if layer.bias is None else int((layer.bias != 0).sum()))


def finish_units(pruned: nn.Module, report, *, original: nn.Module, specs: list[LayerSpec],
                 inputs: torch.Tensor, mode: str, batch_size: int, capture: dict,
                 originals: dict | None = None) -> nn.Module:
    """The end of a ``structure="units"`` run: remove the unread units of ``pruned`` (the
    zeroed network) when it is a plain chain, measure every layer's claim again on the smaller
    network (:func:`recertify`), and record in ``report.settings``: ``widths`` (units per layer
    before and after), ``structure`` (whether the surgery ran, or why not; the kept units; the
    folded constants; the largest output difference to the zeroed network on ``inputs``).
    Returns the smaller network, or ``pruned`` itself where no surgery is possible."""
    from ..capture import has_batchnorm, fold_batchnorm, network_output
    from .network import _make_job

    chain = plain_chain(pruned, specs, inputs[:2])
    if chain.reason is not None:
        report.settings["structure"] = {"surgery": False, "reason": chain.reason}
        report.settings["widths"] = None
        return pruned
    surgery = remove_units(pruned, chain)
    smaller = surgery.model
    folded = lambda m: fold_batchnorm(m, inputs[:2])[0] if has_batchnorm(m) else m
    zeroed_f, smaller_f = folded(pruned), folded(smaller)
    names = surgery.widths["layers"]
    by_spec = {s.name: s for s in specs}
    diffs = {}
    for rep in report.layers:
        i = names.index(rep.name)
        full = zeroed_f.get_submodule(rep.name)
        kept_in = surgery.kept[names[i - 1]] if i > 0 else None
        in_cols = input_columns(full, kept_in, chain.block[i - 1] if i > 0 else 1)
        job = _make_job(original, zeroed_f, by_spec[rep.name], specs, inputs, mode, batch_size,
                        capture, originals)
        claim = {"epsilon": rep.epsilon, "info": rep.info}
        zeroed_wb = adapter_for(full, rep.name).get()
        layer = smaller_f.get_submodule(rep.name)
        rep.nnz_after = _nnz(layer)
        rep.info["units_kept"] = int(len(surgery.kept[rep.name]))
        rep.info["shape_after"] = list(layer.weight.shape)
        if rep.epsilon is None:
            continue
        check, diff = recertify(job, zeroed_wb, smaller_f, rep.name, surgery.kept[rep.name], in_cols,
                                inputs, mode, batch_size, capture, claim,
                                placeholder=rep.name in surgery.placeholders)
        diffs[rep.name] = diff
        rep.info["units_check"] = {"claim": check.claim, "measured": check.measured,
                                   "limit": check.limit, "response_max_abs_diff": diff}
        if rep.certified and not check.holds:
            rep.certified = False
            rep.info["certificate_lost"] = (f"{check.claim}: {check.measured:.4g} > {check.limit:.4g} "
                                            f"on the smaller network")
    out_small = network_output(smaller, inputs, batch_size)
    out_zeroed = network_output(pruned, inputs, batch_size)
    out_orig = network_output(original, inputs, batch_size)
    report.output_error = float((out_small - out_orig).norm())
    if report.uncertified:
        report.bound = None
    report.settings["widths"] = surgery.widths
    report.settings["structure"] = {
        "surgery": True, "kept": {k: v.tolist() for k, v in surgery.kept.items()},
        "folded": surgery.folded, "placeholders": sorted(surgery.placeholders),
        "output_max_abs_diff": float((out_small - out_zeroed).abs().max()),
        "response_max_abs_diff": diffs}
    return smaller


@torch.no_grad()
def magnitude_units(model: nn.Module, example: torch.Tensor, widths: dict[str, int],
                    norm: str = "outgoing") -> Surgery:
    """Magnitude unit pruning, structured Net-Trim's rival at the same widths: in every hidden
    layer named in ``widths``, keep that many units, those with the largest L2 norm of their
    outgoing weights (``norm="outgoing"``: the unit's group in the next layer, all the weights
    that read it) or of their incoming weights (``"incoming"``: its row or filter, bias
    excluded); the others' outgoing weights are zeroed and the units removed
    (:func:`remove_units`). No refit, no data beyond ``example`` (a batch to trace the model)."""
    from ..capture import trace_layers

    require(norm in ("outgoing", "incoming"), f"norm must be 'outgoing' or 'incoming', got {norm!r}")
    model = copy.deepcopy(model).eval()
    specs = trace_layers(model, example[:2])
    chain = plain_chain(model, specs, example[:2])
    require(chain.reason is None, f"units can only be removed from a plain chain: {chain.reason}")
    layers = [chain.leaves[k][1] for k in chain.positions]
    names = [s.name for s in specs]
    unknown = sorted(set(widths) - set(names[:-1]))
    require(not unknown, f"no hidden layer named {', '.join(unknown)}; hidden layers: {', '.join(names[:-1])}")
    for i, name in enumerate(names[:-1]):
        if name not in widths:
            continue
        n = layers[i].weight.shape[0]
        k = int(widths[name])
        require(1 <= k <= n, f"widths[{name!r}] must lie in 1..{n}, got {k}")
        nxt = layers[i + 1].weight
        if norm == "outgoing":  # (rows, n units, features per unit) -> one norm per unit
            score = _units(nxt, n).square().sum((0, 2)).sqrt()
        else:
            score = layers[i].weight.reshape(n, -1).norm(dim=1)
        drop = score.argsort(descending=True)[k:]
        nxt.view(nxt.shape[0], n, -1)[:, drop] = 0
    return remove_units(model, chain)
