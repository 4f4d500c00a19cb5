"""Robustness of pruned networks to Gaussian input noise (the Net-Trim papers' check).

A trained LeNet-300-100 is pruned with Net-Trim (cascade) at a few relative tolerances g, and
hard-thresholded at the same per-layer non-zero counts. Each network is evaluated on test
images with additive Gaussian noise at norm ratios r = ||noise|| / ||x|| from 0 to 2, where x
is the network input (the normalized image) and the ratio holds exactly per image:
noise = r ||x|| z / ||z||, z ~ N(0, I). The same noise draws are used for every network
(paired comparison); accuracies are averaged over the draws. The full preset repeats all
of it for 3 seeds (network, calibration draw and noise draws); tables give the mean over seeds
± half the range between them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import subset
from ..models import count_nonzero, evaluate
from ..pruners import NetTrim, prune
from . import zoo
from .common import SPREAD, AdmmPreset, begin_run, count_true, pm, seed_list, stack, write_run
from .depth import layer_nnz, thresholded

JSON_NAME = "robustness.json"
PNG_NAME = "robustness.png"


@dataclass(frozen=True)
class Preset(AdmmPreset):
    name: str
    net: dict
    epsilons: tuple[float, ...]
    ratios: tuple[float, ...]
    draws: int
    samples: int
    test_samples: int | None
    seeds: int = 1
    mode: str = "cascade"
    gamma: float = 1.1
    admm: tuple[tuple[str, float], ...] = (("rel_tol", 1e-2),)
    description: str = ""


QUICK = Preset(
    name="quick",
    net=dict(arch="lenet-300-100", dataset="mnist", epochs=3, train_samples=10000),
    epsilons=(0.1,), ratios=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0), draws=2, samples=256,
    test_samples=2000,
    description="LeNet-300-100 (3 epochs on 10k MNIST images), Net-Trim cascade at g = 0.1 on "
                "256 samples; 2,000 test images, 2 noise draws per ratio.")

FULL = Preset(
    name="full",
    net=dict(arch="lenet-300-100", dataset="mnist", epochs=6, train_samples=None),
    epsilons=(0.05, 0.1, 0.2), ratios=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5,
                                       1.75, 2.0),
    draws=5, samples=1000, test_samples=None, seeds=3,
    description="LeNet-300-100 (6 epochs on all MNIST), Net-Trim cascade at g = 0.05, 0.1, 0.2 "
                "on 1,000 samples; full test set, 5 noise draws per ratio; 3 seeds.")

PRESETS = {"quick": QUICK, "full": FULL}


def noisy(x: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """x + noise with ||noise|| = ratio ||x|| for every image (Gaussian direction)."""
    if ratio == 0:
        return x
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    flat_x = x.reshape(len(x), -1)
    flat_z = z.reshape(len(z), -1)
    scale = ratio * flat_x.norm(dim=1, keepdim=True) / flat_z.norm(dim=1, keepdim=True)
    return (flat_x + scale * flat_z).reshape(x.shape)


def noise_curves(models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor,
                 ratios, draws: int, seed: int, progress: bool = True) -> dict:
    """{name: {"mean": [...], "std": [...], "draws": [[...]]}} over ``ratios``; every network
    sees the same noisy images."""
    from tqdm.auto import tqdm

    acc = {n: np.zeros((len(ratios), draws)) for n in models}
    bar = tqdm(total=len(ratios) * draws, desc="noise", unit="draw", disable=not progress)
    for i, r in enumerate(ratios):
        for d in range(draws):
            g = torch.Generator().manual_seed(int(seed * 1_000_003 + i * 1009 + d))
            xn = noisy(x, r, g)
            for n, m in models.items():
                acc[n][i, d] = evaluate(m, xn, y)
            bar.update()
            if r == 0:  # no randomness: one draw is all draws
                for n in models:
                    acc[n][i, :] = acc[n][i, 0]
                bar.update(draws - 1)
                break
    bar.close()
    return {n: dict(mean=a.mean(1).tolist(), std=a.std(1).tolist(), draws=a.tolist())
            for n, a in acc.items()}


def run(p: Preset, seed: int = 0, progress: bool = True) -> dict:
    model, info = zoo.get_model(**p.net, seed=seed, progress=progress)
    data = zoo.load_data(p.net["dataset"])
    x_prune, _ = subset(data.x_train, data.y_train, p.samples, seed=seed + 1)
    x_te, y_te = (data.x_test, data.y_test) if p.test_samples is None else \
        subset(data.x_test, data.y_test, p.test_samples, seed=seed + 1)
    models = {"original": model}
    pruned = {}
    for eps in p.epsilons:
        res = prune(model, x_prune, method=NetTrim.paper(epsilon=eps, gamma=p.gamma, settings=p.settings()),
                    mode=p.mode, progress=False)
        counts = {r.name: layer_nnz(res.model, r.name) for r in res.report.layers}
        models[f"nettrim g={eps:g}"] = res.model
        models[f"threshold g={eps:g}"] = thresholded(model, counts)
        pruned[f"{eps:g}"] = dict(
            epsilon=eps, sparsity=res.report.sparsity, counts=counts,
            kept_per_layer={r.name: r.kept_fraction for r in res.report.layers},
            status=[r.status for r in res.report.layers], seconds=res.report.seconds,
            rel_output_error=res.report.output_error / res.report.output_norm)
    curves = noise_curves(models, x_te, y_te, p.ratios, p.draws, seed, progress)
    nz = {n: count_nonzero(m)["nonzero"] for n, m in models.items()}
    return dict(model=zoo.describe(info), test_samples=len(y_te), pruned=pruned, curves=curves,
                nonzero=nz)


def _mean_over_ratios(values, ratios) -> float:
    """Trapezoidal average of a curve over the ratio range."""
    v, r = np.asarray(values, float), np.asarray(ratios, float)
    if len(r) < 2:
        return float(v.mean())
    return float(((v[1:] + v[:-1]) / 2 * np.diff(r)).sum() / (r[-1] - r[0]))


def summarize(res: dict, ratios) -> dict:
    out = {}
    for name, c in res["curves"].items():
        m = c["mean"]
        out[name] = dict(
            clean=m[0], at_ratio_1=m[ratios.index(1.0)] if 1.0 in ratios else None,
            at_max_ratio=m[-1],
            decreasing=bool(m[-1] < m[0]),
            monotone_violations=int(sum(b > a + 1.0 for a, b in zip(m, m[1:]))),
            area=_mean_over_ratios(m, ratios))
    gaps = {}
    for key in res["pruned"]:
        nt = res["curves"][f"nettrim g={key}"]["mean"]
        th = res["curves"][f"threshold g={key}"]["mean"]
        orig = res["curves"]["original"]["mean"]
        gaps[key] = dict(nettrim_minus_threshold=[a - b for a, b in zip(nt, th)],
                         nettrim_minus_original=[a - b for a, b in zip(nt, orig)])
    return dict(per_network=out, gaps=gaps,
                all_decrease_with_noise=all(v["decreasing"] for v in out.values()))


def plot(payload: dict):
    """Left: accuracy against the noise ratio per network (mean over seeds, band: min-max over
    seeds). Right: the paired differences Net-Trim - threshold and Net-Trim - original."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ratios = payload["ratios"]
    st = stack(payload["runs"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    ax = axes[0]
    keys = list(st["pruned"])
    cmap = plt.get_cmap("viridis")

    def band(ax, values, style, color, label, ms=4):
        v = np.asarray(values, float)  # (ratios, seeds)
        ax.plot(ratios, v.mean(1), style, color=color, ms=ms, label=label)
        if v.shape[1] > 1:
            ax.fill_between(ratios, v.min(1), v.max(1), color=color, alpha=0.15)

    for name, c in st["curves"].items():
        if name == "original":
            style, color = "-o", "k"
        else:
            key = name.split("g=")[1]
            color = cmap(keys.index(key) / max(1, len(keys) - 1) * 0.85)
            style = "-s" if name.startswith("nettrim") else "--^"
        nz = np.mean(st["nonzero"][name])
        band(ax, c["mean"], style, color, f"{name} ({nz:.0f} non-zeros)")
    ax.set_xlabel("noise ratio ||noise|| / ||x||")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy under Gaussian input noise")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    for key in keys:
        color = cmap(keys.index(key) / max(1, len(keys) - 1) * 0.85)
        g = st["summary"]["gaps"][key]
        band(ax, g["nettrim_minus_threshold"], "-s", color, f"Net-Trim - threshold, g={key}")
        band(ax, g["nettrim_minus_original"], ":o", color, f"Net-Trim - original, g={key}", 3)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("noise ratio")
    ax.set_ylabel("accuracy difference (points)")
    ax.set_title("paired differences")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def main(out_dir: Path, preset: str | Preset = "quick", seed: int = 0, *,
         progress: bool = True) -> dict:
    """Run a preset (``p.seeds`` seeds from ``seed`` on) and write ``robustness.json`` and
    ``robustness.png`` into ``out_dir``."""
    p, out_dir, start = begin_run(out_dir, preset, PRESETS)
    runs = []
    for s in seed_list(seed, p.seeds):
        res = run(p, seed=s, progress=progress)
        runs.append(dict(seed=s, **res, summary=summarize(res, list(p.ratios))))
    payload = dict(experiment="robustness", preset=p.name, seed=seed, seeds=seed_list(seed, p.seeds),
                   description=p.description, mode=p.mode, gamma=p.gamma, admm=dict(p.admm),
                   samples=p.samples, ratios=list(p.ratios), draws=p.draws, runs=runs)
    return write_run(out_dir, payload, plot(payload), start, PNG_NAME, JSON_NAME)


def markdown_section(payload: dict) -> str:
    """The docs section: pruned networks, the accuracy table and the paired differences,
    every number the mean over seeds ± half-range."""
    ratios = payload["ratios"]
    st = stack(payload["runs"])
    n = len(payload["runs"])
    lines = ["## Robustness to Gaussian input noise", "", "```",
             f"nettrim experiment robustness --preset {payload['preset']} --out runs/robustness",
             "```", "", payload["description"], "",
             f"Every number: {SPREAD} ({n} seed{'s' if n > 1 else ''}: network, calibration "
             "draw and noise draws).", ""]
    for key, v in st["pruned"].items():
        kept = " / ".join(pm(x, ".1f", 100) for x in v["kept_per_layer"].values())
        lines.append(f"- g = {key}: {pm(v['sparsity'], '.1f', 100)} % removed (kept per layer "
                     f"{kept} %), relative output discrepancy {pm(v['rel_output_error'], '.3f')} "
                     "on the pruning samples")
    lines += ["", "Test accuracy (%), each seed's mean over the noise draws:", "",
              "| network | non-zeros | " + " | ".join(f"r={r:g}" for r in ratios) + " |",
              "|---" * (len(ratios) + 2) + "|"]
    for name, c in st["curves"].items():
        lines.append(f"| {name} | {pm(st['nonzero'][name], '.0f')} | "
                     + " | ".join(pm(m) for m in c["mean"]) + " |")
    draw_std = max(max(max(c["std"]) for c in r["curves"].values()) for r in payload["runs"])
    s = st["summary"]
    lines += ["", f"- every network loses accuracy as the noise grows: "
                  f"{count_true(s['all_decrease_with_noise'])} seeds; the largest std over "
                  f"noise draws is {draw_std:.2f} points"]
    last = f"r = {ratios[-1]:g}"
    for key, g in s["gaps"].items():
        d, o = g["nettrim_minus_threshold"], g["nettrim_minus_original"]
        lines.append(f"- g = {key}: Net-Trim minus thresholding at the same counts: "
                     f"{pm(d[0], '+.2f')} points clean, {pm(d[-1], '+.2f')} at {last}; Net-Trim "
                     f"minus original: {pm(o[0], '+.2f')} clean, {pm(o[-1], '+.2f')} at {last}")
    return "\n".join(lines) + "\n"
