"""Figures written by the CLI (matplotlib, Agg backend, atomic writes)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .types import PruneReport  # noqa: E402
from .io import save_figure_atomic  # noqa: E402


def plot_nonzeros(report: PruneReport, path: str | Path, title: str = "") -> Path:
    """Bar chart of non-zeros per layer before and after pruning (log scale)."""
    names = [r.name for r in report.layers]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(names) + 2), 3.6))
    before = [r.nnz_before for r in report.layers]
    after = [r.nnz_after for r in report.layers]
    ax.bar([i - 0.2 for i in x], before, width=0.4, label="before", color="#9aa7b8")
    ax.bar([i + 0.2 for i in x], after, width=0.4, label="after", color="#d1495b")
    for i, (b, a) in enumerate(zip(before, after)):
        ax.text(i + 0.2, a, f"{100 * a / b:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")
    ax.set_ylabel("non-zero weights + biases")
    ax.set_xlabel("layer")
    ax.set_title(title or f"{report.method['name']} ({report.mode}): {100 * report.sparsity:.1f} % removed")
    ax.legend()
    fig.tight_layout()
    out = save_figure_atomic(fig, path)
    plt.close(fig)
    return out
