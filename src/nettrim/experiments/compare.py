"""``nettrim compare``: every method on the same network, data and sparsities, with and
without masked retraining; one JSON of every cell and the plots."""
from __future__ import annotations

import copy
import math
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
from ..pruners.resume import cached_record, digest, run_key  # noqa: E402
from ..report.io import save_figure_atomic, write_json_atomic  # noqa: E402

# CI-sized: few samples, two sparsities, and Net-Trim's eps search with at most 4 solves of at
# most 1,000 ADMM iterations per layer (the full grid's Net-Trim cells take minutes on 2 cores)
QUICK = dict(samples=300, sparsities=(0.5, 0.9), retrain_epochs=1, train_epochs=2,
             retrain_subset=10000,
             options={"nettrim": {"max_solves": 4, "settings": ADMMSettings(max_iterations=1000)}})
FULL = dict(samples=2000, sparsities=(0.5, 0.7, 0.8, 0.9, 0.95), retrain_epochs=1,
            train_epochs=None, retrain_subset=None)


def run_cell(model, method, target, xs, data, *, mode, layers, retrain_epochs, seed, options,
             retrain_lr=1e-3, store=None):
    """One cell: prune to ``target``, evaluate, retrain with masks, evaluate.

    ``target`` is ``{"sparsity": s}`` (every pruned layer to a fraction s of zeros),
    ``{"epsilon": e}`` (Net-Trim's native control, the relative eps) or ``{"counts": {layer:
    k}}`` (exact non-zero counts per layer, e.g. Net-Trim's, the Net-Trim papers' protocol).
    """
    x, y, xt, yt = data
    opts = dict(options.get(method, {}))
    if "epsilon" in target:
        opts["epsilon"] = target["epsilon"]
    numbers = {k: v for k, v in target.items() if k != "epsilon"}
    t0 = time.perf_counter()
    res = prune(model, xs, method=METHODS[method](**opts), mode=mode, layers=layers,
                progress=False, store=store, **numbers)
    prune_s = time.perf_counter() - t0
    rep = res.report
    cell = {"method": method, "target_sparsity": target.get("sparsity"),
            "achieved_sparsity": rep.sparsity,
            "layer_kept": {r.name: r.kept_fraction for r in rep.layers},
            "layer_nonzeros": {r.name: r.nnz_after for r in rep.layers},
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


def run_matched(run, methods, epsilons, progress=True) -> list[dict]:
    """The Net-Trim papers' protocol: Net-Trim at each relative eps, then every other method at
    exactly Net-Trim's per-layer non-zero counts (``run(method, target)`` makes one cell).
    Each cell records the ``epsilon`` it belongs to and, for the rivals, ``matched_to``."""
    require("nettrim" in methods, "matching to Net-Trim's counts needs 'nettrim' among the methods")
    rivals = [m for m in methods if m != "nettrim"]
    cells = []
    bar = tqdm(total=len(epsilons) * len(methods), desc="compare", disable=not progress)
    for eps in epsilons:
        ref = run("nettrim", {"epsilon": eps})
        ref["epsilon"] = eps
        cells.append(ref)
        bar.update()
        for method in rivals:
            cell = run(method, {"counts": dict(ref["layer_nonzeros"])})
            cell.update(epsilon=eps, matched_to="nettrim")
            cells.append(cell)
            bar.update()
    bar.close()
    return cells


def compare(model, dataset, methods, sparsities=None, *, epsilons=None, samples=2000,
            retrain_epochs=1, mode="cascade", layers=None, seed=0, data_dir=None,
            retrain_subset=None, options=None, retrain_lr=1e-3, progress=True, store=None) -> dict:
    """The grid of cells; ``model`` is left untouched. Each method is its registry default
    (``nettrim.pruners.NetTrim()``, the earlier core's best configuration) with ``options[name]`` applied.

    With ``sparsities``, every method prunes every chosen layer to each sparsity. With
    ``epsilons`` instead, Net-Trim prunes at each relative eps and the other methods at its
    per-layer counts (same size layer by layer, the Net-Trim papers' protocol).

    ``store``: an unopened ``nettrim.pruners.resume.RunStore``, opened with this grid's key
    (its arguments and the hashes of the model and the data): every finished cell and layer
    is kept there, and a grid interrupted and run again skips them (``resumed_cells``).
    """
    for m in methods:
        require(m in METHODS, f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    require((sparsities is None) != (epsilons is None),
            "give either sparsities or epsilons (Net-Trim's eps, the rivals matched to its counts)")
    require(len(sparsities or epsilons or ()) > 0, "nothing to compare: no sparsity or epsilon given")
    for s in sparsities or ():
        require(0 < s < 1, f"sparsity must lie in (0, 1), got {s}")
    for e in epsilons or ():
        require(math.isfinite(e) and e > 0, f"epsilon must be a positive number, got {e}")
    x, y = load_dataset(dataset, "train", data_dir)
    xt, yt = load_dataset(dataset, "test", data_dir)
    if retrain_subset:
        x, y = subset(x, y, min(retrain_subset, len(x)), seed=seed)
    xs, _ = subset(x, y, min(samples, len(x)), seed=seed)
    options = options or {}
    scope, resumed = None, []
    if store is not None:
        key = run_key(command="compare", model=model, dataset=dataset, data=(xs, x, y, xt, yt),
                      methods=methods, sparsities=sparsities, epsilons=epsilons, samples=samples,
                      retrain_epochs=retrain_epochs, mode=mode, layers=layers, seed=seed,
                      retrain_subset=retrain_subset, options=options, retrain_lr=retrain_lr)
        scope = store.open(key).scope("compare", digest(key))

    def run(method, target):
        return cached_record(scope, f"cell-{digest(method, target)[:20]}", resumed, lambda: run_cell(
            model, method, target, xs, (x, y, xt, yt), mode=mode, layers=layers,
            retrain_epochs=retrain_epochs, seed=seed, options=options, retrain_lr=retrain_lr,
            store=store))

    if epsilons is not None:
        cells = run_matched(run, methods, epsilons, progress)
    else:
        grid = [(m, s) for m in methods for s in sparsities]
        cells = [run(m, {"sparsity": s}) for m, s in tqdm(grid, desc="compare", disable=not progress)]
    return {"dataset": dataset, "samples": int(xs.shape[0]), "mode": mode, "layers": layers,
            "dense_accuracy": evaluate(model, xt, yt), "retrain_epochs": retrain_epochs,
            "retrain_lr": retrain_lr, "options": {m: options.get(m, {}) for m in methods},
            "matched_to": "nettrim" if epsilons is not None else None,
            "epsilons": None if epsilons is None else list(epsilons), "cells": cells,
            "resumed_cells": len(resumed)}


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
        rows.append(f"| {c['method']} | {target_label(c)} | {100 * c['achieved_sparsity']:.1f} | "
                    f"{c['accuracy']:.2f} | {'-' if rt is None else f'{rt:.2f}'} | "
                    f"{c['prune_seconds']:.1f} | {c['total_seconds']:.1f} |")
    return "\n".join(rows)


def target_label(cell: dict) -> str:
    """A cell's target as the table shows it: the sparsity, Net-Trim's eps, or the counts."""
    if cell.get("target_sparsity") is not None:
        return f"{cell['target_sparsity']:.2f}"
    if cell.get("matched_to"):
        return f"{cell['matched_to']}'s counts (eps {cell['epsilon']:g})"
    return f"eps {cell['epsilon']:g}"
