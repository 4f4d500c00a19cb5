"""``structure="units"`` runs (docs/structured.md): the unit plan before the scheme, the cut
after it, and every layer's claim measured again on the cut network.

Before the scheme, the model's unit plan (``nettrim.graph.surgery.plan_units``) refuses in one
line a model no layer of which can lose units, and gives the groups of a Linear behind a
Flatten (the H x W features of one channel are one input unit).

After it, the zeroed network is cut (``nettrim.graph.surgery.cut``) and each pruned layer's
claim is measured on the cut network, for the output units K it keeps (a placeholder, which
nothing reads, excluded):

* its rows: in cascade (after the first pruned layer) the cut network's own inputs to the layer,
  on the same calibration rows as its job (the same conv positions, the same sample); in
  parallel and for the first layer, the original network's inputs restricted to the input units
  the cut layer keeps;
* its response Z~ = A~ U~ on those rows, on K;
* the program the layer was solved under, restricted to K: the original targets Y_K, the slack
  V_K (the original weights on the zeroed network's inputs), the ball(s) and tolerance of its
  claim: d_K = ||(Z~ - Y)_{Omega, K}||_F, h_K = ||(Z~ - V)_{Omega^c, K, +}||_F.

Removed inputs had zero weights and removed outputs are read by nothing, so the restricted
claim holds whenever the cut layer computes on K what the zeroed layer computed; the run
measures that difference (``info["cut"]["response_max_abs_diff"]``). The layer's certificate
becomes this measurement; the full-width one stays in ``info["cut"]["before"]``. A claim can
fail here only in parallel mode after a constant unit was folded into the next layer's bias
(that layer's response on the original inputs changes); the network bound is then withheld.
"""
from __future__ import annotations

from dataclasses import replace
from functools import cached_property

import torch
from torch import nn

from .errors import require
from .graph import surgery
from .graph.adapters import get_U
from .graph.batchnorm import fold_batchnorm
from .graph.conv import ConvAdapter
from .graph.model import ModelGraph
from .graph.trace import plain_forward
from .program import Constraint, LayerProblem, LayerStats
from .program.stats import stats_of_rows
from .report.digest import report_digests
from .report.types import Certificate, LayerReport
from .scheme import Plan, PruneResult, layer_job
from .stream import Batches, layer_stats, network_output, output_tensor


def unit_plan(model: nn.Module, batches: Batches, method, targeted: bool) -> surgery.UnitPlan | None:
    """The unit plan of a ``structure="units"`` run (None for any other run); one-line errors
    for a sparsity or counts target (``targeted``) and for a model no layer of which can lose
    units."""
    if getattr(method, "structure", "weights") != "units":
        return None
    require(not targeted, "structure='units' applies to Net-Trim's tolerance, not to a sparsity or "
                             "counts target: drop sparsity/counts and set epsilon")
    plan = surgery.plan_units(model, batches.example)
    plan.refuse_if_empty()
    return plan


