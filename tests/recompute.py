"""Each layer's certificate recomputed from the two models and the calibration inputs alone,
in plain torch (forward hooks on the layers' outputs, float64), as a reference for the reports
of ``nettrim.prune``.

For layer l with original weights W and pruned weights U: its inputs Xin come from the pruned
network in cascade and from the original network in parallel; its targets Y from the original
network on the original inputs (relu of the pre-activation for a ReLU layer). On the rows
(samples x positions, or tokens) and per neuron m,

    d_m = ||(U^T Xin - Y)_{Omega_m}||,    h_m = ||(U^T Xin - V)_{Omega^c_m, +}||,

Omega = {Y > 0} for a ReLU layer (every entry otherwise), V = relu(W^T Xin) + theta min(W^T Xin, 0)
(V = 0 when the certificate's theta is None). The claim holds when, per ball (the layer, or
each neuron when the certificate lists radii), d (sqrt(d^2 + h^2) for the hinge ball) is at
most eps (1 + tol) + 1e-6 ||Y|| and, for the exact program, h at most tol eps + 1e-6 ||Y||.

A Linear layer solved on a sample of its rows (``max_memory``) is checked on the sample the
run options name: the first ``rows`` of a ``torch.randperm(rows_total)`` seeded with the run's
seed, sorted. A Conv2d layer must have used every position (its patch rows are spread by a
hash that this reference does not repeat).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

FLOOR = 1e-6


@dataclass
class Check:
    layer: str
    measured: float
    limit: float

    @property
    def holds(self) -> bool:
        return self.measured <= self.limit


def _output_at(model: nn.Module, name: str, x: torch.Tensor, inputs: bool = False):
    """The layer's input (``inputs``) or output on ``x``, from a forward hook."""
    got = {}

    def hook(mod, args, out):
        got["v"] = (args[0] if inputs else out).detach()

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return got["v"]


def _rows(z: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """(rows, M) float64: a Conv2d's (N, M, H, W) output as positions x channels, any other
    layer's leading dimensions flattened."""
    if isinstance(module, nn.Conv2d):
        return z.double().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    return z.double().reshape(-1, z.shape[-1])


def folded(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``model`` with its BatchNorms folded into the layers before them (as prune solves them)."""
    from nettrim.graph.batchnorm import fold_batchnorm
    from nettrim.graph.model import ModelGraph

    pairs = ModelGraph.build(model, example).bn_pairs
    return fold_batchnorm(model, pairs) if pairs else model


def layer_checks(original: nn.Module, pruned: nn.Module, x: torch.Tensor, report) -> list[Check]:
    """One Check per certified layer of ``report`` (a PruneReport), recomputed (module docstring)."""
    original, pruned = folded(original, x[:2]), folded(pruned, x[:2])
    seed = report.run.get("options", {}).get("seed", 0)
    checks = []
    for r in report.layers:
        if not r.certified:
            continue
        cert = r.certificate
        source = pruned if report.mode == "cascade" else original
        xin = _output_at(source, r.name, x, inputs=True)
        a, b = original.get_submodule(r.name), pruned.get_submodule(r.name)
        with torch.no_grad():
            z = _rows(_output_at(original, r.name, x), a)
            zu, zw = _rows(b(xin), b), _rows(a(xin), a)
        if r.rows < r.rows_total:
            assert not isinstance(a, nn.Conv2d), "a sampled Conv2d layer is not checked here"
            keep = torch.randperm(r.rows_total, generator=torch.Generator().manual_seed(seed))[:r.rows].sort().values
            z, zu, zw = z[keep], zu[keep], zw[keep]
        y = torch.relu(z) if r.relu else z
        on = y > 0 if r.relu else torch.ones_like(y, dtype=torch.bool)
        v = torch.zeros_like(y) if cert.theta is None else torch.relu(zw) + cert.theta * zw.clamp(max=0)
        d = ((zu - y) * on).square().sum(0).sqrt()
        h = ((zu - v).masked_fill(on, 0).clamp_min(0)).square().sum(0).sqrt() if r.relu else torch.zeros_like(d)
        floor = FLOOR * float(y.norm()) + 1e-12
        per_neuron = cert.radii is not None
        eps = torch.tensor(cert.radii if per_neuron else [cert.epsilon], dtype=torch.float64)
        bounded = torch.sqrt(d ** 2 + h ** 2) if cert.inactive == "hinge" else d
        if not per_neuron:
            bounded, h = bounded.norm().reshape(1), h.norm().reshape(1)
        ratio = float((bounded / (eps * (1 + cert.tolerance) + floor)).max())
        if cert.inactive == "halfspace":
            ratio = max(ratio, float((h / (cert.tolerance * eps + floor)).max()))
        checks.append(Check(r.name, ratio, 1.0))
    return checks


def network_error(original: nn.Module, pruned: nn.Module, x: torch.Tensor) -> float:
    """||Yhat_L - Y_L||_F on ``x``, in float64."""
    with torch.no_grad():
        return float((pruned.eval()(x).double() - original.eval()(x).double()).norm())


def all_hold(original: nn.Module, pruned: nn.Module, x: torch.Tensor, report) -> bool:
    """Every certified layer's claim and the network bound (when given) hold on ``x``; at least
    one layer is certified."""
    checks = layer_checks(original, pruned, x, report)
    bound_ok = report.bound is None or network_error(original, pruned, x) <= report.bound
    return bool(checks) and all(c.holds for c in checks) and bound_ok


def inactive_response(original: nn.Module, pruned: nn.Module, x: torch.Tensor, name: str) -> float:
    """r = ||relu(W^T Xhat)_{Omega^c}||_F for a cascade ReLU layer: the original weights on the
    pruned network's inputs, on the entries where the original network's ReLU output is zero
    (what the cascade bounds add to a later layer's eps)."""
    original, pruned = folded(original, x[:2]), folded(pruned, x[:2])
    a = original.get_submodule(name)
    xin = _output_at(pruned, name, x, inputs=True)
    with torch.no_grad():
        z, zw = _rows(_output_at(original, name, x), a), _rows(a(xin), a)
    return float(torch.relu(zw).masked_fill(z > 0, 0).norm())
