"""``nettrim compare``: every method on the same network, data and sparsities, with and
without masked retraining; one JSON of every cell and the plots."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ..data import load_dataset, subset  # noqa: E402
from ..errors import require  # noqa: E402
from ..models import evaluate, finetune  # noqa: E402
from ..layer import ADMMSettings  # noqa: E402
from ..pruners import METHODS, prune  # noqa: E402
from ..report.io import save_figure_atomic, write_json_atomic  # noqa: E402

# Net-Trim's own options in the grid: two rounds of reweighted l1 reach a target count at a
# much smaller eps (measured on MNIST 784-60-60-10 at 80 %: 92.2 % accuracy instead of 52.1 %),
# and the hinge program does not spend weights holding every inactive entry at or below zero
# (at 90 % there: 90.84 % accuracy instead of 62.62 %)
DEFAULT_OPTIONS = {"nettrim": {"reweight": 2, "hinge": True}}

# CI-sized: few samples, two sparsities, and Net-Trim's eps search (hinge, plain l1) with at most
# 4 solves of at most 1,000 ADMM iterations per layer (the full grid's Net-Trim cells take
# minutes each on 2 cores)
QUICK = dict(samples=300, sparsities=(0.5, 0.9), retrain_epochs=1, train_epochs=2,
             retrain_subset=10000,
             options={"nettrim": {"reweight": 0, "hinge": True, "max_solves": 4,
                                  "settings": ADMMSettings(max_iterations=1000)}})
FULL = dict(samples=2000, sparsities=(0.5, 0.7, 0.8, 0.9, 0.95), retrain_epochs=1,
            train_epochs=None, retrain_subset=None)


def run_cell(model, method, sparsity, xs, data, *, mode, layers, retrain_epochs, seed, options,
             retrain_lr=1e-3):
    """One (method, sparsity) cell: prune, evaluate, retrain with masks, evaluate."""
    x, y, xt, yt = data
    t0 = time.perf_counter()
    res = prune(model, xs, method=method, mode=mode, sparsity=sparsity, layers=layers,
                progress=False, **options.get(method, {}))
    prune_s = time.perf_counter() - t0
    rep = res.report
    cell = {"method": method, "target_sparsity": sparsity, "achieved_sparsity": rep.sparsity,
            "layer_kept": {r.name: r.kept_fraction for r in rep.layers},
            "accuracy": evaluate(res.model, xt, yt), "prune_seconds": prune_s,
            "output_discrepancy": rep.output_error / max(rep.output_norm, 1e-12),
            "statuses": [r.status for r in rep.layers],
            "layer_info": {r.name: dict(r.info) for r in rep.layers}}
    if retrain_epochs:
        tuned = copy.deepcopy(res.model)
        log = finetune(tuned, x, y, epochs=retrain_epochs, lr=retrain_lr, seed=seed, progress=False)
        cell.update(accuracy_retrained=evaluate(tuned, xt, yt), retrain_seconds=log.total_seconds)
    cell["total_seconds"] = prune_s + cell.get("retrain_seconds", 0.0)
    return cell


def compare(model, dataset, methods, sparsities, *, samples=2000, retrain_epochs=1, mode="cascade",
            layers=None, seed=0, data_dir=None, retrain_subset=None, options=None, retrain_lr=1e-3,
            progress=True) -> dict:
    """The grid of cells; ``model`` is left untouched."""
    for m in methods:
        require(m in METHODS, f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    for s in sparsities:
        require(0 < s < 1, f"sparsity must lie in (0, 1), got {s}")
    x, y = load_dataset(dataset, "train", data_dir)
    xt, yt = load_dataset(dataset, "test", data_dir)
    if retrain_subset:
        x, y = subset(x, y, min(retrain_subset, len(x)), seed=seed)
    xs, _ = subset(x, y, min(samples, len(x)), seed=seed)
    options = DEFAULT_OPTIONS if options is None else options
    cells = []
    grid = [(m, s) for m in methods for s in sparsities]
    for method, sparsity in tqdm(grid, desc="compare", disable=not progress):
        cells.append(run_cell(model, method, sparsity, xs, (x, y, xt, yt), mode=mode, layers=layers,
                              retrain_epochs=retrain_epochs, seed=seed,
                              options=options,
                              retrain_lr=retrain_lr))
    return {"dataset": dataset, "samples": int(xs.shape[0]), "mode": mode, "layers": layers,
            "dense_accuracy": evaluate(model, xt, yt), "retrain_epochs": retrain_epochs,
            "retrain_lr": retrain_lr, "options": {m: options.get(m, {}) for m in methods},
            "cells": cells}


def plot(result: dict, path: Path) -> Path:
    """Accuracy vs achieved sparsity per method (solid: no retraining, dashed: retrained) and
    total time per method."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    methods = sorted({c["method"] for c in result["cells"]}, key=[*METHODS].index)
    for i, m in enumerate(methods):
        cells = sorted((c for c in result["cells"] if c["method"] == m), key=lambda c: c["achieved_sparsity"])
        sp = [100 * c["achieved_sparsity"] for c in cells]
        color = f"C{i}"
        ax.plot(sp, [c["accuracy"] for c in cells], "o-", color=color, label=f"{m}")
        if "accuracy_retrained" in cells[0]:
            ax.plot(sp, [c["accuracy_retrained"] for c in cells], "s--", color=color,
                    label=f"{m} + retrain")
        bx.bar(i, sum(c["total_seconds"] for c in cells), color=color)
    ax.axhline(result["dense_accuracy"], color="k", lw=0.8, ls=":", label="dense")
    ax.set_xlabel("weights removed (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
    bx.set_xticks(range(len(methods)), methods)
    bx.set_ylabel("total seconds over the grid (prune + retrain)")
    fig.tight_layout()
    out = save_figure_atomic(fig, path)
    plt.close(fig)
    return out


def write(result: dict, out_dir: Path, stem: str = "compare") -> dict:
    out_dir = Path(out_dir)
    return {"json": write_json_atomic(out_dir / f"{stem}.json", result),
            "png": plot(result, out_dir / f"{stem}.png")}


def table(result: dict) -> str:
    """Markdown table of every cell."""
    rows = ["| method | target | removed % | acc (no retrain) | acc (retrained) | prune s | total s |",
            "|---|---|---|---|---|---|---|"]
    for c in result["cells"]:
        rt = c.get("accuracy_retrained")
        rows.append(f"| {c['method']} | {c['target_sparsity']:.2f} | {100 * c['achieved_sparsity']:.1f} | "
                    f"{c['accuracy']:.2f} | {'-' if rt is None else f'{rt:.2f}'} | "
                    f"{c['prune_seconds']:.1f} | {c['total_seconds']:.1f} |")
    return "\n".join(rows)

