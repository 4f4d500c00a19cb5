"""Golomb-Rice coding of the positions of the non-zero entries of a flattened tensor.

The positions ``p_0 < p_1 < ... < p_{n-1}`` become gaps ``g_i = p_i - p_{i-1} - 1`` (with
``p_{-1} = -1``), each split as ``g = (q << k) | r``. The code is one uint8 array made of two
bit streams, each padded with zero bits to a whole byte, most significant bit first:

1. ``n * k`` bits: every remainder ``r_i`` in ``k`` bits;
2. the quotients in unary: ``q_i`` one bits then a zero bit, for each ``i`` in order.

``k`` is chosen per tensor to minimise the length, so the code costs ``k + 1 + q`` bits per
non-zero, within a few hundredths of a bit of the entropy of an i.i.d. sparsity pattern.
Encoding and decoding are vectorised numpy (no Python loop over entries).
"""
from __future__ import annotations

import numpy as np


def gaps_of(positions: np.ndarray) -> np.ndarray:
    """Zero-run lengths before each position (``positions`` sorted, distinct, int64)."""
    return np.diff(positions, prepend=-1) - 1


def best_k(gaps: np.ndarray) -> int:
    """The Rice parameter that makes the code of ``gaps`` shortest."""
    if gaps.size == 0:
        return 0
    top = int(gaps.max()).bit_length()
    costs = [gaps.size * (k + 1) + int((gaps >> k).sum()) for k in range(top + 1)]
    return int(np.argmin(costs))


def encode(positions: np.ndarray) -> tuple[np.ndarray, int]:
    """``(code, k)``: the uint8 Rice code of the sorted int64 ``positions``."""
    gaps = gaps_of(positions.astype(np.int64, copy=False))
    k = best_k(gaps)
    low = np.zeros(0, dtype=np.uint8)
    if k:
        shifts = np.arange(k - 1, -1, -1, dtype=np.int64)
        low = np.packbits(((gaps[:, None] >> shifts) & 1).astype(np.uint8).ravel())
    q = gaps >> k
    unary = np.ones(int(q.sum()) + gaps.size, dtype=np.uint8)
    unary[np.cumsum(q + 1) - 1] = 0
    return np.concatenate([low, np.packbits(unary)]), k


def decode(code: np.ndarray, k: int, n: int) -> np.ndarray:
    """The ``n`` sorted int64 positions coded in ``code`` with parameter ``k``.

    Raises ``ValueError`` when ``code`` holds fewer than ``n`` positions.
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    n_low = (n * k + 7) // 8
    if code.size < n_low:
        raise ValueError("position code is shorter than its remainders")
    r = np.zeros(n, dtype=np.int64)
    if k:
        bits = np.unpackbits(code[:n_low])[: n * k].reshape(n, k).astype(np.int64)
        r = (bits << np.arange(k - 1, -1, -1, dtype=np.int64)).sum(axis=1)
    ends = np.flatnonzero(np.unpackbits(code[n_low:]) == 0)[:n]
    if ends.size < n:
        raise ValueError("position code holds fewer positions than values")
    q = np.diff(ends, prepend=-1) - 1
    return np.cumsum(((q << k) | r) + 1) - 1


def code_bytes(gaps: np.ndarray, k: int) -> int:
    """Length in bytes of the code of ``gaps`` with parameter ``k`` (without building it)."""
    n = gaps.size
    return (n * k + 7) // 8 + (int((gaps >> k).sum()) + n + 7) // 8
