"""How a network-wide sparsity s becomes a count per layer, for the methods at a count.

* ``"uniform"``: every pruned layer keeps round(n_l (1 - s)) of its n_l weights and biases.
* ``"global"``: one threshold on a score made comparable across layers: the cost of removing
  entry (j, m) of layer l relative to that layer's response,

      c_ljm = L_ljm / ||Y_l||_F^2,

  with L the method's own removal cost (``Method.removal_costs``: OBS saliency
  u_jm^2 / [H^-1]_jj for the OBS family, (|u_jm| ||a_j||)^2 for Wanda, u_jm^2 for
  thresholding), so c is the fraction of the layer's squared response one removal costs. The
  network keeps the round(n (1 - s)) entries of largest c; each layer's count is how many of
  its own are among them (WoodFisher's and CBS's global magnitude-of-cost rule).
* ``"owl"``: Outlier-Weighted Layerwise sparsity (Yin et al. 2024): with Wanda's score
  S_ljm = |u_jm| ||a_j||, layer l's outlier ratio D_l is the fraction of its entries with
  S > M mean(S_l) (M = 5); the layer sparsities

      s_l = s + lambda (1 - 2 (D_l - min D) / (max D - min D)),    lambda = 0.08,

  map D linearly onto [s - lambda, s + lambda] (more outliers, lower sparsity), then shift by
  one constant so that their mean weighted by layer size is s, each clipped to [0, 1].

Scores come from every layer's Gram statistics on the original network (BatchNorms folded),
so the allocation is fixed before the scheme runs; the scheme then prunes each layer to its
count.
"""
from __future__ import annotations

import torch

ALLOCATIONS = ("uniform", "global", "owl")
OWL_M = 5.0
OWL_LAMBDA = 0.08


def uniform_counts(totals: dict[str, int], sparsity: float) -> dict[str, int]:
    return {name: int(round(n * (1 - sparsity))) for name, n in totals.items()}


def global_counts(costs: dict[str, torch.Tensor], sparsity: float) -> dict[str, int]:
    """Counts from one threshold on the layer-normalised removal costs ``costs[name]``."""
    flat = torch.cat([c.flatten().double() for c in costs.values()])
    keep = int(round(flat.numel() * (1 - sparsity)))
    if keep <= 0:
        return {name: 0 for name in costs}
    order = torch.argsort(flat, descending=True, stable=True)[:keep]
    owner = torch.cat([torch.full((c.numel(),), i) for i, c in enumerate(costs.values())])
    kept = torch.bincount(owner[order], minlength=len(costs))
    return {name: int(k) for name, k in zip(costs, kept)}


def owl_counts(wanda: dict[str, torch.Tensor], sparsity: float, m: float = OWL_M,
               lam: float = OWL_LAMBDA) -> dict[str, int]:
    """Counts from OWL's outlier-weighted layer sparsities (module docstring); ``wanda[name]``
    the layer's Wanda scores |u_jm| ||a_j||."""
    ratios = torch.tensor([float((s > m * s.mean()).double().mean()) for s in wanda.values()], dtype=torch.float64)
    sizes = torch.tensor([s.numel() for s in wanda.values()], dtype=torch.float64)
    spread = float(ratios.max() - ratios.min())
    unit = (ratios - ratios.min()) / spread if spread > 0 else torch.zeros_like(ratios)
    layer_s = sparsity + lam * (1 - 2 * unit)
    layer_s += sparsity - float((layer_s * sizes).sum() / sizes.sum())
    layer_s = layer_s.clamp(0, 1)
    return {name: int(round(n * (1 - float(s)))) for name, n, s in zip(wanda, sizes.tolist(), layer_s)}


def allocated_counts(method, model, batches, names: list[str], totals: dict[str, int],
                     sparsity: float, rows) -> dict[str, int]:
    """The per-layer counts of ``method.allocation`` at network sparsity ``sparsity`` over
    the layers ``names`` (``totals``: their sizes)."""
    from ..graph.adapters import get_U
    from ..solvers.obs import wanda_scores
    from ..stream import layer_stats

    allocation = getattr(method, "allocation", "uniform")
    if allocation == "uniform":
        return uniform_counts(totals, sparsity)
    stats = {n: layer_stats(model, n, batches, relu=False, hold=False, plan=rows) for n in names}
    weights = {n: get_U(model.get_submodule(n), n).to(stats[n].gram) for n in names}
    if allocation == "owl":
        return owl_counts({n: wanda_scores(weights[n], stats[n].gram) for n in names}, sparsity)
    costs = {n: method.removal_costs(weights[n], stats[n]) / max(float(stats[n].target_sq.sum()), 1e-300)
             for n in names}
    return global_counts(costs, sparsity)
