"""The schemes: every prunable layer pruned in turn, parallel or cascade.

``parallel``: every layer sees the original network's inputs and targets (independent jobs,
mapped on the backend). ``cascade``: layer l sees the already-pruned network's inputs against
the original network's targets, so later layers correct what earlier ones changed.

For each layer the scheme streams its statistics (``nettrim.stream``), hands the
:class:`~nettrim.methods.base.LayerJob` to the method (``at_tolerance`` or ``at_count``),
measures the method's claim on the job's rows (the layer's certificate), writes the weights
back into the pruned copy and reports.
"""
from __future__ import annotations

import copy
import math
import resource
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import NettrimError
from .pruners.backend import LocalBackend
from .pruners.bounds import network_bound
from .graph.adapters import get_U, set_U
from .graph.batchnorm import fold_batchnorm, restore_batchnorm
from .graph.model import LayerNode, ModelGraph
from .methods.base import LayerJob, LayerOutcome, Method
from .report.types import Certificate, LayerReport, PruneReport
from .stream import Batches, RowPlan, layer_stats, network_output
from .status import Status

MODES = ("cascade", "parallel")


@dataclass
class PruneResult:
    """``model``: the pruned deep copy (same classes, zeros in the weights); ``report``."""

    model: nn.Module
    report: PruneReport


@dataclass
class Plan:
    """One run: the method, its target (None: the method's tolerance; else keep counts per
    layer name), the mode, and how rows are kept."""

    method: Method
    counts: dict[str, int] | None
    mode: str
    rows: RowPlan
    layers: tuple[str, ...] | None = None
    progress: bool = True
    backend: object = None
    scope: object = None  # a nettrim.pruners.resume Scope keeping finished layers
    resumed: list = field(default_factory=list)
    groups: dict | None = None  # per layer name, the input unit of each input feature (units runs)


def run_scheme(model: nn.Module, batches: Batches, plan: Plan) -> PruneResult:
    """Prune a deep copy of ``model`` under ``plan`` (module docstring)."""
    start = time.perf_counter()
    graph = ModelGraph.build(model, batches.example)
    bn_pairs = graph.bn_pairs
    original = fold_batchnorm(model, bn_pairs) if bn_pairs else model
    if bn_pairs:  # pruned on the folded layers; the BatchNorms come back at the end
        graph = ModelGraph.build(original, batches.example)
    pruned = copy.deepcopy(original).eval()
    chosen = [n for n in graph.layers if plan.layers is None or n.name in plan.layers]
    reports = _prune_layers(original, pruned, graph, chosen, batches, plan)
    report = _network_report(plan, graph, original, pruned, batches, reports, start)
    if bn_pairs:
        pruned = restore_batchnorm(pruned, model, bn_pairs)
    from .report.digest import report_digests  # what verify checks the weights and the draw against
    report.digests = report_digests(model, pruned, [r.name for r in report.layers], batches)
    return PruneResult(pruned, report)


def _prune_layers(original, pruned, graph: ModelGraph, chosen: list[LayerNode], batches, plan: Plan):
    """Every chosen layer, in order: cascade one after the other here, parallel on the backend.
    With a run store the layers an earlier run of the same computation finished are restored
    as saved and only the others solved (in a cascade these see the same inputs as then: the
    layers before them are the saved bits or solved again to the same bits)."""
    progress = Progress(plan.progress, len(chosen), f"{plan.method.name} {plan.mode}")
    last = graph.layers[-1].name
    cascade = plan.mode == "cascade"
    backend = (plan.backend or LocalBackend()) if not cascade else LocalBackend()
    reports: dict[int, LayerReport] = {}
    if plan.scope is not None:  # a resumed run: every finished layer as it was saved
        for i, node in enumerate(chosen):
            done = _restored(plan.scope, i, node.name)
            if done is not None:
                set_U(pruned.get_submodule(node.name), done[0], node.name)
                reports[i] = done[1]
                plan.resumed.append(node.name)
                progress.layer(done[1])
    todo = [i for i in range(len(chosen)) if i not in reports]
    made = {}  # the jobs handed to the backend and not yet answered (kept here: only answers travel back)

    def jobs():
        for i in todo:
            made[i] = layer_job(original, pruned if cascade and i else None, chosen[i], batches, plan, i == 0,
                           chosen[i].name == last)
            yield made[i]

    for i, (outcome, seconds) in zip(todo, backend.map(_solve, jobs(), plan)):
        node, job = chosen[i], made.pop(i)
        U = outcome.U.to(job.weight)
        set_U(pruned.get_submodule(node.name), U, node.name)
        reports[i] = layer_report(job, outcome, seconds)
        if plan.scope is not None:
            plan.scope.save_layer(i, node.name, U, None, reports[i].to_dict())
        progress.layer(reports[i])
    progress.close()
    return [reports[i] for i in range(len(chosen))]


def _restored(scope, index: int, name: str):
    """(U, LayerReport) of a layer an earlier run of the same computation finished, or None."""
    done = scope.layer(index, name)
    if done is None:
        return None
    try:
        return done[0], LayerReport.from_dict(done[2])
    except (TypeError, KeyError, ValueError):
        return None  # a report of another version: solve the layer again


def layer_job(original, pruned, node: LayerNode, batches, plan: Plan, first: bool, last: bool) -> LayerJob:
    """Layer ``node``'s job: its statistics streamed through ``original`` (its inputs through
    ``pruned`` when given: the cascade), its original weights, the plan's groups for it."""
    hold = node.relu or plan.method.needs_rows
    stats = layer_stats(original, node.name, batches, relu=node.relu, hold=hold, plan=plan.rows, pruned=pruned)
    check_magnitude(node.name, stats)
    module = original.get_submodule(node.name)
    return LayerJob(node.name, node.kind, node.relu, stats, get_U(module, node.name).to(stats.gram.device),
                    getattr(module, "bias", None) is not None, plan.mode, first, last,
                    tuple(module.weight.shape), (plan.groups or {}).get(node.name))


