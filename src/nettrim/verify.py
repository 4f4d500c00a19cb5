"""``verify``: every number of a prune report recomputed from the weights and the calibration draw.

``verify(original, pruned, inputs, report)`` takes nothing in the report on trust but the claims
themselves. The report is checked against its schema once (``nettrim.report.schema``: a
malformed report is a one-line NettrimError), then, in this order:

1. **digests**: the sha256 of the original model's state and of the calibration rows against
   the recorded ones (a different original, or another draw, fails), and the number of inputs;
2. **structure**: the report's layers are prunable layers of the original, in its order; the
   pruned model holds the original's tensors (names, shapes, dtypes), every one finite;
3. **each layer**, its statistics streamed again exactly as the scheme streams them
   (``nettrim.stream.layer_stats``; in cascade the pruned network's inputs, always the
   original targets) and its report rebuilt by the scheme's own ``layer_report``:
   the sha256 of the pruned layer's tensors; kind, shape, program, non-zeros before and after,
   kept fraction, rows, ||Y||_F, discrepancy and response error; the certificate: the absolute
   tolerance recomputed from the recorded relative one, eps = relative_epsilon ||Y||_F (rule
   "tolerance"), or the recorded eps itself (rule "measured": the value the layer reached at its
   count *is* the claim); d and h by ``LayerProblem.measure``, the claim by
   ``Constraint.holds`` (the one definition of certified), limit and bound radius; for
   Net-Trim, the rule, inactive side, theta, feasibility tolerance and relative tolerance that
   its recorded options give on these rows; the certified flag and the status;
4. **the network**: totals, sparsity, status, uncertified and skipped layers, the output error
   and norm, the bound recomputed from the per-layer certificates (``network_bound``, the
   scheme's recursion) and ||Yhat_L - Y_L||_F <= bound; the sha256 of the pruned model's state.

Agreement: integers, flags, words and digests exactly; a real number within ``RTOL`` relative
plus an absolute FLOOR ||Y||_F (the certificate's own floating-point floor, FLOOR = 1e-6; the
network's output norm for network numbers). The result lists every check; its status is
"hold" (exit 0), "fail" (exit 1: a claim or a number does not hold, or the weights or draw are
not the report's) or "no_claims" (exit 4: every number agrees but the report certifies nothing,
no layer and no bound); bad input raises NettrimError (exit 2). Exit 3 is ``shrink``'s
budget unreachable.

What a certificate covers: the claims are about the calibration draw the report was written on
(its digest is checked); they say nothing about other inputs.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .api import checked_batches
from .errors import NettrimError, require
from .graph.adapters import get_U
from .graph.batchnorm import fold_batchnorm
from .graph.model import ModelGraph
from .methods import NetTrim
from .methods.base import LayerOutcome
from .options import is_int
from .program import FLOOR, Constraint
from .pruners.bounds import network_bound
from .report.digest import layer_digest, rows_digest, state_digest
from .report.schema import load_report
from .report.types import LayerReport, PruneReport, _finite
from .scheme import Plan, layer_job, layer_report
from .status import Status
from .stream import Batches, RowPlan, network_output

RTOL = 1e-5  # relative agreement of a recomputed real number with the report's
EXIT_CODES = {"hold": 0, "fail": 1, "no_claims": 4}
BAD_INPUT = 2  # a NettrimError: malformed report or file, wrong path or option


@dataclass(frozen=True)
class Check:
    """One comparison: ``name`` (a layer, "network", "original", "inputs", "pruned",
    "structure"), ``quantity`` (what was compared), ``value`` (recomputed), ``limit`` (the
    report's value, or the most a claim allows), ``holds``; ``relation``: "=" (agrees with the
    report), "<=" (a claim's inequality) or "sha256"."""

    name: str
    quantity: str
    value: Any
    limit: Any
    holds: bool
    relation: str = "="

    def line(self) -> str:
        where = f"layer '{self.name}'" if self.name not in _PLACES else self.name
        if self.relation == "sha256":
            state = "matches the report" if self.holds else (
                f"{_short(self.value)} differs from the report's {_short(self.limit)}: "
                "not what the report was written for")
            return f"{where}: {self.quantity} {state}"
        if self.relation == "<=":
            return f"{where}: {self.quantity}: {_num(self.value)} <= {_num(self.limit)} " \
                   f"{'holds' if self.holds else 'does NOT hold'}"
        return f"{where}: {self.quantity}: recomputed {_num(self.value)}, report {_num(self.limit)}" \
               + ("" if self.holds else " (disagree)")


_PLACES = ("network", "original", "inputs", "pruned", "structure")


def _short(digest) -> str:
    return f"{digest[:12]}..." if isinstance(digest, str) else _num(digest)


def _num(v) -> str:
    if isinstance(v, float):
        return f"{v:.9g}"
    if isinstance(v, (list, tuple)):
        text = "[" + ", ".join(_num(x) for x in v[:6]) + (", ..." if len(v) > 6 else "") + "]"
        return text
    return repr(v)


@dataclass
class Verification:
    """What ``verify`` found: every check, and ``claims``, the certified claims the report
    makes (certified layers plus the network bound). ``status``: "hold", "fail" or
    "no_claims"; ``exit_code``: 0, 1 or 4 (module docstring)."""

    checks: list[Check]
    claims: int

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.holds]

    @property
    def first_failure(self) -> Check | None:
        return next(iter(self.failures), None)

    @property
    def status(self) -> str:
        if self.failures:
            return "fail"
        return "hold" if self.claims else "no_claims"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def summary(self) -> str:
        """One line for people."""
        n = len(self.checks)
        if self.status == "fail":
            return f"FAIL: {self.first_failure.line()} ({len(self.failures)} of {n} checks fail)"
        if self.status == "no_claims":
            return (f"no claims: the report certifies nothing (no layer certified, no network bound); "
                    f"its {n} recomputed numbers agree with the weights")
        return f"hold: all {self.claims} certified claims and {n} recomputed numbers agree with the weights"

    def to_dict(self) -> dict:
        """Plain JSON data (non-finite numbers as None)."""
        return _finite({"status": self.status, "exit_code": self.exit_code, "claims": self.claims,
                "summary": self.summary(), "checks": [asdict(c) for c in self.checks]})


