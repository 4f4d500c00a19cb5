"""Network-level pruning: walk the prunable layers, run a layer method under a scheme, report.

``parallel``: every layer sees the original network's inputs (independent jobs).
``cascade``: layer l sees the already-pruned network's inputs, against the original targets.
"""
from __future__ import annotations

import collections
import copy
import resource
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..capture.batchnorm import fold_batchnorm, restore_batchnorm
from ..capture import LayerSpec, adapter_for, capture_rows, is_chain, network_output, trace_layers
from ..capture.memory import check_layers, parse_memory
from ..errors import require
from .base import LayerJob, LayerMethod, LayerOutcome
from .bounds import cascade_bound_measured, parallel_bound, spectral_norm
from .certificate import check_layer
from .cleanup import remove_dead_units
from . import resume
from .backend import Backend, LocalBackend, solve_job
from .report import LayerReport, PruneReport

MODES = ("cascade", "parallel")


@dataclass
class PruneResult:
    """``model``: the pruned deep copy (same classes, zeros in the weights); ``report``."""

    model: nn.Module
    report: PruneReport


def run_scheme(model: nn.Module, inputs: torch.Tensor, method: LayerMethod, *, mode: str,
               method_name: str, settings: dict, batch_size: int = 1024, cleanup: bool = False,
               progress: bool = True, layers: list[str] | None = None,
               on_layer=None, capture: dict | None = None,
               originals: dict | None = None, store=None, backend: Backend | None = None) -> PruneResult:
    """Prune a deep copy of ``model`` layer by layer with ``method`` under ``mode``.

    ``capture``: options for every layer's capture (``capture_layer``), e.g. ``max_rows`` and
    ``seed`` of the patch rows of Conv2d layers; default ``max_rows="auto"`` (see
    ``nettrim.capture.conv``). The same options are used for the original and the pruned
    network, so a cascade layer sees the same patch positions in both. ``max_memory`` (bytes,
    or a size such as "2GiB"; ``nettrim.capture.memory``) bounds the rows kept of each layer:
    a seeded uniform sample of them when the layer's rows do not fit, the same rows in the
    original and the pruned network; each layer is then solved and certified on those rows
    (its report's ``info``: ``rows_kept``, ``rows_total``, ``rows_limit``). A budget too small
    for a layer's minimum is a one-line error before any layer is solved.

    ``originals``: a dict shared by runs on the same model and inputs (``shrink``'s trials):
    the original network's captures are stored there on the first run and reused after. None:
    nothing is kept between layers (each layer's capture is freed once it is solved).

    ``store``: a ``nettrim.pruners.resume.RunStore``: each finished layer is kept there, and a
    layer already finished by an earlier run with the same fingerprint is loaded instead of
    solved (the report's ``resumed`` names those layers).

    ``backend`` (``nettrim.pruners.backend``; default in this process): where the layers of a
    parallel run and the neuron blocks of a per-neuron Net-Trim layer are solved. Cascade
    layers are solved one after the other whatever the backend.
    """
    capture = _capture_options(capture)
    require(mode in MODES, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    start = time.perf_counter()
    original, folded = fold_batchnorm(model, inputs[:2]) if _has_batchnorm(model) else (model, [])
    if folded:  # pruned on the folded layers; the result gets its BatchNorms back at the end
        settings = dict(settings, folded_batchnorm=[list(p) for p in folded])
    specs = trace_layers(original, inputs[:2])
    if layers is not None:
        unknown = sorted(set(layers) - {s.name for s in specs})
        require(not unknown, f"no prunable layer named {', '.join(unknown)}; "
                             f"prunable layers: {', '.join(s.name for s in specs)}")
    if capture.get("max_memory") is not None:  # every layer's budget, before any work
        require(getattr(method, "structure", "weights") == "weights",
                "max_memory is not supported with structure='units' yet: drop one of them")
        check_layers(original, [s.name for s in specs if layers is None or s.name in layers],
                     inputs, capture["max_memory"])
    if hasattr(method, "prepare"):  # e.g. structured Net-Trim: each layer's input units (groups)
        method.prepare(original, specs, inputs[:2])
    pruned = copy.deepcopy(original).eval()
    backend = backend or LocalBackend()
    if hasattr(method, "backend"):  # Net-Trim's per-neuron blocks
        method.backend = backend
    scope = resume.scheme_scope(store, model, inputs, method, mode, method_name, settings,
                                batch_size, layers, capture)
    chosen = [s for s in specs if layers is None or s.name in layers]
    done = _restore(scope, chosen, pruned)
    resumed = [s.name for s in chosen if s.name in done]
    todo = [s for s in chosen if s.name not in done]
    bar = tqdm(total=len(todo), desc=f"{method_name} {mode}", unit="layer", disable=not progress)
    jobs = collections.deque()  # the jobs made and not yet written back (one, in process)
    rows: dict[str, dict] = {}  # layer name -> rows kept / total / limit of its capture

    def make_jobs():
        for spec in todo:
            bar.set_postfix_str(spec.name)
            if progress and backend.in_process and hasattr(method, "progress"):
                method.progress = _admm_postfix(bar, spec.name)  # ADMM progress on the layer bar
            jobs.append(_make_job(original, pruned, spec, specs, inputs, mode, batch_size, capture,
                                  originals, rows))
            yield jobs[-1]

    # parallel: every job independent, mapped on the backend; cascade: one after the other here
    layer_backend = backend if mode == "parallel" else LocalBackend()
    for spec, (outcome, seconds) in zip(todo, layer_backend.map(solve_job, make_jobs(), method)):
        job = jobs.popleft()
        adapter_for(pruned.get_submodule(spec.name), spec.name).set(outcome.weight, outcome.bias)
        done[spec.name] = _layer_report(job, outcome, seconds, rows.pop(spec.name, {}))
        if capture.get("max_memory") is not None:  # freed before the next layer's capture
            _release(job)
        if scope is not None:
            scope.save_layer(spec.index, spec.name, outcome.weight, outcome.bias, done[spec.name])
        if on_layer is not None:
            on_layer(done[spec.name])
        bar.update()
    bar.close()
    reports = [done[s.name] for s in chosen]
    if cleanup and _cleanup(pruned, specs, reports):
        _recertify(original, pruned, specs, inputs, mode, batch_size, capture, reports, originals)
    out_orig = network_output(original, inputs, batch_size)
    out_new = network_output(pruned, inputs, batch_size)
    skipped = [s.name for s in specs if layers is not None and s.name not in layers]
    report = PruneReport(
        method=method_name, mode=mode, settings=settings, layers=reports,
        seconds=time.perf_counter() - start,
        output_error=float((out_new - out_orig).norm()), output_norm=float(out_orig.norm()),
        bound=None, skipped=skipped, resumed=resumed, peak_memory_mb=peak_memory_mb())
    cut = _sampled(reports)
    if cut:  # each layer certified on its own rows: no chain of the layers' claims holds on all
        report.settings = dict(report.settings, bound_withheld=(
            f"max_memory: layer(s) {', '.join(cut)} certified on a sample of their rows; the "
            f"network bound needs every layer's claim on the same inputs"))
    if not report.uncertified and is_chain(specs) and not cut:  # Theorems 1-2 assume a plain chain
        report.bound = _bound(mode, reports, original, pruned)
    if folded:  # back to the model's own classes: each BN only adds its layer's folded bias
        pruned = restore_batchnorm(pruned, model, folded)
    if hasattr(method, "finish"):  # structured Net-Trim: unread units removed, claims measured again
        pruned = method.finish(pruned, report, original=original, specs=specs, inputs=inputs, mode=mode,
                               batch_size=batch_size, capture=capture, originals=originals)
    return PruneResult(pruned, report)


def _capture_options(capture: dict | None) -> dict:
    """The capture options with their defaults (``max_rows="auto"``), ``max_memory`` in bytes."""
    capture = {"max_rows": "auto", **(capture or {})}
    if capture.get("max_memory") is not None:
        capture["max_memory"] = parse_memory(capture["max_memory"])
    return capture


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _restore(scope, chosen, pruned) -> dict:
    """The layers of ``chosen`` finished by an earlier run (``resume``), loaded into ``pruned``:
    name -> report."""
    done = {}
    for spec in chosen:
        got: list[LayerReport] = []
        if resume.restore_layer(scope, spec, pruned, got):
            done[spec.name] = got[0]
    return done


def _admm_postfix(bar, name: str):
    """A solver progress callback that shows iteration and converged neurons on ``bar``."""
    def show(iteration: int, done: int, total: int) -> None:
        bar.set_postfix_str(f"{name}: ADMM iteration {iteration}, {done}/{total} neurons done")
    return show


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())


