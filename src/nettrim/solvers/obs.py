"""Optimal Brain Surgeon passes over a layer's Gram matrix: SparseGPT's blocked OBS.

For one layer with rows A (P x N') and weights U (N' x M; neuron m is column u_m), the error
of new weights U' measured against U is ||A (U' - U)||_F^2 = sum_m (u'_m - u_m)^T H (u'_m - u_m)
with H = A^T A = G (damped: H + damp mean(diag H) I, Frantar & Alistarh 2023). Forcing entry j
of u to zero at least cost, with the entries before j already fixed and those after j free,
costs (OBS)

    L_j = u_j^2 / [R]_jj^2,        u_(j:) -= (u_j / R_jj) R_(j, j:)

where R is the upper Cholesky factor of H^-1 (its row j is the OBS update direction restricted
to the columns still free: Frantar & Alistarh 2023, Algorithm 1). SparseGPT processes the input
coordinates j = 0..N'-1 in blocks of ``blocksize``: at the start of a block it chooses which of
the block's entries to remove from the current weights' saliencies u_j^2 / R_jj^2, then walks
the block coordinate by coordinate, applying each removal's update to the rest of the block at
once and to the later blocks lazily (one matrix product per block). The removed entries' L_j
add up to the increase of the (damped) error exactly.

Two rules choose a block's removals:

* a fraction (SparseGPT's own): the ``sparsity`` fraction of the block's M x B entries with the
  lowest saliency (rounded so that the layer's total is exact);
* a threshold: every entry whose saliency is at most ``tau`` (a layer-wide level: entries are
  removed where removing them costs least, whatever their column), the rule of the Net-Trim
  tolerance search (``nettrim.methods.nettrim``).

The bias is the coordinate of the ones column and is treated like any weight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class OBSPass:
    """The pruned weights U (N', M), exact zeros where removed, and the damped error increase
    sum of the removed L_j (``loss``)."""

    U: torch.Tensor
    loss: float


def inverse_factor(gram: torch.Tensor, damp: float) -> torch.Tensor:
    """R: the upper Cholesky factor of (G + damp mean(diag G) I)^-1 (float64), with every dead
    coordinate (a zero diagonal of G) given a unit diagonal first."""
    H = gram.double().clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    H.diagonal().add_(damp * float(H.diagonal().mean()))
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) != 0:  # not positive definite even damped: a stronger ridge
        H.diagonal().add_(1e-6 * float(H.diagonal().abs().max()) + 1e-12)
        L = torch.linalg.cholesky(H)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


def inverse_diagonal(gram: torch.Tensor, damp: float) -> torch.Tensor:
    """(N',) diag of (G + damp mean(diag G) I)^-1 (float64), dead coordinates as in
    :func:`inverse_factor`."""
    R = inverse_factor(gram, damp)
    return R.square().sum(0)


def dead_inputs(gram: torch.Tensor) -> torch.Tensor:
    """(N',) coordinates that are zero on every row: their weights do nothing on the data."""
    return gram.diagonal() == 0


def sparsegpt_pass(U: torch.Tensor, R: torch.Tensor, *, sparsity: float | None = None,
                   tau: float | torch.Tensor | None = None, blocksize: int = 128,
                   dead: torch.Tensor | None = None) -> OBSPass:
    """One blocked OBS pass (module docstring) removing a ``sparsity`` fraction of U's entries
    (per block, exact in total) or every entry of saliency <= ``tau`` (a float, or (M,) one level per neuron); ``R`` from
    :func:`inverse_factor`; entries of ``dead`` coordinates are removed first at no cost.
    U (N', M) in the computation dtype; R is cast to it."""
    assert (sparsity is None) != (tau is None)
    W = U.T.clone()  # (M, N'): SparseGPT's row layout, one row per neuron
    if isinstance(tau, torch.Tensor):  # one level per neuron (row of W)
        tau = tau.reshape(-1, 1).to(W)
    if dead is not None:
        W[:, dead] = 0
    Rc = R.to(W)
    M, N = W.shape
    loss, removed_so_far = 0.0, 0
    for i1 in range(0, N, blocksize):
        i2 = min(i1 + blocksize, N)
        block = W[:, i1:i2]
        d = Rc.diagonal()[i1:i2]
        saliency = block.square() / d.square()
        if sparsity is not None:
            count = round(sparsity * M * i2) - removed_so_far
            mask = _lowest(saliency, count)
        else:
            mask = saliency <= tau
        removed_so_far += int(mask.sum())
        errors, block_loss = _walk_block(block, Rc[i1:i2, i1:i2], mask)
        loss += block_loss
        W[:, i1:i2] = block
        W[:, i2:] -= errors @ Rc[i1:i2, i2:]
    return OBSPass(W.T.contiguous(), loss)


def _lowest(saliency: torch.Tensor, count: int) -> torch.Tensor:
    """Mask of the ``count`` lowest entries (ties to the lower flat index)."""
    flat = saliency.reshape(-1)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    count = max(0, min(int(count), flat.numel()))
    if count:
        mask[torch.sort(flat, stable=True).indices[:count]] = True
    return mask.reshape(saliency.shape)


def _walk_block(block: torch.Tensor, Rb: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Remove ``mask``'s entries of ``block`` (M, B) coordinate by coordinate, each update
    applied to the block's later coordinates (in place); returns the scaled errors (M, B) that
    the later blocks receive, and the error increase."""
    errors = torch.zeros_like(block)
    loss = 0.0
    for j in range(block.shape[1]):
        w = block[:, j]
        err = torch.where(mask[:, j], w, torch.zeros_like(w)) / Rb[j, j]
        loss += float(err.double().square().sum())
        block[:, j:] -= err[:, None] * Rb[j, j:][None, :]
        block[:, j].masked_fill_(mask[:, j], 0.0)
        errors[:, j] = err
    return errors, loss


def saliency_levels(U: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """The first-block saliencies u_j^2 / R_jj^2 of every entry (N', M), before any update:
    a guide to the range of ``tau`` (a removal's saliency grows as earlier removals update it)."""
    return U.square() / R.diagonal().to(U).square()[:, None]


def wanda_scores(U: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """Wanda's score |U_ij| ||x_i||_2 (Sun et al. 2023): the weight times the norm of its input
    coordinate over the calibration rows, sqrt(G_ii)."""
    return U.abs() * gram.diagonal().clamp_min(0).sqrt().to(U)[:, None]
