"""Plain-text tables for the terminal, from a PruneReport."""
from __future__ import annotations

from .types import LayerReport, PruneReport


def layer_table(report: PruneReport) -> str:
    """Per layer: shape, program, non-zeros before -> after, kept %, the relative tolerance
    eps / ||Y||_F (the units of ``epsilon`` and of ``shrink``'s trials), the claimed quantity
    over its limit, status, time.

    The program is "relu" (the layer's own ReLU follows it; the tolerance bounds its response)
    or "linear" (anything else follows: the tolerance bounds its pre-activation, and what reads
    it moves by at most its Lipschitz constant times that); a footnote says so when a linear
    layer is listed; "-" for a layer pruned without a claim (a rival method). At a count the
    claim is the value reached ("measured")."""
    head = f"{'layer':<14}{'shape':>12}{'program':>9}{'nnz before':>12}{'nnz after':>11}{'kept':>8}" \
           f"{'rel eps':>9}{'claim/lim':>10}{'status':>16}{'sec':>8}"
    rows = [head, "-" * len(head)]
    for r in report.layers:
        cert = r.certificate
        eps = "-" if cert is None else f"{cert.relative_epsilon:.3g}"
        ratio = "-" if cert is None else f"{cert.measured / max(cert.limit, 1e-300):.3f}"
        rows.append(f"{r.name[-14:]:<14}{'x'.join(map(str, r.shape)):>12}{_program(r):>9}{r.nnz_before:>12}"
                    f"{r.nnz_after:>11}{100 * r.kept_fraction:>7.2f}%{eps:>9}{ratio:>10}"
                    f"{status_label(r):>16}{r.seconds:>8.1f}")
    rows.append("-" * len(head))
    rows.append(f"{'total':<14}{'':>21}{report.nnz_before:>12}{report.nnz_after:>11}"
                f"{100 * (1 - report.sparsity):>7.2f}%   ({100 * report.sparsity:.2f} % removed, "
                f"{report.seconds:.1f} s)")
    if any(_program(r) == "linear" for r in report.layers):
        rows.append(LINEAR_NOTE)
    return "\n".join(rows)


LINEAR_NOTE = ("linear: eps bounds the pre-activation; an activation after it moves at most "
               "its Lipschitz constant times that (docs/any-model.md)")


def _program(r: LayerReport) -> str:
    if r.certificate is None:
        return "-"
    return "relu" if r.relu else "linear"


def status_label(r: LayerReport) -> str:
    """A layer's status for people: "certified" when its claim holds, else the status."""
    return "certified" if r.certified else str(r.status)