class _Checks:
    """The checks as they are made."""

    def __init__(self):
        self.items: list[Check] = []

    def add(self, name, quantity, value, limit, holds, relation="=") -> bool:
        self.items.append(Check(name, quantity, _plain(value), _plain(limit), bool(holds), relation))
        return bool(holds)

    def same(self, name, quantity, value, claimed) -> bool:
        return self.add(name, quantity, value, claimed, _plain(value) == _plain(claimed))

    def close(self, name, quantity, value, claimed, atol: float) -> bool:
        return self.add(name, quantity, value, claimed, agree(value, claimed, atol))

    def digest(self, name, quantity, value, claimed) -> bool:
        return self.add(name, quantity, value, claimed, value == claimed, "sha256")

    def claim(self, name, quantity, value, limit, holds) -> bool:
        return self.add(name, quantity, value, limit, holds, "<=")


def _plain(v):
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, Status):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def agree(value, claimed, atol: float) -> bool:
    """|value - claimed| <= RTOL max(|value|, |claimed|) + atol (elementwise for lists; None
    agrees only with None)."""
    if isinstance(value, (list, tuple)) or isinstance(claimed, (list, tuple)):
        return (isinstance(value, (list, tuple)) and isinstance(claimed, (list, tuple))
                and len(value) == len(claimed) and all(agree(a, b, atol) for a, b in zip(value, claimed)))
    if value is None or claimed is None:
        return value is None and claimed is None
    a, b = float(value), float(claimed)
    return a == b or abs(a - b) <= RTOL * max(abs(a), abs(b)) + atol


