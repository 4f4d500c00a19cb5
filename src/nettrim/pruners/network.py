"""Network-level pruning: walk the prunable layers, run a layer method under a scheme, report.

``parallel``: every layer sees the original network's inputs (independent jobs).
``cascade``: layer l sees the already-pruned network's inputs, against the original targets.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..capture.batchnorm import fold_batchnorm
from ..capture import LayerSpec, adapter_for, capture_layer, is_chain, network_output, trace_layers
from ..errors import NettrimError, require
from .base import LayerJob, LayerMethod, LayerOutcome
from .bounds import cascade_bound, cascade_bound_measured, parallel_bound, spectral_norm
from .cleanup import remove_dead_units
from .report import LayerReport, PruneReport

MODES = ("cascade", "parallel")


@dataclass
class PruneResult:
    """``model``: the pruned deep copy (same classes, zeros in the weights); ``report``."""

    model: nn.Module
    report: PruneReport


def run_scheme(model: nn.Module, inputs: torch.Tensor, method: LayerMethod, *, mode: str,
               method_name: str, settings: dict, batch_size: int = 1024, cleanup: bool = True,
               progress: bool = True, layers: list[str] | None = None,
               on_layer=None, capture: dict | None = None) -> PruneResult:
    """Prune a deep copy of ``model`` layer by layer with ``method`` under ``mode``.

    ``capture``: options for every layer's capture (``capture_layer``), e.g. ``max_rows`` and
    ``seed`` of the patch rows of Conv2d layers; default ``max_rows="auto"`` (see
    ``nettrim.capture.conv``). The same options are used for the original and the pruned
    network, so a cascade layer sees the same patch positions in both.
    """
    capture = {"max_rows": "auto", **(capture or {})}
    require(mode in MODES, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    start = time.perf_counter()
    original, folded = fold_batchnorm(model, inputs[:2]) if _has_batchnorm(model) else (model, [])
    if folded:  # the pruned copy carries the folded convs and Identity in place of each BN
        settings = dict(settings, folded_batchnorm=[list(p) for p in folded])
    specs = trace_layers(original, inputs[:2])
    if layers is not None:
        unknown = sorted(set(layers) - {s.name for s in specs})
        require(not unknown, f"no prunable layer named {', '.join(unknown)}; "
                             f"prunable layers: {', '.join(s.name for s in specs)}")
    pruned = copy.deepcopy(original).eval()
    reports: list[LayerReport] = []
    bar = tqdm(specs, desc=f"{method_name} {mode}", unit="layer", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        if layers is not None and spec.name not in layers:
            continue
        job = _make_job(original, pruned, spec, specs, inputs, mode, batch_size, capture)
        if progress and hasattr(method, "progress"):  # ADMM progress on the layer bar
            method.progress = _admm_postfix(bar, spec.name)
        t0 = time.perf_counter()
        outcome = method(job)
        adapter_for(pruned.get_submodule(spec.name), spec.name).set(outcome.weight, outcome.bias)
        reports.append(_layer_report(job, outcome, time.perf_counter() - t0))
        if on_layer is not None:
            on_layer(reports[-1])
    bar.close()
    if cleanup:
        _cleanup(pruned, specs, reports)
    out_orig = network_output(original, inputs, batch_size)
    out_new = network_output(pruned, inputs, batch_size)
    report = PruneReport(
        method=method_name, mode=mode, settings=settings, layers=reports,
        seconds=time.perf_counter() - start,
        output_error=float((out_new - out_orig).norm()), output_norm=float(out_orig.norm()),
        bound=_bound(mode, reports, original, pruned, settings) if is_chain(specs) else None)
    return PruneResult(pruned, report)


def _admm_postfix(bar, name: str):
    """A solver progress callback that shows iteration and converged neurons on ``bar``."""
    def show(iteration: int, done: int, total: int) -> None:
        bar.set_postfix_str(f"{name}: ADMM iteration {iteration}, {done}/{total} neurons done")
    return show


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())


def _make_job(original, pruned, spec: LayerSpec, specs, inputs, mode, batch_size,
              capture: dict) -> LayerJob:
    X0, Z0 = capture_layer(original, spec.name, inputs, batch_size, **capture)
    Y = torch.relu(Z0) if spec.relu else Z0
    if mode == "cascade" and spec.index > 0:
        # layers before ``spec`` are already pruned in ``pruned``; ``spec`` itself is still original
        X, Z = capture_layer(pruned, spec.name, inputs, batch_size, **capture)
    else:
        X, Z = X0, Z0
    del X0
    weight, bias = adapter_for(original.get_submodule(spec.name), spec.name).get()
    return LayerJob(spec, weight, bias, X, Y, Z, first=spec.index == 0,
                    last=spec.index == len(specs) - 1, images=int(inputs.shape[0]),
                    shape=tuple(original.get_submodule(spec.name).weight.shape))


def _layer_report(job: LayerJob, outcome: LayerOutcome, seconds: float) -> LayerReport:
    W, b = outcome.weight, outcome.bias
    Z, act = job.responses(W, b)
    nnz = lambda w, bb: int((w != 0).sum()) + (0 if bb is None else int((bb != 0).sum()))
    return LayerReport(
        name=job.spec.name, kind=job.spec.kind, shape=list(job.shape or job.weight.shape), relu=job.spec.relu,
        nnz_before=nnz(job.weight, job.bias), nnz_after=nnz(W, b),
        total=job.weight.numel() + (0 if job.bias is None else job.bias.numel()),
        epsilon=outcome.epsilon,
        discrepancy=float(((Z - job.Y) * job.active).norm()),
        response_error=float((act - job.Y).norm()), target_norm=float(job.Y.norm()),
        status=outcome.status, iterations=outcome.iterations, seconds=seconds,
        samples=job.X.shape[0], info={"images": job.images, **outcome.info})


def _cleanup(pruned: nn.Module, specs, reports: list[LayerReport]) -> None:
    by_name = {r.name: r for r in reports}
    for a, b in zip(specs, specs[1:]):
        first, second = pruned.get_submodule(a.name), pruned.get_submodule(b.name)
        if not (a.feeds_next and isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
                and first.out_features == second.in_features):
            continue
        removed = remove_dead_units(first, second)
        for spec, layer in ((a, first), (b, second)):
            if spec.name in by_name:
                rep = by_name[spec.name]
                new = int((layer.weight != 0).sum()) + (
                    int((layer.bias != 0).sum()) if layer.bias is not None else 0)
                rep.info["cleanup_removed"] = rep.info.get("cleanup_removed", 0) + rep.nnz_after - new
                rep.nnz_after = new


def _bound(mode: str, reports: list[LayerReport], original: nn.Module, pruned: nn.Module,
           settings: dict) -> float | None:
    """Bound on ||Yhat_L - Y_L||_F implied by the per-layer tolerances (see ``bounds``)."""
    if not reports or any(r.epsilon is None or r.kind != "linear" for r in reports):
        return None
    tol = float(settings.get("feasibility_tol", 0.0))
    eps = [r.epsilon * (1 + 2 * tol) for r in reports]
    if mode == "cascade":
        norms = [spectral_norm(original.get_submodule(r.name).weight) for r in reports]
        hinge = [bool(r.info.get("hinge", False)) for r in reports]
        # tolerances not exactly gamma gap_l^2 (floors, per-neuron radii), or hinge layers
        if settings.get("layer_epsilon") or settings.get("per_neuron") or any(hinge):
            gaps = [float(r.info.get("gap", 0.0)) for r in reports]
            return cascade_bound_measured(eps, gaps, norms[1:], hinge)
        return cascade_bound(eps[0], float(settings.get("gamma", 1.0)), norms[1:],
                             float(settings.get("kappa", 1.0)))
    norms = [spectral_norm(pruned.get_submodule(r.name).weight) for r in reports]
    return parallel_bound(eps, norms)
