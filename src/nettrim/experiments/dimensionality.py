"""Latent dimensionality and robustness to pruning the first layer (Pitas, Davies,
Vandergheynst 2019, seed 004: the smaller the data's dimension, the smaller the accuracy drop
when the first layer is hard-thresholded).

The images are projected onto their first k principal components (PCA fitted on training
images only, ``zoo.pca_basis``), in one of two representations:

* ``coords``: the network sees the k coordinates (first layer k -> hidden);
* ``reconstruct``: the network sees the 784-pixel reconstruction, i.e. the same images
  restricted to a k-dimensional affine subspace (first layer 784 -> hidden for every k). This
  is the setting of the paper's argument: only the part of the thresholding error inside the
  data subspace reaches the next layer.

For each k (and each seed) the same MLP is trained, its first layer is hard-thresholded at
fixed sparsities (no retraining), and Net-Trim prunes the first layer alone at a few relative
tolerances g (parallel program on the original inputs), with thresholding at Net-Trim's count
for comparison. Reported: test accuracy change in points, mean and spread (min, max, std)
over seeds. A "pixels" row (no projection) is the reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..capture import trace_layers
from ..data import subset
from ..models import evaluate
from ..pruners import NetTrim, prune
from ..pruners.threshold import keep_count
from . import zoo
from .common import SPREAD, AdmmPreset, begin_run, write_run
from .depth import layer_nnz, layer_size, thresholded

JSON_NAME = "dimensionality.json"
PNG_NAME = "dimensionality.png"
PIXELS = 0  # the k used in tables for "no projection"


@dataclass(frozen=True)
class Preset(AdmmPreset):
    name: str
    net: dict  # zoo.get_model keywords without seed / pca
    ks: tuple[int, ...]
    modes: tuple[str, ...]
    seeds: tuple[int, ...]
    sparsities: tuple[float, ...]
    epsilons: tuple[float, ...]
    samples: int
    test_samples: int | None
    pixels: bool = True
    admm: tuple[tuple[str, float], ...] = (("rel_tol", 1e-2),)
    description: str = ""


QUICK = Preset(
    name="quick",
    net=dict(arch="mlp-100-100", dataset="mnist", epochs=3, train_samples=10000),
    ks=(10, 40, 160), modes=("coords", "reconstruct"), seeds=(0,),
    sparsities=(0.5, 0.8, 0.9, 0.95), epsilons=(0.1,), samples=256, test_samples=5000,
    description="784-100-100-10 MLP (3 epochs on 10k MNIST images) on k = 10, 40, 160 PCA "
                "components (coordinates and reconstructions) and on pixels; one seed; first "
                "layer thresholded at 50-95 %; Net-Trim on the first layer at g = 0.1 "
                "(256 samples); 5,000 test images.")

FULL = Preset(
    name="full",
    net=dict(arch="mlp-100-100", dataset="mnist", epochs=5, train_samples=20000),
    ks=(10, 30, 100, 300), modes=("coords", "reconstruct"), seeds=(0, 1, 2),
    sparsities=(0.5, 0.7, 0.8, 0.9, 0.95), epsilons=(0.05, 0.2), samples=500,
    test_samples=None,
    description="784-100-100-10 MLP (5 epochs on 20k MNIST images) on k = 10, 30, 100, 300 PCA "
                "components (coordinates and reconstructions) and on pixels; 3 seeds; first "
                "layer thresholded at 50-95 %; Net-Trim on the first layer at g = 0.05, 0.2 "
                "(500 samples); full test set.")

PRESETS = {"quick": QUICK, "full": FULL}


def one_model(p: Preset, k: int | None, mode: str, seed: int, progress: bool) -> dict:
    """Train-or-load one (k, mode, seed) model; threshold and Net-Trim its first layer."""
    pca = dict(pca_k=k, pca_mode=mode) if k is not None else {}
    model, info = zoo.get_model(**p.net, seed=seed, progress=progress, **pca)
    data = zoo.load_data(p.net["dataset"], **pca)
    x_prune, _ = subset(data.x_train, data.y_train, p.samples, seed=seed + 1)
    x_te, y_te = (data.x_test, data.y_test) if p.test_samples is None else \
        subset(data.x_test, data.y_test, p.test_samples, seed=seed + 1)
    base = evaluate(model, x_te, y_te)
    first = trace_layers(model, x_prune[:2])[0].name
    size = layer_size(model, first)
    drops = [evaluate(thresholded(model, {first: keep_count(size, s)}), x_te, y_te) - base
             for s in p.sparsities]
    nt = []
    for eps in p.epsilons:
        res = prune(model, x_prune, method=NetTrim.paper(epsilon=eps, settings=p.settings()),
                    mode="parallel", layers=[first], cleanup=False, progress=False)
        nnz = layer_nnz(res.model, first)
        rep = res.report.layers[0]
        nt.append(dict(epsilon=eps, nnz=nnz, sparsity=1 - nnz / size,
                       drop_nettrim=evaluate(res.model, x_te, y_te) - base,
                       drop_threshold=evaluate(thresholded(model, {first: nnz}), x_te, y_te) - base,
                       status=rep.status, iterations=rep.iterations, seconds=rep.seconds))
    return dict(k=PIXELS if k is None else k, mode="pixels" if k is None else mode, seed=seed,
                model=zoo.describe(info), first_layer=first,
                first_layer_shape=list(model.get_submodule(first).weight.shape),
                test_accuracy=base, threshold_drop=drops, nettrim=nt)


def _stats(values: Sequence[float]) -> dict:
    v = np.asarray(values, float)
    return dict(mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                min=float(v.min()), max=float(v.max()), n=len(v))


def aggregate(runs: list[dict], sparsities, epsilons) -> list[dict]:
    """Mean and spread over seeds for every (mode, k)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["mode"], r["k"]), []).append(r)
    out = []
    for (mode, k), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        out.append(dict(
            mode=mode, k=k, seeds=[r["seed"] for r in rs],
            test_accuracy=_stats([r["test_accuracy"] for r in rs]),
            threshold_drop={f"{s:g}": _stats([r["threshold_drop"][i] for r in rs])
                            for i, s in enumerate(sparsities)},
            nettrim={f"{e:g}": dict(
                sparsity=_stats([r["nettrim"][j]["sparsity"] for r in rs]),
                drop_nettrim=_stats([r["nettrim"][j]["drop_nettrim"] for r in rs]),
                drop_threshold=_stats([r["nettrim"][j]["drop_threshold"] for r in rs]))
                for j, e in enumerate(epsilons)}))
    return out