def read_report(path: str | Path) -> dict:
    """A report's JSON file as a dict (one-line NettrimError when it cannot be read or parsed);
    ``verify`` checks its schema."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NettrimError(f"cannot read the report {str(path)[:200]!r}: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise NettrimError(f"the report {str(path)[:200]!r} is not valid JSON: {str(exc)[:200]}") from None


def verify(original: nn.Module, pruned: nn.Module, inputs, report, *, batch_size: int = 1024) -> Verification:
    """Recompute every number of ``report`` (a ``PruneReport.to_dict()``, as read from JSON, or
    the PruneReport) from ``pruned``, ``original`` and the calibration ``inputs`` (a tensor or a
    re-iterable of batches) and compare (module docstring). NettrimError on bad input."""
    surgery = report.get("surgery") if isinstance(report, dict) else getattr(report, "surgery", None)
    require(not surgery, "this model was cut to fewer units (NetTrim(structure='units')): its claims were "
                         "measured on the cut network when it was pruned (each layer's info['cut']); verify "
                         "recomputes the claims of full-width pruned models only")
    claims = load_report(report)
    require(isinstance(original, nn.Module), f"original must be a torch.nn.Module, got {type(original).__name__}")
    require(isinstance(pruned, nn.Module), f"pruned must be a torch.nn.Module, got {type(pruned).__name__}")
    require(is_int(batch_size) and batch_size >= 1, f"batch_size must be an integer >= 1, got {batch_size!r}")
    batches = checked_batches(original, inputs, claims["mode"], batch_size)
    checks = _Checks()
    digests = claims["digests"]
    checks.digest("original", "sha256 of the original model's state", state_digest(original), digests["original"])
    checks.digest("inputs", "sha256 of the calibration rows", rows_digest(batches), digests["inputs"])
    checks.same("inputs", "calibration inputs (run.inputs)", batches.n_inputs, claims["run"]["inputs"])
    nets = _networks(original, pruned, batches, claims, checks)
    if nets is not None:
        reports = [_layer(nets, batches, claims, i, layer, checks) for i, layer in enumerate(claims["layers"])]
        _network(nets, batches, claims, reports, checks)
    certified = sum(layer["certified"] for layer in claims["layers"]) + (claims["bound"] is not None)
    return Verification(checks.items, certified)


@dataclass
class _Nets:
    """The two networks as the layers were pruned (BatchNorms folded) and the original's graph;
    ``pruned_as_given`` for the digests."""

    graph: ModelGraph
    original: nn.Module
    pruned: nn.Module
    pruned_as_given: nn.Module
    plan: Plan


def _networks(original, pruned, batches: Batches, claims: dict, checks: _Checks) -> _Nets | None:
    """The structure checks (module docstring, 2.); None when the weights cannot be compared."""
    graph = ModelGraph.build(original, batches.example)
    ModelGraph.build(pruned, batches.example)  # it runs on the inputs (one line if not)
    names = [layer["name"] for layer in claims["layers"]]
    unknown = [n for n in names if n not in graph.names]
    if not checks.same("structure", "report layers that are not prunable layers of the original", unknown, []):
        return None
    if not checks.same("structure", "the report's layers in the original's order",
                       names, [n for n in graph.names if n in names]):
        return None
    if not checks.same("structure", "the folded (layer, BatchNorm) pairs (run.folded_batchnorm)",
                       [list(p) for p in graph.bn_pairs], claims["run"].get("folded_batchnorm", [])):
        return None
    folded = fold_batchnorm(original, graph.bn_pairs) if graph.bn_pairs else original
    as_given, as_folded = _tensors(original), _tensors(folded)
    mine = _tensors(pruned)
    other = sorted(k for k in set(as_given) | set(mine) if as_given.get(k) != mine.get(k))
    if other and mine == as_folded:  # the pruned model in the folded architecture (BatchNorms gone)
        other = []
    if not checks.same("structure", "pruned tensors whose name, shape or dtype differ from the original's",
                       other[:5], []):
        return None
    modules = dict(pruned.named_modules())
    classes = [n for n in names if type(modules.get(n)) is not type(original.get_submodule(n))]
    if not checks.same("structure", "pruned layers of another class than the original's", classes[:5], []):
        return None
    bad = sorted(k for k, t in pruned.state_dict().items()
                 if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if not checks.same("structure", "pruned tensors with NaN or Inf", bad[:5], []):
        return None
    options = claims["run"]["options"]
    plan = Plan(claims["method"], None, claims["mode"],
                RowPlan(options["max_rows"], options["max_memory"], options["seed"]))
    if not graph.bn_pairs:
        return _Nets(graph, original, pruned, pruned, plan)
    pruned_folded = pruned if mine == as_folded else fold_batchnorm(pruned, graph.bn_pairs)
    return _Nets(ModelGraph.build(folded, batches.example), folded, pruned_folded, pruned, plan)


def _tensors(model: nn.Module) -> dict[str, tuple]:
    """name -> (shape, dtype) of the model's state."""
    return {k: (tuple(t.shape), str(t.dtype)) for k, t in model.state_dict().items()}


