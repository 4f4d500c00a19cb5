"""Layer-wise Optimal Brain Surgeon (Dong, Chen, Pan, NIPS 2017), one-shot and exact greedy.

For one layer with inputs as rows ``A = [X, 1]`` (P x N', the ones column only when the layer
has a bias), the layer error of a change dw of one output neuron's row w = [W_m, b_m] is

    dE = 1/2 dw^T H dw,      H = A^T A / P  (+ damp * mean(diag H) * I),

the same H for every neuron. Removing entry q (forcing w_q = 0) at least cost gives (OBS)

    L_q = w_q^2 / (2 [H^-1]_qq),          dw = -(w_q / [H^-1]_qq) H^-1 e_q .

Two variants, selected by ``greedy``:

* one-shot (``greedy=False``, the L-OBS public code): L_q is computed once for every entry of
  the layer from the original weights and the full H^-1; the layer's least salient entries are
  removed, each row applying the OBS update of its removals in order of increasing L_q with the
  current row but the SAME H^-1 -- it is never downdated, so later updates disturb earlier zeros,
  which are forced back to exactly 0 at the end.
* exact greedy (``greedy=True``, Optimal Brain Compression, Frantar & Alistarh 2022): per row,
  remove the least salient remaining entry, update the row, and downdate the inverse on the
  remaining set, Hinv <- Hinv - Hinv[:, q] Hinv[q, :] / Hinv[q, q]. Each row is run to completion
  recording L at every step; the layer budget is then split across rows OBC-style (below), and
  the final row for its removed set S is the exact constrained least-squares solution the greedy
  replay reaches, w_R = (H_RR)^-1 (H w)_R, w_S = 0 (OBS with exact downdating is this projection,
  by Pythagoras in the H inner product), solved by batched Cholesky instead of a replay (with
  the smaller of the |R| x |R| and |S| x |S| systems, see :func:`refit_rows`).

Budget split (OBC): with losses L_{m,t} of row m's t-th greedy removal, take their running max
along t (a nondecreasing cost per row), then remove the layer's cheapest steps by one global
threshold on these values; a stable sort keeps every row's selection a prefix of its order.

The greedy trace is run in chunks of rows with lazy blocked downdates: the last ``block``
removals are kept as H^-1 = H_b^-1 - V V^T and folded into an explicit matrix by one batched
GEMM; the removed coordinates are dropped from it once they are a quarter of it (every row
removes one per step, so the sizes stay equal across rows). Work per row is O(N'^3) flops, nearly
all in batched GEMMs; the per-step work is O(block N') per row.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import require
from .threshold import as_count


def layer_hessian(gram: torch.Tensor, rows: int, damp: float = 1e-2) -> torch.Tensor:
    """H = A^T A / P + damp * mean(diag(A^T A / P)) * I from the Gram matrix G = A^T A of P rows."""
    H = gram / max(rows, 1)
    H.diagonal().add_(damp * H.diagonal().mean())
    return H


def inverse_spd(H: torch.Tensor) -> torch.Tensor:
    """H^-1 through Cholesky; a singular H raises NettrimError (raise ``damp``)."""
    L, info = torch.linalg.cholesky_ex(H)
    require(int(info) == 0, "the layer Hessian A^T A / P is singular; use damp > 0")
    return torch.cholesky_inverse(L)


def obs_update(w: torch.Tensor, hinv: torch.Tensor, q: int) -> tuple[torch.Tensor, float]:
    """One OBS removal on a row: w + dw, dw = -(w_q / Hinv_qq) Hinv e_q; and L_q = w_q^2 / (2 Hinv_qq).

    The returned row has w_q exactly 0.
    """
    dq = hinv[q, q]
    new = w - (w[q] / dq) * hinv[:, q]
    new[q] = 0.0
    return new, float(w[q] ** 2 / (2 * dq))


def lobs_prune(U: torch.Tensor, gram: torch.Tensor, rows: int, keep: int, *, greedy: bool = True,
               damp: float = 1e-2, removable: torch.Tensor | None = None,
               chunk_size: int | None = None, block: int = 64) -> torch.Tensor:
    """L-OBS on one layer, keeping ``keep`` non-zeros among the layer's removable entries.

    Args:
        U: (N', M) original weights, one column per neuron (the bias last row when the layer
            has one). gram: (N', N') G = A^T A of the layer's ``rows`` calibration rows.
        keep: non-zeros kept over the whole layer (removable entries only).
        greedy: exact greedy OBS with downdates (OBC) instead of the one-shot public version.
        damp: relative Hessian damping (0 only for a well-conditioned A).
        removable: (N',) coordinates that may be removed (default all); the others are still
            part of w and H, never removed but refit by the OBS updates.
        chunk_size: rows processed together in the greedy trace / refit (memory ~ 2 chunk
            N'^2 floats); None picks it to stay near 512 MB.
        block: removals accumulated before each blocked downdate (greedy only).
    Returns the new U (N', M) in U's dtype (computed in float32 at least).
    """
    dt = torch.promote_types(U.dtype, torch.float32)
    W = U.T.to(dt).contiguous()
    H = layer_hessian(gram.to(dt), rows, float(damp))
    removable = torch.ones(W.shape[1], dtype=torch.bool, device=W.device) if removable is None else removable
    total = int(removable.sum()) * W.shape[0]
    keep = as_count(keep, total)
    n_remove = total - keep
    if n_remove == 0:
        return U.clone()
    chunk = chunk_size or max(1, int(2**29 // (2 * H.shape[0] ** 2 * H.element_size())))
    hinv = inverse_spd(H)
    if greedy:
        losses, order = greedy_trace(W, hinv, removable, chunk, block)
        counts = allocate_removals(losses, n_remove)
        new = refit_rows(W, H, hinv, _removed_mask(order, counts, W.shape[1]), chunk)
    else:
        new = _one_shot(W, hinv, removable, n_remove)
    return new.T.to(U.dtype).contiguous()


def greedy_trace(W: torch.Tensor, hinv: torch.Tensor, removable: torch.Tensor, chunk: int,
                 block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the exact greedy OBS to completion on every row of W (M, N').

    Returns losses (M, R), L of each step, and order (M, R), the coordinate removed at each
    step, R = number of removable coordinates (``removable``, (N',) bool).
    """
    parts = [_trace_chunk(W[s:s + chunk], hinv, removable, block) for s in range(0, W.shape[0], chunk)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def allocate_removals(losses: torch.Tensor, n_remove: int) -> torch.Tensor:
    """Removals per row (M,): the ``n_remove`` smallest running-max losses, prefixes per row."""
    M, R = losses.shape
    costs = torch.cummax(losses, dim=1).values.reshape(-1)
    picked = torch.sort(costs, stable=True).indices[:n_remove]
    return torch.bincount(picked // R, minlength=M)


def refit_rows(W: torch.Tensor, H: torch.Tensor, hinv: torch.Tensor, removed: torch.Tensor,
               chunk: int) -> torch.Tensor:
    """Rows minimizing (w - w0)^T H (w - w0) subject to w_S = 0 (S = ``removed``), two equal forms:

        kept side:     w_R = (H_RR)^-1 (H w0)_R                       (|R| x |R| system)
        removed side:  w = w0 - H^-1[:, S] (H^-1_SS)^-1 w0_S           (|S| x |S| system)

    Rows are sorted by |S| and solved in chunks with whichever system is smaller (padded with
    identity to the chunk's largest). Rows with nothing removed are returned exactly as given.
    """
    out = W.clone()
    n_rem = removed.sum(dim=1)
    rows = torch.sort(n_rem, stable=True).indices
    rows = rows[n_rem[rows] > 0]
    for s in range(0, rows.numel(), chunk):
        r = rows[s:s + chunk]
        rem, w0 = removed[r], W[r]
        if W.shape[1] - int(n_rem[r].min()) <= int(n_rem[r].max()):
            idx, valid = _padded_indices(~rem)
            z = _masked_solve(H, idx, valid, (w0 @ H).gather(1, idx))
            new = torch.zeros_like(w0).scatter_add(1, idx, z)
        else:
            idx, valid = _padded_indices(rem)
            z = _masked_solve(hinv, idx, valid, w0.gather(1, idx))
            new = w0 - torch.bmm(z.unsqueeze(1), hinv[idx]).squeeze(1)
        out[r] = new.masked_fill(rem, 0.0)
    return out


def _padded_indices(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the True positions of ``mask`` first, as (B, k) indices padded to the largest count."""
    k = int(mask.sum(dim=1).max())
    idx = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :k]
    valid = torch.arange(k, device=mask.device).unsqueeze(0) < mask.sum(dim=1, keepdim=True)
    return idx, valid


def _masked_solve(M: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor,
                  rhs: torch.Tensor) -> torch.Tensor:
    """Solve M[idx, idx] z = rhs per row (SPD), identity on the padding; z is 0 there."""
    K = M[idx.unsqueeze(2), idx.unsqueeze(1)]
    eye = torch.eye(idx.shape[1], dtype=M.dtype, device=M.device)
    K = torch.where(valid.unsqueeze(2) & valid.unsqueeze(1), K, eye)
    L, info = torch.linalg.cholesky_ex(K)
    require(bool((info == 0).all()), "a restricted layer Hessian is singular; use damp > 0")
    return torch.cholesky_solve((rhs * valid).unsqueeze(2), L).squeeze(2) * valid


def _trace_chunk(W: torch.Tensor, hinv: torch.Tensor, removable: torch.Tensor,
                 block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy trace for a chunk of rows; see the module docstring (lazy blocked downdates).

    Within a block, column q of the current inverse is Hb[:, q] - V^T V[:, q] with V the
    scaled columns v = Hinv[:, q] / sqrt(Hinv_qq) of the block's removals; its diagonal is kept
    exactly as d -= v^2. After the block, Hb -= V^T V (one batched GEMM). Removed coordinates
    are dropped from Hb once they are a quarter of it.
    """
    B, n = W.shape
    R = int(removable.sum())
    dev, ar = W.device, torch.arange(B, device=W.device)
    Hb = hinv.expand(B, n, n).clone()
    w, pos = W.clone(), torch.arange(n, device=dev).expand(B, n).clone()
    can, live = removable.expand(B, n).clone(), torch.ones(B, n, dtype=torch.bool, device=dev)
    losses = torch.empty(B, R, dtype=W.dtype, device=dev)
    order = torch.empty(B, R, dtype=torch.long, device=dev)
    t = 0
    while t < R:
        V = torch.zeros(B, min(block, R - t), Hb.shape[1], dtype=W.dtype, device=dev)
        d = Hb.diagonal(dim1=1, dim2=2).clone()
        with one_thread(dev):
            for k in range(V.shape[1]):
                loss, q = (w * w / (2 * d)).masked_fill(~can, math.inf).min(dim=1)
                col = Hb[ar, q] - torch.bmm(V[ar, :k, q].unsqueeze(1), V[:, :k]).squeeze(1)
                dq = col[ar, q]
                losses[:, t], order[:, t] = loss, pos[ar, q]
                w -= (w[ar, q] / dq).unsqueeze(1) * col
                V[:, k] = col / dq.sqrt().unsqueeze(1)
                d -= V[:, k] ** 2
                can[ar, q], live[ar, q] = False, False
                t += 1
        if t == R:
            break
        Hb.baddbmm_(V.transpose(1, 2), V, alpha=-1.0)
        w.masked_fill_(~live, 0.0)
        if 4 * int((~live[0]).sum()) >= live.shape[1]:
            Hb, w, pos, can, live = _compact(Hb, w, pos, can, live)
    return losses, order


def _compact(Hb, w, pos, can, live):
    """Drop the removed coordinates (the same count in every row).

    Rows are selected by index_select on the flattened batch (contiguous copies); the columns
    by the same selection on the transpose, which for the symmetric Hb is the same submatrix.
    """
    B, n = w.shape
    m = int(live[0].sum())
    idx = torch.sort((~live).to(torch.int8), dim=1, stable=True).indices[:, :m]
    flat = (idx + n * torch.arange(B, device=idx.device).unsqueeze(1)).reshape(-1)
    rows = Hb.reshape(B * n, n).index_select(0, flat).reshape(B, m, n)
    sub = rows.transpose(1, 2).reshape(B * n, m).index_select(0, flat).reshape(B, m, m)
    return sub, w.gather(1, idx), pos.gather(1, idx), can.gather(1, idx), live.gather(1, idx)


@contextmanager
def one_thread(device: torch.device):
    """Run a loop of many tiny CPU ops on one intra-op thread (restored afterwards).

    On a busy CPU, OpenMP barriers in ops on a few thousand floats cost milliseconds each; the
    per-step work of the greedy trace is far too small to gain from threads. No-op off CPU.
    """
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _one_shot(W: torch.Tensor, hinv: torch.Tensor, removable: torch.Tensor,
              n_remove: int) -> torch.Tensor:
    """L-OBS public-code variant: rank once by L = w^2 / (2 diag H^-1), update without downdates."""
    M, n = W.shape
    diag = hinv.diagonal()
    sal = (W * W / (2 * diag)).masked_fill(~removable, math.inf)
    picked = torch.sort(sal.reshape(-1), stable=True).indices[:n_remove]
    removed = torch.zeros(M * n, dtype=torch.bool, device=W.device)
    removed[picked] = True
    removed = removed.reshape(M, n)
    ranks = torch.sort(sal.masked_fill(~removed, math.inf), dim=1, stable=True).indices
    counts = removed.sum(dim=1)
    w, ar = W.clone(), torch.arange(M, device=W.device)
    with one_thread(W.device):
        for t in range(int(counts.max())):
            q = ranks[:, t]
            coef = torch.where(t < counts, w[ar, q] / diag[q], torch.zeros_like(diag[q]))
            w -= coef.unsqueeze(1) * hinv[q]
    return w.masked_fill(removed, 0.0)


def _removed_mask(order: torch.Tensor, counts: torch.Tensor, n: int) -> torch.Tensor:
    """(M, N') mask of the first counts[m] coordinates of each row's greedy order."""
    steps = torch.arange(order.shape[1], device=order.device)
    mask = torch.zeros(order.shape[0], n, dtype=torch.bool, device=order.device)
    return mask.scatter(1, order, steps.unsqueeze(0) < counts.unsqueeze(1))
