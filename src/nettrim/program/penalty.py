"""The objective of a layer program: the l1 norm, weighted, or by groups.

* l1: sum_ij |U_ij|; weighted l1: sum_ij w_ij |U_ij| (reweighted l1, Candes, Wakin, Boyd 2008);
* group l1: sum_g t_g ||U_g||_F over groups of rows of U (all M columns): an input unit is
  kept or dropped by every neuron at once (structured Net-Trim, docs/structured.md). Rows
  with group -1 (the bias) are in no group and not penalised.

Each penalty has its prox: for step t, prox_{t P}(Z) = argmin_U P(U) + ||U - Z||^2 / (2 t).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def soft_threshold(Z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """sign(Z) max(|Z| - t, 0): the prox of t ||.||_1."""
    return torch.sign(Z) * (Z.abs() - t).clamp_min(0)


@dataclass(frozen=True)
class Penalty:
    """``weights`` (N', M) for weighted l1 (None: all ones); ``groups`` ((N',) long, -1 for a
    row in no group) with ``group_weights`` ((G,) t_g) for the group l1 norm."""

    weights: torch.Tensor | None = None
    groups: torch.Tensor | None = None
    group_weights: torch.Tensor | None = None

    @property
    def grouped(self) -> bool:
        return self.groups is not None

    def prox(self, Z: torch.Tensor, step: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """prox of ``step`` times the penalty at Z (N', k); ``step`` (k,) per column, ``cols``
        the columns of U that Z holds (for the weights)."""
        if self.grouped:
            return group_soft_threshold(Z, self.groups, self.group_weights.to(Z) * step[0])
        w = 1.0 if self.weights is None else self.weights.to(Z)
        if cols is not None and self.weights is not None:
            w = w[:, cols]
        return soft_threshold(Z, w * step)

    def value(self, U: torch.Tensor) -> float:
        if self.grouped:
            inside = self.groups >= 0
            sq = torch.zeros(self.group_weights.shape[0], dtype=U.dtype, device=U.device)
            sq.index_add_(0, self.groups[inside], U[inside].square().sum(1))
            return float((self.group_weights.to(U) * sq.sqrt()).sum())
        w = 1.0 if self.weights is None else self.weights.to(U)
        return float((w * U.abs()).sum())


def group_soft_threshold(Z: torch.Tensor, groups: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The prox of sum_g t_g ||Z_g||_F: each group scaled by max(0, 1 - t_g / ||Z_g||_F), so a
    group is zero as a whole or not shrunk to zero at all; rows of group -1 are returned as
    they are. ``groups``: (N',) long in [-1, G); ``t``: (G,) thresholds."""
    inside = groups >= 0
    ids = groups[inside]
    sq = torch.zeros(t.shape[0], dtype=Z.dtype, device=Z.device).index_add_(0, ids, Z[inside].square().sum(1))
    norm = sq.sqrt()
    scale = torch.where(norm > t, 1 - t / norm.clamp_min(1e-30), torch.zeros_like(norm))
    factor = torch.ones(Z.shape[0], dtype=Z.dtype, device=Z.device)
    factor[inside] = scale[ids]
    return Z * factor[:, None]