def _layer(nets: _Nets, batches: Batches, claims: dict, i: int, layer: dict, checks: _Checks) -> LayerReport:
    """One layer's checks (module docstring, 3.); its recomputed report."""
    name, cascade = layer["name"], claims["mode"] == "cascade"
    checks.digest(name, "sha256 of the pruned layer's tensors",
                  layer_digest(nets.pruned_as_given, name), claims["digests"]["layers"][name])
    node = nets.graph.node(name)
    job = layer_job(nets.original, nets.pruned if cascade and i else None, node, batches, nets.plan, i == 0,
               name == nets.graph.layers[-1].name)
    U = get_U(nets.pruned.get_submodule(name), name).to(job.weight)
    cert = layer["certificate"]
    claim, theta = _claimed(cert, job, name, checks)
    outcome = LayerOutcome(U, Status(layer["status"]), claim, theta,
                           measured_claim=cert is not None and cert["rule"] == "measured", info=layer["info"])
    rep = layer_report(job, outcome, layer["seconds"])
    atol = FLOOR * rep.target_norm + 1e-12
    for key in ("kind", "shape", "relu", "nnz_before", "nnz_after", "total", "rows", "rows_total"):
        checks.same(name, key, getattr(rep, key), layer[key])
    checks.close(name, "kept_fraction", rep.kept_fraction, layer["kept_fraction"], 0.0)
    checks.close(name, "target_norm ||Y||_F", rep.target_norm, layer["target_norm"], atol)
    checks.close(name, "discrepancy ||(U^T X - Y)_Omega||_F", rep.discrepancy, layer["discrepancy"], atol)
    checks.close(name, "response_error ||act(U^T X) - Y||_F", rep.response_error, layer["response_error"], atol)
    makes_claims = isinstance(nets.plan.method, NetTrim)
    checks.same(name, f"certificate given ({nets.plan.method.name} "
                      f"{'claims a tolerance on every layer' if makes_claims else 'makes no claim'})",
                makes_claims, cert is not None)
    if nets.plan.method.needs_target:
        checks.same(name, f"a count target in the run ({nets.plan.method.name} prunes to a count only)",
                    True, _has_target(claims, name))
    if cert is not None and rep.certificate is not None:
        if makes_claims:
            _rule_checks(nets.plan.method, job, cert, claims, checks)
        _certificate_checks(rep, cert, atol, checks)
    checks.same(name, "certified", rep.certified, layer["certified"])
    checks.same(name, "status", str(rep.status), layer["status"])
    return rep


def _claimed(cert: dict | None, job, name: str, checks: _Checks) -> tuple[Constraint | None, float | None]:
    """The layer's claim as the report states it, with its tolerance recomputed on these rows:
    eps = relative_epsilon ||Y||_F (rule "tolerance"; per-neuron radii keep their recorded
    proportions) or the recorded eps (rule "measured"). None when it cannot be stated."""
    if cert is None:
        return None, None
    radii = cert["radii"]
    if radii is not None and not checks.same(name, "certificate.radii: one radius per neuron",
                                             len(radii), job.stats.n_outputs):
        return None, None
    total = cert["relative_epsilon"] * job.target_norm if cert["rule"] == "tolerance" else cert["epsilon"]
    if radii is None:
        eps = torch.tensor([total], dtype=torch.float64)
    else:
        eps = torch.tensor(radii, dtype=torch.float64)
        if cert["rule"] == "tolerance" and float(eps.norm()) > 0:
            eps = eps * (total / float(eps.norm()))
    return Constraint(eps, radii is not None, cert["inactive"], cert["tolerance"]), cert["theta"]


