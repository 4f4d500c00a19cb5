"""Hard thresholding, the magnitude baseline (Pitas, Davies, Vandergheynst 2019,
"Revisiting hard thresholding for DNN pruning").

For a layer with parameters theta = (W, b) and a budget of k non-zeros, hard thresholding is

    H_k(theta)_j = theta_j  if |theta_j| is among the k largest of |theta|,  else 0,

with no retraining and no change to the surviving values. The global variant applies ``H_k``
to the concatenation of every layer's parameters, i.e. one magnitude cutoff for the network.

Selection is an exact top-k: a stable descending sort of |theta| on the flattened parameters,
so ties go to the lower flat index (weights before the bias, earlier layers first) and the
result is the same on every run and every device. Inputs are never modified.
"""
from __future__ import annotations

import numbers

import torch

from ..errors import NettrimError, require

Params = tuple[torch.Tensor, torch.Tensor | None]


def keep_count(n_total: int, sparsity: float) -> int:
    """Non-zeros kept at a sparsity: k = round(n_total (1 - sparsity)), 0 <= sparsity < 1.

    ``round`` is Python's (halves go to the even integer).
    """
    n_total = as_count(n_total, 2**63 - 1, "n_total")
    require(0.0 <= float(sparsity) < 1.0, f"sparsity must lie in [0, 1), got {sparsity!r}")
    return int(round(n_total * (1.0 - float(sparsity))))


def as_count(keep, total: int, name: str = "keep") -> int:
    """``keep`` as a Python int in [0, total] (any integral type), else NettrimError."""
    require(isinstance(keep, numbers.Integral) and not isinstance(keep, bool),
            f"{name} must be an integer, got {keep!r}")
    require(0 <= int(keep) <= total, f"{name} must lie in [0, {total}], got {keep}")
    return int(keep)


def top_k_mask(values: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask of the ``keep`` largest entries of the 1-D ``values``; ties to the lower index."""
    require(values.dim() == 1, "top_k_mask expects a 1-D tensor")
    keep = as_count(keep, values.numel())
    order = torch.sort(values, descending=True, stable=True).indices
    mask = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    mask[order[:keep]] = True
    return mask


def threshold_layer(weight: torch.Tensor, bias: torch.Tensor | None, keep: int, *,
                    include_bias: bool = True) -> Params:
    """H_k on one layer: keep the ``keep`` largest |w| (and |b| when ``include_bias``), zero the rest.

    With ``include_bias=False`` the bias is returned unchanged (a copy) and ``keep`` counts
    weights only. Returns new tensors; removed entries are exact (+0.0) zeros.
    """
    _check_params(weight, bias)
    prunable = include_bias and bias is not None
    flat = torch.cat([weight.reshape(-1), bias.reshape(-1)]) if prunable else weight.reshape(-1)
    keep = as_count(keep, flat.numel())
    require(bool(torch.isfinite(flat).all()), "weights must be finite to threshold them")
    mask = top_k_mask(flat.abs(), keep)
    pruned = torch.where(mask, flat, torch.zeros_like(flat))
    new_w = pruned[: weight.numel()].reshape(weight.shape)
    if bias is None:
        return new_w, None
    return new_w, pruned[weight.numel():].clone() if prunable else bias.clone()


def global_threshold(params: list[Params], sparsity: float, include_bias: bool = True) -> list[Params]:
    """H_k on the concatenation of all layers, k = round(total (1 - sparsity)).

    ``total`` counts every weight, plus every bias when ``include_bias`` (otherwise biases are
    returned unchanged). One cutoff for the whole network; layers may end up at very different
    sparsities. Layers may live on different devices; each result stays on its layer's device.
    """
    require(isinstance(params, (list, tuple)) and len(params) > 0,
            "params must be a non-empty list of (weight, bias)")
    flats = []
    for item in params:
        require(isinstance(item, (list, tuple)) and len(item) == 2,
                "each entry of params must be (weight, bias)")
        w, b = item
        _check_params(w, b)
        parts = [w.reshape(-1)] + ([b.reshape(-1)] if include_bias and b is not None else [])
        flats.append(torch.cat(parts))
    dev = flats[0].device
    values = torch.cat([f.abs().to(dev) for f in flats])
    require(bool(torch.isfinite(values).all()), "weights must be finite to threshold them")
    mask = top_k_mask(values, keep_count(values.numel(), sparsity))
    out, start = [], 0
    for (w, b), f in zip(params, flats):
        m = mask[start:start + f.numel()].to(f.device)
        start += f.numel()
        kept = torch.where(m, f, torch.zeros_like(f))
        new_w = kept[: w.numel()].reshape(w.shape)
        new_b = None if b is None else (kept[w.numel():].clone() if include_bias else b.clone())
        out.append((new_w, new_b))
    return out


def _check_params(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Weight is a tensor of dim >= 1; bias is None or (weight.shape[0],) on the same device."""
    if not isinstance(weight, torch.Tensor) or weight.dim() < 1:
        raise NettrimError("weight must be a tensor with at least one dimension")
    if bias is not None:
        require(isinstance(bias, torch.Tensor) and bias.shape == (weight.shape[0],),
                f"bias must have shape ({weight.shape[0]},), got {tuple(getattr(bias, 'shape', ()))}")
        require(bias.device == weight.device, "weight and bias must be on the same device")


def threshold_U(U: torch.Tensor, keep: int, *, bias: bool) -> torch.Tensor:
    """H_k on U (N', M; the bias last row when ``bias``): the ``keep`` largest |U_ij| kept, in
    the order of :func:`threshold_layer` (the weights of every neuron, then the biases)."""
    weight, b = (U[:-1].T, U[-1]) if bias else (U.T, None)
    w, b = threshold_layer(weight, b, keep)
    return torch.cat([w.T, b[None, :]]) if bias else w.T.contiguous()