def check_magnitude(name: str, stats) -> None:
    """A one-line error when a layer's rows do not fit the solvers: every held row and the
    root mean square of every input and target column (sqrt(G_jj / P), sqrt(t_m / P)) must be
    finite in float32, the dtype the rows are solved in."""
    rows = max(stats.rows, 1)
    squares = torch.cat([stats.gram.diagonal(), stats.target_sq, torch.zeros(1, dtype=torch.float64,
                                                                          device=stats.gram.device)])
    finite = bool(torch.isfinite(squares).all() and torch.isfinite(stats.cross).all())
    top = float(squares.max()) if finite else math.inf
    if stats.held:
        finite = finite and bool(torch.isfinite(stats.A).all() and torch.isfinite(stats.Y).all())
    if not finite or math.sqrt(top / rows) >= torch.finfo(torch.float32).max:
        raise NettrimError(f"layer '{name}': its calibration rows do not fit the solvers' float32 (values "
                           f"beyond {torch.finfo(torch.float32).max:.3g}, or NaN): the calibration inputs are "
                           "too large (or the model's activations overflow); scale the inputs down")


def _solve(job: LayerJob, plan: Plan):
    """The method on one job (a map function): (outcome, seconds)."""
    t0 = time.perf_counter()
    if plan.counts is None:
        outcome = plan.method.at_tolerance(job)
    else:
        outcome = plan.method.at_count(job, plan.counts[job.name])
    return outcome, time.perf_counter() - t0


def certificate(job: LayerJob, outcome: LayerOutcome) -> Certificate | None:
    """The layer's claim measured on its rows (None for a method without a claim)."""
    claim = outcome.claim
    if claim is None:
        return None
    problem = job.problem(claim, outcome.theta)
    m = problem.measure(outcome.U)
    return Certificate(
        claim=claim.claim, rule="measured" if outcome.measured_claim else "tolerance",
        epsilon=claim.radius, relative_epsilon=claim.radius / max(job.target_norm, 1e-300),
        radii=[float(r) for r in claim.eps] if claim.per_neuron else None,
        inactive=claim.inactive, theta=outcome.theta, tolerance=claim.tol, discrepancy=m.d,
        excess=m.h, measured=claim.total(m), limit=claim.limit(m.target_norm), holds=claim.holds(m),
        gap=float(job.gap.norm()), bound_radius=claim.certified_radius(m.target_norm))


def layer_report(job: LayerJob, outcome: LayerOutcome, seconds: float) -> LayerReport:
    """The layer's report: counts, errors measured on its rows, status, certificate."""
    U, W = outcome.U, job.weight
    cert = certificate(job, outcome)
    status = outcome.status
    if status == Status.SOLVED and cert is not None and not cert.holds:
        status = Status.MAX_ITERATIONS
    disc, response = response_errors(job, U)
    return LayerReport(
        name=job.name, kind=job.kind, shape=list(job.shape), relu=job.relu,
        nnz_before=int((W != 0).sum()), nnz_after=int((U != 0).sum()), total=W.numel(),
        status=status, seconds=seconds, rows=job.stats.rows, rows_total=job.stats.rows_total,
        target_norm=job.target_norm, discrepancy=disc, response_error=response, certificate=cert,
        solver=None if outcome.solver is None else outcome.solver.record(), info=dict(outcome.info))


def response_errors(job: LayerJob, U: torch.Tensor) -> tuple[float, float]:
    """(||(A U - Y)_Omega||, ||act(A U) - Y||) on the job's rows."""
    from .program import Constraint

    problem = job.problem(Constraint(torch.ones(1), False, "none"), theta=None)
    d = problem.measure(U).d
    if not (job.relu and job.stats.held):
        return d, d
    A, Y = job.stats.A, job.stats.Y
    err = sum(float((torch.relu(A[s:s + 8192].double() @ U.double()) - Y[s:s + 8192].double()).square().sum())
              for s in range(0, A.shape[0], 8192))
    return d, err ** 0.5


def _network_report(plan: Plan, graph: ModelGraph, original, pruned, batches, reports, start) -> PruneReport:
    out_orig, out_new = network_output(original, batches), network_output(pruned, batches)
    skipped = [n.name for n in graph.layers if plan.layers is not None and n.name not in plan.layers]
    report = PruneReport(
        method=plan.method.record(), mode=plan.mode, layers=reports, seconds=time.perf_counter() - start,
        output_error=float((out_new - out_orig).double().norm()), output_norm=float(out_orig.double().norm()),
        bound=None, skipped=skipped, resumed=list(plan.resumed), peak_memory_mb=peak_memory_mb())
    report.bound, why = network_bound(report, graph, original, pruned)
    if why:
        report.notes.append(why)
    return report


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Progress:
    """Progress of a run: a bar on a terminal; one line per layer (name, seconds, kept) when
    stderr is not a terminal (a log), never carriage returns there."""

    def __init__(self, enabled: bool, total: int, desc: str):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, unit="layer", file=sys.stderr) if self.tty else None

    def layer(self, r: LayerReport) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{r.name}: {100 * r.kept_fraction:.1f} % kept")
            self.bar.update()
        elif self.enabled:
            print(f"layer {r.name}: {r.seconds:.1f} s, {100 * r.kept_fraction:.1f} % kept"
                  + ("" if r.certificate is None else f", {'certified' if r.certified else 'NOT certified'}"),
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