def finish_units(result: PruneResult, model: nn.Module, batches: Batches, plan: Plan,
                 units: surgery.UnitPlan) -> PruneResult:
    """The cut network of a finished units run, its report measured on it (module docstring):
    each layer's certificate, ``nnz_after`` and ``info["cut"]``; ``report.surgery`` (widths,
    kept units, folded constants, placeholders, fixed layers, the largest output difference to
    the zeroed network); ``report.output_error`` on the cut network."""
    zeroed, report = result.model, result.report
    cut = surgery.cut(zeroed, units, batches.example)
    pairs = ModelGraph.build(model, batches.example).bn_pairs
    fold = (lambda m: fold_batchnorm(m, pairs)) if pairs else (lambda m: m)
    original_f, zeroed_f, cut_f = fold(model), fold(zeroed), fold(cut.model)
    graph = ModelGraph.build(original_f, batches.example)
    widths = {r.name: get_U(original_f.get_submodule(r.name)).shape[1] for r in report.layers}
    measured = {n: cut.measured_units(n, m) for n, m in widths.items()}
    diffs, out_diff, outputs = _differences(zeroed, cut, measured, batches)
    reference = network_output(model, batches)
    for i, rep in enumerate(report.layers):
        node = graph.node(rep.name)
        job = layer_job(original_f, zeroed_f if plan.mode == "cascade" and i else None, node, batches,
                        plan, i == 0, node.name == graph.layers[-1].name)
        layer = cut_f.get_submodule(rep.name)
        before = rep.certificate
        rep.nnz_after = int((get_U(layer) != 0).sum())
        rep.info["cut"] = {"units": [widths[rep.name], int(get_U(layer).shape[1])],
                           "shape": list(cut.model.get_submodule(rep.name).weight.shape),
                           "response_max_abs_diff": diffs[rep.name]}
        if before is None:
            continue
        rep.certificate = _certificate(rep, job, cut, units, cut_f, original_f, batches, plan, i == 0)
        rep.info["cut"]["before"] = {"measured": before.measured, "limit": before.limit, "holds": before.holds}
        if before.holds and not rep.certificate.holds:
            report.notes.append(f"layer '{rep.name}': its claim does not hold on the cut network "
                                f"({rep.certificate.measured:.4g} > {rep.certificate.limit:.4g})")
    if report.bound is not None and report.uncertified:
        report.bound = None
    report.output_error = float((outputs - reference).double().norm())
    report.surgery = {**cut.record(), "output_max_abs_diff": out_diff}
    report.digests = report_digests(model, cut.model, [r.name for r in report.layers], batches)
    return PruneResult(cut.model, report)


class _GivenSlack(LayerProblem):
    """A layer program whose slack V is given (that of the program the layer was solved
    under, restricted to the units kept), not computed from ``weight``."""

    def __init__(self, *args, slack: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "_given", slack)

    @cached_property
    def V(self) -> torch.Tensor:
        return torch.zeros_like(self.Y) if self._given is None else self._given


def _certificate(rep: LayerReport, job, cut: surgery.Cut, units: surgery.UnitPlan, cut_f: nn.Module,
                 original_f: nn.Module, batches: Batches, plan: Plan, first: bool) -> Certificate:
    """The layer's claim measured on the cut network (module docstring)."""
    cert, name = rep.certificate, rep.name
    M = job.weight.shape[1]
    K = torch.tensor(cut.measured_units(name, M), dtype=torch.long)
    kept = cut.kept.get(name, list(range(M)))
    at = torch.tensor([kept.index(u) for u in K.tolist()], dtype=torch.long)
    rows = _input_rows(name, job, cut, units)
    if plan.mode == "cascade" and not first:
        same = replace(plan.rows, max_rows=_rows_of(original_f.get_submodule(name), plan.rows.max_rows))
        stats = layer_stats(original_f, name, batches, relu=job.relu, hold=job.stats.held, plan=same,
                            pruned=cut_f)
        stats = _restricted(stats, None, K)
    else:
        stats = _restricted(job.stats, rows, K)
    per_neuron = cert.radii is not None
    eps = torch.tensor(cert.radii if per_neuron else [cert.epsilon], dtype=torch.float64)
    claim = Constraint(eps, per_neuron, cert.inactive, cert.tolerance)
    solved = job.problem(claim, cert.theta)
    restricted = replace(claim, eps=eps[K]) if per_neuron else claim
    weight = (job.weight if rows is None else job.weight[rows.to(job.weight.device)])[:, K.to(job.weight.device)]
    slack = solved.V[:, K.to(solved.Y.device)] if solved.relu else None
    problem = _GivenSlack(stats, restricted, weight, solved.relu, cert.theta, slack=slack)
    U = get_U(cut_f.get_submodule(name))[:, at.to(weight.device)]
    m = problem.measure(U)
    return replace(cert, epsilon=restricted.radius, relative_epsilon=restricted.radius / max(job.target_norm, 1e-300),
                   radii=[float(r) for r in restricted.eps] if per_neuron else None, discrepancy=m.d,
                   excess=m.h, measured=restricted.total(m), limit=restricted.limit(m.target_norm),
                   holds=restricted.holds(m), gap=float(job.gap[K.to(job.gap.device)].norm()),
                   bound_radius=restricted.certified_radius(m.target_norm))


