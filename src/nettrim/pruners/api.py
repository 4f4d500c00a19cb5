"""``nettrim.prune``: one entry point for Net-Trim and every baseline."""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Sequence

import torch
from torch import nn

from ..errors import NettrimError, require
from ..capture import trace_layers
from ..layer import ADMMSettings
from .network import MODES, PruneResult, run_scheme
from .baselines import DCMethod, LOBSMethod, NetTrimAtSparsity, ThresholdMethod
from .nettrim import NetTrimMethod

METHODS = ("nettrim", "threshold", "dc", "lobs")


def prune(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str = "nettrim",
    mode: str = "cascade",
    epsilon: float = 0.05,
    gamma: float = 1.1,
    kappa: float = 1.0,
    sparsity: float | None = None,
    counts: dict[str, int] | None = None,
    per_neuron: bool | Sequence[str] = False,
    reweight: int = 0,
    polish: bool = False,
    layer_epsilon: dict[str, float] | None = None,
    relax_slack: bool = False,
    margin: float | None = None,
    hinge: bool = False,
    settings: ADMMSettings | None = None,
    layers: list[str] | None = None,
    batch_size: int = 1024,
    cleanup: bool = True,
    progress: bool = True,
    capture: dict | None = None,
    **method_options,
) -> PruneResult:
    """Prune a trained ReLU network; returns ``.model`` (a pruned deep copy) and ``.report``.

    Args:
        model: any nn.Module of Linear/Conv2d layers with ReLU (Flatten, Dropout, Identity,
            pooling allowed), sequential or nested. It is not modified.
        inputs: (P, ...) network inputs the layer responses are kept on (training samples).
        method: "nettrim" (convex; epsilon-controlled, or ``sparsity``-controlled by a search
            over epsilon), "threshold" (hard thresholding), "dc" (FeTa DC pruning), "lobs"
            (layer-wise OBS; ``greedy=False`` for the one-shot public version).
        mode: "cascade" (layer l sees the pruned network's inputs; sparser) or "parallel"
            (every layer on the original network; independent jobs).
        epsilon: RELATIVE tolerance: eps_l = epsilon ||Y_l||_F (parallel, and the first layer
            in cascade). Cascade layers after the first use eps_l^2 = gamma ||(W_l^T Xhat -
            Y_l)_Omega||^2.
        gamma: cascade inflation (>= 1). kappa: risk factor in (0, 1] on the logits layer.
        per_neuron: split the budget per neuron (independent problems, eps_m = eps ||y_m|| /
            ||Y||_F): True for every layer, or the names of the layers to split (e.g. the
            hidden layers, leaving the logits layer one ball, which a lossy pruned input can
            make infeasible per neuron). Tight per-neuron balls converge more slowly: a solve
            may stop at the iteration cap with some neuron a little outside its ball, which
            the report says (status, ``info["constraints_hold"]``).
        reweight: rounds of reweighted l1 after the first solve (sparser at equal eps).
        polish: debias each layer on its support, staying feasible (same sparsity, smaller
            discrepancy; see ``nettrim.layer.polish``).
        sparsity: fraction of zeros per pruned layer (weights and biases), in (0, 1); required
            by the baselines, optional for Net-Trim.
        counts: exact non-zero counts per layer name (overrides ``sparsity`` for those layers),
            e.g. another method's counts, to compare at equal size.
        layer_epsilon: relative eps per layer name: replaces ``epsilon`` in parallel and for
            the first layer; a floor eps_l >= layer_epsilon[l] ||Y_l||_F for later cascade
            layers (the reported bound then uses the measured cascade recursion).
        relax_slack: cascade V = relu(W^T Xhat) (a larger feasible set, same Theorem 2).
        margin: theta in [0, 1]: every ReLU layer keeps its inactive entries below theta times
            their original (negative) pre-activation, V = relu(W^T X) + theta min(W^T X, 0),
            the first layer included (None: the scheme's V). Fewer zeros at the same eps, but
            units that were off stay off on unseen inputs more often (see NetTrimMethod).
        hinge: solve the hinge program on ReLU layers: the inactive entries' excess over V
            shares the eps ball instead of being forbidden (sparser at the same eps;
            Proposition 1 still holds, see ``nettrim.layer.problem``).
        settings: ADMM settings. layers: names of the layers to prune (default all).
        method_options: passed to the baseline (e.g. greedy=False for lobs, options={} for dc).
        cleanup: remove dead units between consecutive Linear layers (exact, see ``cleanup``).
        capture: capture options, e.g. ``{"max_rows": 20000, "seed": 0}`` for the patch rows
            sampled from each Conv2d layer (default ``max_rows="auto"``: max(5000, 30 N') rows,
            within 2 GiB; see ``nettrim.capture.conv``). Each layer reports the rows it used.
    """
    _validate(model, inputs, method, mode, epsilon, gamma, kappa, sparsity)
    _validate_layer_epsilon(model, inputs, layer_epsilon)
    epsilon_control = method == "nettrim" and sparsity is None and not counts
    _validate_margin(margin, relax_slack, epsilon_control)
    per_neuron = _per_neuron_choice(model, inputs, per_neuron)
    require(method == "nettrim" or sparsity is not None or counts,
            f"method {method!r} needs a target: pass sparsity=... (or counts=...)")
    settings = settings or ADMMSettings()
    target = dict(sparsity=sparsity, counts=dict(counts or {}))
    if epsilon_control:
        layer_method = NetTrimMethod(mode=mode, epsilon=epsilon, gamma=gamma, kappa=kappa,
                                     per_neuron=per_neuron, reweight=reweight, polish=polish,
                                     layer_epsilon=layer_epsilon, relax_slack=relax_slack,
                                     margin=margin, hinge=hinge, settings=settings)
    elif method == "nettrim":
        try:
            layer_method = NetTrimAtSparsity(**target, settings=settings, per_neuron=per_neuron,
                                             reweight=reweight, hinge=hinge, **method_options)
        except TypeError as exc:
            raise NettrimError(f"bad option for method 'nettrim' at a sparsity: {exc}") from None
    else:
        cls = {"threshold": ThresholdMethod, "lobs": LOBSMethod, "dc": DCMethod}[method]
        try:
            layer_method = cls(**target, **method_options)
        except TypeError as exc:
            raise NettrimError(f"bad option for method {method!r}: {exc}") from None
    record = dict(sparsity=sparsity, counts=counts, epsilon=epsilon, gamma=gamma, kappa=kappa,
                  per_neuron=per_neuron if isinstance(per_neuron, bool) else sorted(per_neuron),
                  reweight=reweight, polish=polish, samples=int(inputs.shape[0]),
                  capture=dict(capture or {}), layer_epsilon=dict(layer_epsilon or {}),
                  relax_slack=relax_slack, margin=margin, hinge=hinge,
                  feasibility_tol=settings.feasibility_tol,
                  admm={k: str(v) if isinstance(v, torch.dtype) else v
                        for k, v in asdict(settings).items()})
    return run_scheme(model, inputs, layer_method, mode=mode, method_name=method, settings=record,
                      batch_size=batch_size, cleanup=cleanup, progress=progress, layers=layers,
                      capture=capture)