def _make_job(original, pruned, spec: LayerSpec, specs, inputs, mode, batch_size,
              capture: dict, originals: dict | None = None, rows: dict | None = None) -> LayerJob:
    """The layer's job: X from the original network (parallel, first layer) or the pruned
    one (cascade), Y the original's target, on the rows ``capture`` keeps (the same rows in
    both networks). A later cascade layer never holds the original's inputs: only its
    outputs are captured there. ``rows``, when given, gets the layer's row counts."""
    cascade = mode == "cascade" and spec.index > 0
    cache = {} if originals is None else originals
    if spec.name not in cache:  # a later cascade layer keeps only the original's outputs
        cache[spec.name] = capture_rows(original, spec.name, inputs, batch_size,
                                        keep_inputs=not cascade, **capture)
    got = cache.pop(spec.name) if originals is None else cache[spec.name]
    Y = torch.relu(got.Z) if spec.relu else got.Z
    if cascade:  # Y is all this layer needs of the original network
        # layers before ``spec`` are already pruned in ``pruned``; ``spec`` itself is still original
        got = capture_rows(pruned, spec.name, inputs, batch_size, **capture)
    X, Z = got.X, got.Z
    if rows is not None:
        rows[spec.name] = _rows_info(got)
    weight, bias = adapter_for(original.get_submodule(spec.name), spec.name).get()
    return LayerJob(spec, weight, bias, X, Y, Z, first=spec.index == 0,
                    last=spec.index == len(specs) - 1, images=int(inputs.shape[0]),
                    shape=tuple(original.get_submodule(spec.name).weight.shape))