def _input_rows(name: str, job, cut: surgery.Cut, units: surgery.UnitPlan) -> torch.Tensor | None:
    """The rows of the layer's U (its input features, then the bias) the cut layer keeps, or
    None for all: a Linear keeps each kept unit's block of columns, a Conv2d its patch columns
    (c, kh, kw)."""
    reading = units.reading()
    if name not in reading:
        return None
    link, how = reading[name]
    kept = torch.tensor(cut.kept[link.layer], dtype=torch.long)
    per = how.block if not how.maps else (job.weight.shape[0] - int(job.bias)) // link.units
    cols = (kept[:, None] * per + torch.arange(per)).flatten()
    if job.bias:
        cols = torch.cat([cols, torch.tensor([job.weight.shape[0] - 1])])
    return cols


def _rows_of(module: nn.Module, max_rows):
    """The patch rows the original Conv2d keeps (its own count, not the narrower layer's)."""
    return ConvAdapter(module, max_rows=max_rows).max_rows if isinstance(module, nn.Conv2d) else max_rows


def _restricted(stats: LayerStats, inputs: torch.Tensor | None, outputs: torch.Tensor) -> LayerStats:
    """The statistics of the rows' input columns ``inputs`` (None: all) and targets ``outputs``."""
    if stats.held:
        A = stats.A if inputs is None else stats.A[:, inputs.to(stats.A.device)]
        return stats_of_rows(A, stats.Y[:, outputs.to(stats.Y.device)], bias=stats.bias, rows_total=stats.rows_total)
    i = slice(None) if inputs is None else inputs.to(stats.gram.device)
    o = outputs.to(stats.gram.device)
    check = None if stats.check is None else _restricted(stats.check, inputs, outputs)
    return LayerStats(stats.gram[i][:, i], stats.cross[i][:, o], stats.target_sq[o], stats.rows,
                      stats.rows_total, stats.bias, check=check)


@torch.no_grad()
def _differences(zeroed: nn.Module, cut: surgery.Cut, measured: dict[str, list[int]], batches: Batches):
    """Per layer, the largest |cut response - zeroed response| on its measured units; the
    largest output difference; the cut network's outputs; on every calibration batch."""
    small = cut.model
    at = {n: torch.tensor(k if n not in cut.kept else [cut.kept[n].index(u) for u in k], dtype=torch.long)
          for n, k in measured.items()}
    diffs, out_diff, outputs = dict.fromkeys(measured, 0.0), 0.0, []
    for batch in batches:
        a, seen_a = _run(zeroed, list(measured), batch)
        b, seen_b = _run(small, list(measured), batch)
        for n, k in measured.items():
            dim = 1 if seen_a[n].ndim == 4 else -1
            ref = seen_a[n].index_select(dim, torch.tensor(k, dtype=torch.long, device=seen_a[n].device))
            got = seen_b[n].index_select(dim, at[n].to(seen_b[n].device))
            if ref.numel():
                diffs[n] = max(diffs[n], float((got - ref).abs().max()))
        out_diff = max(out_diff, float((b - a).abs().max()))
        outputs.append(b)
    return diffs, out_diff, torch.cat(outputs)


def _run(model: nn.Module, names: list[str], batch: torch.Tensor):
    """The model's output on ``batch`` (eval mode) and the outputs of the layers ``names``."""
    seen = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda mod, args, out, n=n: seen.__setitem__(n, out.detach())) for n in names]
    was_training = model.training
    model.eval()
    try:
        with plain_forward():
            out = output_tensor(model(batch))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return out, seen
