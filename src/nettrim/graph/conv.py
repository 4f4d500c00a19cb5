"""Patch (im2col) view of a ``Conv2d`` as the matrix layer ``Z = X W^T + b``.

Each row of ``X`` is one receptive field (a patch) of the layer input, ordered (C_in, kh, kw)
like ``weight.reshape(C_out, -1)``; the matching row of ``Z`` is the convolution output at that
position, over the C_out channels. The matrix solver then finds ONE kernel shared by every
position: its answer reshapes back to the layer's own kernel shape.

A conv layer has H_out * W_out positions per image, so the full patch matrix is far larger than
the images (MNIST's first LeNet layer: 784 rows of 25 per image). Rows are therefore subsampled
to at most ``max_rows`` in total, spread evenly over images (every image contributes
floor(max_rows / n_images) or one more) and, within an image, over positions chosen by a
seeded hash of (seed, image index, position). The choice depends only on those three numbers,
not on the batching or on the data, so capturing the same layer of the original and of the
pruned network (cascade) yields rows at the same positions, in the same order.

How many rows: ``max_rows=None`` takes as many as 2 GiB of X holds (``max_bytes``), which only
bounds memory. ``max_rows="auto"`` (what ``nettrim.prune`` uses unless told otherwise) takes
``solve_rows(N) = max(5000, 30 N')`` rows, N' = C_in kh kw + 1 unknowns per output channel,
within the same memory cap: about 30 rows per unknown with a floor of a few thousand was
measured to be enough on LeNet-5 (5,000 rows: the relative response error on held-out images
equals eps; 1,000 rows overfit to 0.12 at eps 0.1), while ADMM time grows with the row count.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NettrimError, require

DEFAULT_MAX_BYTES = 2 * 1024 ** 3  # budget for the captured X (float32): 2 GiB
_UNFOLD_CHUNK_BYTES = 256 * 1024 ** 2  # largest unfold of one chunk of a batch
_MASK32 = 0xFFFFFFFF
MIN_SOLVE_ROWS = 5000
ROWS_PER_UNKNOWN = 30


def solve_rows(n_features: int) -> int:
    """Rows enough for the layer solve: max(5000, 30 (n_features + 1)), see the module doc."""
    return max(MIN_SOLVE_ROWS, ROWS_PER_UNKNOWN * (int(n_features) + 1))


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (int64 tensors in [0, 2^32), no overflow: factor < 2^27)."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def position_keys(seed: int, images: torch.Tensor, n_positions: int) -> torch.Tensor:
    """(len(images), n_positions) distinct int64 sort keys; a row depends on (seed, image) only."""
    h = _hash32((images.long() * 0x9E3779B1 + int(seed) * 0x7FEB352D) & _MASK32)
    p = torch.arange(n_positions, dtype=torch.long)
    k = _hash32((h[:, None] + p[None, :] * 0x85EBCA6B) & _MASK32)
    return k * n_positions + p  # ties broken by position: keys are distinct within an image


def rows_per_image(max_rows: int, n_images: int, n_positions: int,
                   images: torch.Tensor) -> torch.Tensor:
    """How many positions each of ``images`` (global indices) contributes: all of them when
    the budget allows, else floor(max_rows / n) with the remainder spread evenly."""
    if max_rows >= n_images * n_positions:
        return torch.full((len(images),), n_positions, dtype=torch.long)
    base, extra = divmod(max_rows, n_images)
    i = images.long()
    gets_extra = ((i + 1) * extra) // n_images > (i * extra) // n_images
    return base + gets_extra.long()


class ConvAdapter:
    """nn.Conv2d (groups = 1; any stride, padding, padding mode, dilation; bias or not).

    Args:
        module: the layer.
        max_rows: most patch rows kept over the whole capture: an int, None for as many as
            ``max_bytes`` allows, or "auto" for ``solve_rows`` within that cap.
        max_bytes: budget for X when ``max_rows`` is None (rows = max_bytes / (4 N)).
        seed: seeds the choice of positions.
        n_images: how many images the capture will see in total; needed to spread the budget
            over images. Without it each call is budgeted as if it were the whole capture, and a
            capture that exceeds ``max_rows`` raises.

    After a capture, ``rows`` is the number of rows returned and ``positions_per_image`` the
    number of output positions of one image.
    """

    options = ("max_rows", "max_bytes", "seed", "n_images")

    def __init__(self, module: nn.Conv2d, *, max_rows: int | str | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, seed: int = 0, n_images: int | None = None):
        require(isinstance(module, nn.Conv2d), f"ConvAdapter needs an nn.Conv2d, got {type(module).__name__}")
        if module.groups != 1:
            raise NettrimError(f"grouped convolutions (groups={module.groups}) are not supported: "
                               f"the patch form needs groups=1")
        self.module = module
        self.n_features = module.in_channels * math.prod(module.kernel_size)
        cap = max(1, int(max_bytes) // (4 * self.n_features))
        if max_rows is None:
            max_rows = cap
        elif max_rows == "auto":
            max_rows = min(cap, solve_rows(self.n_features))
        require(isinstance(max_rows, numbers.Integral) and max_rows >= 1,
                f"max_rows must be a positive integer, None or 'auto', got {max_rows!r}")
        require(n_images is None or n_images >= 1, f"n_images must be positive, got {n_images}")
        self.max_rows = int(max_rows)
        self.seed = int(seed)
        self.n_images = None if n_images is None else int(n_images)
        self.rows = 0
        self._offset = 0  # global index of the next image
        self.positions_per_image: int | None = None

    # -- capture -------------------------------------------------------------------------------
    def matrices(self, inp: torch.Tensor, out: torch.Tensor,
                 inputs: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Patch rows X (r, C_in kh kw) and outputs Z (r, C_out) at the chosen positions of
        this batch (``inp`` (B, C_in, H, W), ``out`` (B, C_out, H_out, W_out)); X is None
        without ``inputs``."""
        require(inp.ndim == 4, f"Conv2d capture needs 4-D (batched) inputs, got shape {tuple(inp.shape)}")
        B, L = inp.shape[0], out.shape[2] * out.shape[3]
        self.positions_per_image = L
        images = torch.arange(self._offset, self._offset + B)
        if self.n_images is None:
            counts = rows_per_image(self.max_rows, B, L, images - self._offset)
        else:
            require(self._offset + B <= self.n_images,
                    f"capture saw more than the announced n_images={self.n_images} images")
            counts = rows_per_image(self.max_rows, self.n_images, L, images)
        self._offset += B
        k = int(counts.max()) if B else 0
        keep = torch.arange(k)[None, :] < counts[:, None]  # (B, k): slot j used when j < count
        if bool(keep.all()) and k == L:
            idx = torch.arange(L).expand(B, L)
        else:
            # the count smallest keys of each image, then back to memory order; unused slots
            # get the sentinel L so they sort last, where ``keep`` drops them
            idx = torch.topk(position_keys(self.seed, images, L), k, dim=1, largest=False).indices
            idx = idx.masked_fill(~keep, L).sort(dim=1).values.clamp_max(L - 1)
        X = self._patches(inp, idx.to(inp.device))[keep.to(inp.device)] if inputs else None
        Zall = out.flatten(2).transpose(1, 2)  # (B, L, C_out)
        Z = Zall.gather(1, idx.to(out.device)[..., None].expand(-1, -1, Zall.shape[2]))[keep.to(out.device)]
        self.rows += Z.shape[0]
        if self.n_images is None and self.rows > self.max_rows:
            raise NettrimError(f"conv capture exceeded max_rows={self.max_rows}: pass n_images so "
                               f"the budget can be spread over the whole capture")
        return X, Z

    def patches(self, inp: torch.Tensor) -> torch.Tensor:
        """All patches (B, L, C_in kh kw) of ``inp``, with the layer's padding applied."""
        m = self.module
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
            inp = F.pad(inp, m._reversed_padding_repeated_twice, mode=mode)
            padding = 0
        else:
            padding = m.padding
        return F.unfold(inp, m.kernel_size, dilation=m.dilation, padding=padding,
                        stride=m.stride).transpose(1, 2)

    def _patches(self, inp: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(B, k, N) patches at positions ``idx`` (B, k), unfolding a few images at a time."""
        B = inp.shape[0]
        per_image = max(1, self.n_features * (self.positions_per_image or 1) * inp.element_size())
        step = max(1, _UNFOLD_CHUNK_BYTES // per_image)
        parts = []
        for s in range(0, B, step):
            P = self.patches(inp[s:s + step])
            i = idx[s:s + step]
            parts.append(P.gather(1, i[..., None].expand(-1, -1, P.shape[2])))
        return torch.cat(parts) if parts else inp.new_zeros(0, idx.shape[1], self.n_features)

    # -- weights -------------------------------------------------------------------------------
    def get(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight (C_out, C_in kh kw), bias (C_out,) or None), copies."""
        m = self.module
        w = m.weight.detach().reshape(m.out_channels, -1).clone()
        return w, None if m.bias is None else m.bias.detach().clone()

    def set(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Write a (C_out, C_in kh kw) or kernel-shaped weight (and bias) back into the layer."""
        m = self.module
        require(weight.numel() == m.weight.numel(),
                f"weight has {weight.numel()} entries, the conv kernel {tuple(m.weight.shape)} has {m.weight.numel()}")
        with torch.no_grad():
            m.weight.copy_(weight.reshape(m.weight.shape).to(m.weight))
            if m.bias is not None and bias is not None:
                m.bias.copy_(bias.reshape(m.bias.shape).to(m.bias))