def _spearman(a, b) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = np.argsort(np.argsort(a)).astype(float), np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def summarize(table: list[dict], sparsities, modes, epsilons=()) -> dict:
    """Per mode and sparsity: is the drop smaller for smaller k? ``smaller_k_smaller_drop``
    compares the smallest and the largest k (mean over seeds); the rank correlation of k with
    the accuracy change is -1 when the change gets steadily more negative as k grows (the
    paper's claim). Also Net-Trim's first-layer sparsity against k at every g."""
    out = {}
    for mode in modes:
        rows = sorted([t for t in table if t["mode"] == mode], key=lambda t: t["k"])
        ks = [t["k"] for t in rows]
        per_s = {}
        for s in sparsities:
            key = f"{s:g}"
            means = [t["threshold_drop"][key]["mean"] for t in rows]
            per_s[key] = dict(ks=ks, mean_change=means, spearman_k_vs_change=_spearman(ks, means),
                              smallest_k_minus_largest_k=means[0] - means[-1],
                              smaller_k_smaller_drop=bool(means[0] > means[-1])
                              if len(means) > 1 else None)
        high = [f"{s:g}" for s in sparsities if s >= 0.9] or [f"{sparsities[-1]:g}"]
        avg = [float(np.mean([t["threshold_drop"][h]["mean"] for h in high])) for t in rows]
        out[mode] = dict(per_sparsity=per_s, ks=ks, mean_change_at_90_plus=avg,
                         spearman_at_90_plus=_spearman(ks, avg),
                         smaller_k_smaller_drop=bool(avg[0] > avg[-1]) if len(avg) > 1 else None,
                         holds_at_sparsities=[float(s) for s in sparsities
                                              if per_s[f"{s:g}"]["smaller_k_smaller_drop"]],
                         nettrim_sparsity={f"{e:g}": [t["nettrim"][f"{e:g}"]["sparsity"]["mean"]
                                                      for t in rows] for e in epsilons})
    return out


