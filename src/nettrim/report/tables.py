"""Plain-text tables for the terminal, from a PruneReport."""
from __future__ import annotations

from ..pruners.report import PruneReport


def layer_table(report: PruneReport) -> str:
    """Per layer: shape, program, non-zeros before -> after, kept %, eps, discrepancy/eps,
    status, time.

    The program is "relu" (the layer's own ReLU follows it; the tolerance bounds its response)
    or "linear" (anything else follows: the tolerance bounds its pre-activation, and what reads
    it moves by at most its Lipschitz constant times that, docs/any-model.md); a footnote says
    so when a linear layer is listed; "-" for a layer pruned without a tolerance (a rival
    method, a fixed count). A solve that stopped at its iteration cap but whose
    weights meet the constraints (measured) shows as "feasible, capped"."""
    head = f"{'layer':<12}{'shape':>12}{'program':>9}{'nnz before':>12}{'nnz after':>11}{'kept':>8}" \
           f"{'eps':>10}{'disc/eps':>10}{'status':>18}{'iters':>7}{'sec':>8}"
    rows = [head, "-" * len(head)]
    for r in report.layers:
        ratio = f"{r.discrepancy / r.epsilon:.3f}" if r.epsilon else "-"
        eps = f"{r.epsilon:.3g}" if r.epsilon is not None else "-"
        rows.append(f"{r.name:<12}{'x'.join(map(str, r.shape)):>12}{_program(r):>9}{r.nnz_before:>12}"
                    f"{r.nnz_after:>11}{100 * r.kept_fraction:>7.2f}%{eps:>10}{ratio:>10}"
                    f"{status_label(r):>18}{r.iterations:>7}{r.seconds:>8.1f}")
    rows.append("-" * len(head))
    rows.append(f"{'total':<12}{'':>21}{report.nnz_before:>12}{report.nnz_after:>11}"
                f"{100 * (1 - report.sparsity):>7.2f}%   ({100 * report.sparsity:.2f} % removed, "
                f"{report.seconds:.1f} s)")
    if any(_program(r) == "linear" for r in report.layers):
        rows.append(LINEAR_NOTE)
    return "\n".join(rows)


LINEAR_NOTE = ("linear: eps bounds the pre-activation; an activation after it moves at most "
               "its Lipschitz constant times that (docs/any-model.md)")


def _program(r) -> str:
    """What the layer's tolerance bounds: "relu" (its response, its own ReLU following it),
    "linear" (its pre-activation), "-" when it was pruned without a tolerance."""
    if r.epsilon is None:
        return "-"
    return "relu" if r.relu else "linear"


def status_label(r) -> str:
    """A layer report's status for people: a capped solve whose weights meet the constraints
    reads "feasible, capped"."""
    if r.status == "max_iterations" and r.certified:
        return "feasible, capped"
    return r.status