def _sampled(reports: list[LayerReport]) -> list[str]:
    """The layers whose rows ``max_memory`` cut to a sample (fewer kept than captured and
    the limit reached)."""
    return [r.name for r in reports
            if r.info.get("rows_limit") == r.info.get("rows_kept", -1) < r.info.get("rows_total", 0)]


def _release(job: LayerJob) -> None:
    """Drop a solved job's matrices (with ``max_memory``): the backend's loop still holds the
    job itself while the next layer is captured, and a layer method may keep it."""
    job.X = job.Y = job.Z = None


def _rows_info(got) -> dict:
    """rows_kept and rows_total of a layer's capture, and rows_limit when ``max_memory`` set one."""
    info = {"rows_kept": int(got.Z.shape[0]), "rows_total": int(got.rows_total)}
    if got.rows_limit is not None:
        info["rows_limit"] = int(got.rows_limit)
    return info


def _layer_report(job: LayerJob, outcome: LayerOutcome, seconds: float, rows: dict | None = None) -> LayerReport:
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
        samples=job.X.shape[0], certified=outcome.certified,
        info={"images": job.images, **(rows or {}), **outcome.info})


def _recertify(original, pruned, specs, inputs, mode, batch_size, capture, reports, originals) -> None:
    """Measure every certified layer's constraints again on the final model: removing dead
    units (a unit that feeds nothing loses its inputs) leaves the network's function as it was
    but may change a layer's own response; a claim that no longer holds loses its certificate."""
    by_name = {s.name: s for s in specs}
    for rep in reports:
        if rep.certified:
            job = _make_job(original, pruned, by_name[rep.name], specs, inputs, mode, batch_size,
                            capture, originals)
            weight, bias = adapter_for(pruned.get_submodule(rep.name), rep.name).get()
            check = check_layer(job, weight, bias, {"epsilon": rep.epsilon, "info": rep.info})
            rep.certified = check.holds
            if not check.holds:
                rep.info["certificate_lost"] = f"{check.claim}: {check.measured:.4g} > {check.limit:.4g} after dead-unit removal"


def _cleanup(pruned: nn.Module, specs, reports: list[LayerReport]) -> bool:
    """Remove dead units between consecutive Linear layers; True when anything was removed."""
    changed = False
    by_name = {r.name: r for r in reports}
    for a, b in zip(specs, specs[1:]):
        first, second = pruned.get_submodule(a.name), pruned.get_submodule(b.name)
        if not (a.feeds_next and isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
                and first.out_features == second.in_features):
            continue
        removed = remove_dead_units(first, second)
        changed = changed or removed > 0
        for spec, layer in ((a, first), (b, second)):
            if spec.name in by_name:
                rep = by_name[spec.name]
                new = int((layer.weight != 0).sum()) + (
                    int((layer.bias != 0).sum()) if layer.bias is not None else 0)
                rep.info["cleanup_removed"] = rep.info.get("cleanup_removed", 0) + rep.nnz_after - new
                rep.nnz_after = new
    return changed


def _bound(mode: str, reports: list[LayerReport], original: nn.Module, pruned: nn.Module) -> float | None:
    """Bound on ||Yhat_L - Y_L||_F implied by the per-layer tolerances (see ``bounds``): in
    cascade the measured recursion (any eps_l, hinge layers included; never looser than
    Theorem 2), in parallel Theorem 1's recursion. Only for certified Linear layers."""
    if any(r.kind != "linear" for r in reports):
        return None
    # each layer is certified up to eps (1 + tol) + floor on its discrepancy and tol eps + floor
    # on its inactive side (floor = 1e-6 ||Y_l|| + 1e-12, ``certificate``): the bound takes both
    eps = [r.epsilon * (1 + 2 * float(r.info.get("tolerance", 0.0))) + 2 * (1e-6 * r.target_norm + 1e-12)
           for r in reports]
    if mode == "cascade":
        norms = [spectral_norm(original.get_submodule(r.name).weight) for r in reports]
        hinge = [bool(r.info.get("hinge", False)) for r in reports]
        gaps = [float(r.info.get("gap", 0.0)) for r in reports]
        return cascade_bound_measured(eps, gaps, norms[1:], hinge)
    norms = [spectral_norm(pruned.get_submodule(r.name).weight) for r in reports]
    return parallel_bound(eps, norms)