def plot(payload: dict):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    modes = payload["modes"]
    fig, axes = plt.subplots(1, len(modes) + 1, figsize=(5.5 * (len(modes) + 1), 4.4),
                             layout="constrained", squeeze=False)
    axes = axes[0]
    cmap = plt.get_cmap("plasma")
    pix = next((t for t in payload["table"] if t["mode"] == "pixels"), None)
    for ax, mode in zip(axes, modes):
        rows = sorted([t for t in payload["table"] if t["mode"] == mode], key=lambda t: t["k"])
        ks = [t["k"] for t in rows]
        for i, s in enumerate(payload["sparsities"]):
            key = f"{s:g}"
            m = [t["threshold_drop"][key]["mean"] for t in rows]
            lo = [t["threshold_drop"][key]["min"] for t in rows]
            hi = [t["threshold_drop"][key]["max"] for t in rows]
            c = cmap(i / max(1, len(payload["sparsities"]) - 1) * 0.85)
            ax.plot(ks, m, "-o", color=c, label=f"threshold {100 * s:g} %")
            ax.fill_between(ks, lo, hi, color=c, alpha=0.15)
            if pix is not None:
                ax.axhline(pix["threshold_drop"][key]["mean"], color=c, ls=":", lw=0.8)
        for j, e in enumerate(payload["epsilons"]):
            key = f"{e:g}"
            ax.plot(ks, [t["nettrim"][key]["drop_nettrim"]["mean"] for t in rows], "k--s", ms=4,
                    alpha=0.5 + 0.5 * j / max(1, len(payload["epsilons"])),
                    label=f"Net-Trim g={e:g}")
        ax.set_xscale("log")
        ax.set_xlabel("PCA components k")
        ax.set_ylabel("test accuracy change (points)")
        ax.set_title(f"first layer pruned, inputs: {mode} (dotted: pixels)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-1]
    for mode, style in zip(modes, ("-o", "-s")):
        rows = sorted([t for t in payload["table"] if t["mode"] == mode], key=lambda t: t["k"])
        ax.plot([t["k"] for t in rows], [t["test_accuracy"]["mean"] for t in rows], style,
                label=f"{mode}: original")
        for e in payload["epsilons"]:
            ax.plot([t["k"] for t in rows],
                    [100 * t["nettrim"][f"{e:g}"]["sparsity"]["mean"] for t in rows], style,
                    alpha=0.5, label=f"{mode}: Net-Trim g={e:g} sparsity (%)")
    ax.set_xscale("log")
    ax.set_xlabel("PCA components k")
    ax.set_ylabel("% (accuracy, or first-layer sparsity)")
    ax.set_title("original accuracy and Net-Trim sparsity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def main(out_dir: Path, preset: str | Preset = "quick", seed: int = 0, *,
         progress: bool = True) -> dict:
    """Run a preset and write ``dimensionality.json`` and ``.png`` into ``out_dir``. ``seed``
    offsets the preset's seeds."""
    from tqdm.auto import tqdm
    p, out_dir, start = begin_run(out_dir, preset, PRESETS)
    jobs = [(k, mode, seed + s) for mode in p.modes for k in p.ks for s in p.seeds]
    if p.pixels:
        jobs += [(None, "coords", seed + s) for s in p.seeds]
    runs = [one_model(p, k, mode, s, progress)
            for k, mode, s in tqdm(jobs, desc="dimensionality", unit="model",
                                   disable=not progress)]
    table = aggregate(runs, p.sparsities, p.epsilons)
    payload = dict(experiment="dimensionality", preset=p.name, seed=seed,
                   description=p.description, net=p.net, ks=list(p.ks), modes=list(p.modes),
                   seeds=[seed + s for s in p.seeds], sparsities=list(p.sparsities),
                   epsilons=list(p.epsilons), samples=p.samples, admm=dict(p.admm), runs=runs,
                   table=table, summary=summarize(table, p.sparsities, p.modes, p.epsilons))
    return write_run(out_dir, payload, plot(payload), start, PNG_NAME, JSON_NAME)


def _pm(d: dict, spec: str, scale: float = 1.0) -> str:
    """A :func:`_stats` dict as "mean ± half-range" (half-range = (max - min) / 2)."""
    m, h = scale * d["mean"], scale * (d["max"] - d["min"]) / 2
    return f"{m:{spec}}" if d["n"] == 1 else f"{m:{spec}} ± {h:{spec.lstrip('+')}}"


def markdown_section(payload: dict) -> str:
    sp, eps = payload["sparsities"], payload["epsilons"]
    lines = ["## Dimensionality: PCA inputs and first-layer pruning", "", "```",
             f"nettrim experiment dimensionality --preset {payload['preset']} "
             "--out runs/dimensionality", "```", "", payload["description"], "",
             f"Test accuracy change in points ({SPREAD}) when the first layer alone is pruned, "
             "no retraining; k = 0 is the pixel input.", "",
             "| inputs | k | original acc. | " + " | ".join(f"thr. {100 * s:g} %" for s in sp)
             + " | " + " | ".join(f"Net-Trim g={e:g}: sparsity, change (thr. same count)"
                                  for e in eps) + " |",
             "|---" * (3 + len(sp) + len(eps)) + "|"]
    order = {m: i for i, m in enumerate(payload["modes"] + ["pixels"])}
    for t in sorted(payload["table"], key=lambda t: (order.get(t["mode"], 9), t["k"])):
        cells = []
        for s in sp:
            cells.append(_pm(t["threshold_drop"][f"{s:g}"], "+.2f"))
        for e in eps:
            n = t["nettrim"][f"{e:g}"]
            cells.append(f"{_pm(n['sparsity'], '.1f', 100)} %, {_pm(n['drop_nettrim'], '+.2f')} "
                         f"({_pm(n['drop_threshold'], '+.2f')})")
        lines.append(f"| {t['mode']} | {t['k']} | {_pm(t['test_accuracy'], '.2f')} | "
                     + " | ".join(cells) + " |")
    lines.append("")
    for mode, v in payload["summary"].items():
        for key, q in v["per_sparsity"].items():
            by_k = ", ".join(f"{k}: {c:+.2f}" for k, c in zip(q["ks"], q["mean_change"]))
            rho = q["spearman_k_vs_change"]
            verdict = "yes" if q["smaller_k_smaller_drop"] else "NO"
            lines.append(f"- {mode}, thresholding {100 * float(key):g} %: change by k {by_k}; "
                         f"smaller k, smaller drop: {verdict}"
                         + (f" (Spearman k vs change {rho:+.2f})" if rho is not None else ""))
        for e, sp in v.get("nettrim_sparsity", {}).items():
            lines.append(f"- {mode}, Net-Trim g = {e}: first-layer sparsity by k " + ", ".join(
                f"{k}: {100 * s:.1f} %" for k, s in zip(v["ks"], sp)))
    return "\n".join(lines) + "\n"
