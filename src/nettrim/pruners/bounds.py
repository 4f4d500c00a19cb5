"""The discrepancy bounds of the Net-Trim papers, in the form that holds for any network.

Write e_l = ||Yhat_l - Y_l||_F for the pruned network's layer-l response against the
original's on the same inputs, with e_0 = 0 (same network input). ReLU is 1-Lipschitz.

* parallel (Theorem 1, recursive form): Proposition 1 on the original inputs gives
  ||relu(U_l^T X_l) - Y_l|| <= eps_l, and ||relu(U_l^T Xhat) - relu(U_l^T X)|| <= ||U_l||_2 e_(l-1),
  so e_l <= eps_l + ||U_l||_2 e_(l-1). For link-normalized nets this is sum_l eps_l.
* cascade (Theorem 2): on Omega the constraint gives the eps_l^2 = gamma ||(W_l^T Xhat -
  Y_l)_Omega||^2 budget; off Omega U_l^T Xhat <= W_l^T Xhat so relu(U_l^T Xhat) <=
  relu(W_l^T Xhat). Together e_l^2 <= gamma ||W_l^T (Xhat - X)||^2 <= gamma ||W_l||_2^2 e_(l-1)^2,
  so e_L <= eps_1 prod_(l>=2) sqrt(gamma) ||W_l||_2 (times kappa for the logits layer); for
  ||W_l||_2 <= 1 this is the paper's eps_1 sqrt(prod gamma).

* cascade, measured form: the same two facts give, with gap_l = ||(W_l^T Xhat - Y_l)_Omega||
  and ||relu(W_l^T Xhat)_{Omega^c}||^2 <= ||W_l^T (Xhat - X)||^2 - gap_l^2,
  e_l^2 <= eps_l^2 - gap_l^2 + ||W_l||_2^2 e_(l-1)^2, for ANY eps_l (a per-layer floor, kappa);
  with eps_l^2 = gamma gap_l^2 it is never looser than Theorem 2.

* cascade, hinge program (``hinge=True``): off Omega relu(u) <= relu(v) + (u - v)_+, so with
  d_l, h_l the two parts of the hinge ball (d_l^2 + h_l^2 <= eps_l^2) and r_l =
  ||relu(W_l^T Xhat)_{Omega^c}||, e_l^2 <= d_l^2 + (r_l + h_l)^2 <= (eps_l + r_l)^2, i.e.
  e_l <= eps_l + sqrt(||W_l||_2^2 e_(l-1)^2 - gap_l^2). The first layer (V = 0) keeps
  Proposition 1, e_1 <= eps_1.

The bias row of U multiplies the ones row, identical in X and Xhat, so only the weight
matrix's spectral norm enters.
"""
from __future__ import annotations

import math

import torch


def spectral_norm(weight: torch.Tensor) -> float:
    """Largest singular value of the (M, N) weight matrix (conv kernels flattened)."""
    return float(torch.linalg.matrix_norm(weight.detach().double().reshape(weight.shape[0], -1), ord=2))


def parallel_bound(eps: list[float], norms: list[float]) -> float:
    """e_L from e_l <= eps_l + ||U_l||_2 e_(l-1), e_0 = 0; ``norms`` are the pruned ||U_l||_2."""
    e = 0.0
    for eps_l, norm_l in zip(eps, norms):
        e = eps_l + norm_l * e
    return e


def cascade_bound(eps1: float, gamma: float, later_norms: list[float], kappa: float = 1.0) -> float:
    """e_L <= eps_1 prod_(l>=2) sqrt(gamma) ||W_l||_2, with kappa on the last layer."""
    e = eps1
    for norm_l in later_norms:
        e *= math.sqrt(gamma) * norm_l
    return e * (kappa if later_norms else 1.0)


def cascade_bound_measured(eps: list[float], gaps: list[float], later_norms: list[float],
                           hinge: list[bool] | None = None) -> float:
    """e_L from e_1 = eps_1, e_l^2 <= eps_l^2 - gap_l^2 + ||W_l||_2^2 e_(l-1)^2 (l >= 2); a layer
    solved by the hinge program uses e_l <= eps_l + sqrt(||W_l||_2^2 e_(l-1)^2 - gap_l^2)."""
    hinge = hinge or [False] * len(eps)
    e = eps[0]
    for eps_l, gap_l, norm_l, soft in zip(eps[1:], gaps[1:], later_norms, hinge[1:]):
        if soft:
            e = eps_l + math.sqrt(max((norm_l * e) ** 2 - gap_l ** 2, 0.0))
        else:
            e = math.sqrt(max(eps_l ** 2 - gap_l ** 2 + (norm_l * e) ** 2, 0.0))
    return e


def cascade_bound_normalized(eps1: float, gamma: float, n_layers: int) -> float:
    """The paper's Theorem 2 for link-normalized networks: eps_1 sqrt(gamma^(L-1))."""
    return eps1 * math.sqrt(gamma ** (n_layers - 1))


def network_bound(report, graph, original, pruned) -> tuple[float | None, str | None]:
    """The bound on ||Yhat_L - Y_L||_F implied by the layers' certificates, or None with the
    reason: in cascade the measured recursion (any eps_l, hinge layers included; never looser
    than Theorem 2), in parallel Theorem 1's recursion. Given only when every prunable layer
    was pruned and certified on all its rows, the layers are Linear and form a plain chain."""
    layers = report.layers
    if report.uncertified:
        return None, f"no network bound: layer(s) {', '.join(report.uncertified)} not certified"
    if not graph.is_chain or any(r.kind != "linear" for r in layers):
        return None, "no network bound: Theorems 1-2 need a plain chain of Linear layers"
    sampled = [r.name for r in layers if r.sampled]
    if sampled:
        return None, (f"no network bound: layer(s) {', '.join(sampled)} certified on a sample of "
                      f"their rows; the bound needs every layer's claim on the same inputs")
    eps = [r.certificate.bound_radius for r in layers]
    if report.mode == "cascade":
        norms = [spectral_norm(original.get_submodule(r.name).weight) for r in layers]
        hinge = [r.certificate.inactive == "hinge" for r in layers]
        gaps = [r.certificate.gap for r in layers]
        return cascade_bound_measured(eps, gaps, norms[1:], hinge), None
    return parallel_bound(eps, [spectral_norm(pruned.get_submodule(r.name).weight) for r in layers]), None