def _validate_margin(margin, relax_slack: bool, epsilon_control: bool) -> None:
    if margin is None:
        return
    require(isinstance(margin, (int, float)) and 0 <= margin <= 1,
            f"margin must lie in [0, 1] (a fraction of the original negative pre-activation), got {margin}")
    require(not relax_slack, "relax_slack is margin=0 on the later cascade layers: pass one or the other")
    require(epsilon_control,
            "margin applies to Net-Trim's epsilon control only (not to a sparsity or counts target)")


def _validate(model, inputs, method, mode, epsilon, gamma, kappa, sparsity) -> None:
    require(isinstance(model, nn.Module), f"model must be a torch.nn.Module, got {type(model).__name__}")
    require(isinstance(inputs, torch.Tensor) and inputs.ndim >= 2 and inputs.shape[0] > 0,
            "inputs must be a non-empty tensor of samples, shape (P, ...)")
    require(bool(torch.isfinite(inputs).all()), "inputs contain NaN or Inf")
    for name, p in model.named_parameters():
        require(bool(torch.isfinite(p).all()), f"parameter '{name}' contains NaN or Inf")
    require(method in METHODS, f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    require(mode in MODES, f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    require(isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0,
            f"epsilon must be a positive number (relative tolerance), got {epsilon}")
    require(gamma >= 1, f"gamma must be >= 1, got {gamma}")
    require(0 < kappa <= 1, f"kappa must lie in (0, 1], got {kappa}")
    if sparsity is not None:
        require(0 < sparsity < 1, f"sparsity must lie in (0, 1), got {sparsity}")


def _check_layer_names(model, inputs, names, option: str) -> None:
    """One line naming the option's names that are no prunable layer of ``model``."""
    prunable = [s.name for s in trace_layers(model, inputs[:2])]
    unknown = sorted(set(names) - set(prunable))
    require(not unknown, f"{option} names no prunable layer {', '.join(unknown)}; "
                         f"prunable layers: {', '.join(prunable)}")


def _per_neuron_choice(model, inputs, per_neuron) -> bool | frozenset[str]:
    """``per_neuron`` as True/False or the frozenset of (checked) layer names it names."""
    if isinstance(per_neuron, bool):
        return per_neuron
    require(not isinstance(per_neuron, str) and all(isinstance(n, str) for n in per_neuron),
            f"per_neuron must be True/False or a list of layer names, got {per_neuron!r}")
    _check_layer_names(model, inputs, per_neuron, "per_neuron")
    return frozenset(per_neuron)


def _validate_layer_epsilon(model, inputs, layer_epsilon) -> None:
    if not layer_epsilon:
        return
    _check_layer_names(model, inputs, layer_epsilon, "layer_epsilon")
    for name, value in layer_epsilon.items():
        require(isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
                f"layer_epsilon[{name!r}] must be a positive number, got {value!r}")