def _rule_checks(method: NetTrim, job, cert: dict, claims: dict, checks: _Checks) -> None:
    """The claim Net-Trim's recorded options give on these rows: rule, one ball or one per
    neuron, inactive side, theta, feasibility tolerance and (rule "tolerance") the relative
    tolerance, per neuron with radii."""
    name = job.name
    rule = method.constraint(job)
    checks.same(name, "certificate.rule (a count target gives 'measured')",
                "measured" if _has_target(claims, name) else "tolerance", cert["rule"])
    checks.same(name, "one ball per neuron (NetTrim per_neuron)", rule.per_neuron, cert["radii"] is not None)
    checks.same(name, "certificate.inactive (NetTrim's program)", rule.inactive, cert["inactive"])
    checks.same(name, "certificate.theta (NetTrim margin)", method.theta(job), cert["theta"])
    checks.close(name, "certificate.tolerance (NetTrim settings.feasibility_tol)", rule.tol, cert["tolerance"], 0.0)
    if cert["rule"] != "tolerance":
        return
    norm = max(job.target_norm, 1e-300)
    checks.close(name, f"certificate.relative_epsilon (NetTrim's rule on these rows, epsilon={method.epsilon:g})",
                 rule.radius / norm, cert["relative_epsilon"], FLOOR)
    if rule.per_neuron and cert["radii"] is not None and len(cert["radii"]) == len(rule.eps):
        checks.close(name, "certificate.radii (NetTrim's rule, per neuron)", [float(r) for r in rule.eps],
                     cert["radii"], FLOOR * job.target_norm + 1e-12)


def _has_target(claims: dict, name: str) -> bool:
    """Whether the run pruned layer ``name`` to a count (its sparsity, or a count of its own)."""
    run = claims["run"]
    return run["sparsity"] is not None or name in (run["counts"] or {})


def _certificate_checks(rep: LayerReport, cert: dict, atol: float, checks: _Checks) -> None:
    """The recomputed certificate against the recorded one; the claim itself."""
    name, mine = rep.name, rep.certificate
    checks.same(name, "certificate.claim", mine.claim, cert["claim"])
    how = ("(= relative_epsilon ||Y||_F on these rows)" if cert["rule"] == "tolerance"
           else "(rule 'measured': the recorded eps is the claim)")
    checks.close(name, f"certificate.epsilon {how}", mine.epsilon, cert["epsilon"], atol)
    checks.close(name, "certificate.relative_epsilon = epsilon / ||Y||_F", mine.relative_epsilon,
                 cert["relative_epsilon"], FLOOR)
    if cert["radii"] is not None:
        checks.close(name, "certificate.radii", mine.radii, cert["radii"], atol)
    for key, what in (("discrepancy", "d"), ("excess", "h"), ("measured", "the claimed quantity"),
                      ("limit", "eps (1 + tol) + floor"), ("gap", "||(W^T X - Y)_Omega||_F"),
                      ("bound_radius", "eps (1 + 2 tol) + 2 floor")):
        checks.close(name, f"certificate.{key} ({what})", getattr(mine, key), cert[key], atol)
    if cert["holds"]:
        checks.claim(name, f"the claim {mine.claim} (Constraint.holds)", mine.measured, mine.limit, mine.holds)
    else:
        checks.same(name, "certificate.holds", mine.holds, False)


def _network(nets: _Nets, batches: Batches, claims: dict, reports: list[LayerReport], checks: _Checks) -> None:
    """The network's checks (module docstring, 4.)."""
    names = [r.name for r in reports]
    out_o, out_p = network_output(nets.original, batches), network_output(nets.pruned, batches)
    mine = PruneReport(method=nets.plan.method.record(), mode=claims["mode"], layers=reports, seconds=0.0,
                       output_error=float((out_p - out_o).double().norm()),
                       output_norm=float(out_o.double().norm()), bound=None,
                       skipped=[n for n in nets.graph.names if n not in names])
    mine.bound, _ = network_bound(mine, nets.graph, nets.original, nets.pruned)
    atol = FLOOR * mine.output_norm + 1e-12
    for key in ("nnz_before", "nnz_after", "total", "uncertified", "skipped"):
        checks.same("network", key, getattr(mine, key), claims[key])
    checks.close("network", "sparsity", mine.sparsity, claims["sparsity"], 0.0)
    checks.same("network", "status", str(mine.status), claims["status"])
    checks.close("network", "output_norm ||Y_L||_F", mine.output_norm, claims["output_norm"], atol)
    checks.close("network", "output_error ||Yhat_L - Y_L||_F", mine.output_error, claims["output_error"], atol)
    checks.close("network", "bound (from the layers' certificates)", mine.bound, claims["bound"], atol)
    if claims["bound"] is not None:
        bound = claims["bound"]
        checks.claim("network", "||Yhat_L - Y_L||_F <= bound", mine.output_error, bound,
                     mine.output_error <= bound * (1 + RTOL) + atol)
    checks.digest("pruned", "sha256 of the pruned model's state", state_digest(nets.pruned_as_given),
                  claims["digests"]["pruned"])
