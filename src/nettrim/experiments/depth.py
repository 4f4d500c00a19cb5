"""Which layers can be pruned without retraining: the depth effect (Pitas, Davies,
Vandergheynst 2019, seed 004) and whether Net-Trim removes it.

A deep MLP (784-256x5-10, six prunable layers) is trained once. No retraining anywhere.

1. Hard thresholding (exact top-k of |w| over the layer's weights and bias, see
   ``nettrim.pruners.threshold``) of
   * one layer l alone, and
   * every layer from l onward,
   at sparsities 0 .. 95 %; the test accuracy drop against the original network.
   The paper's finding: the earlier the layer (the more depth remains after it), the larger
   the drop. The logits layer is reported separately: it has no depth after it but feeds the
   decision directly.
2. Net-Trim on one layer at a time (``nettrim.pruners.prune(..., layers=[name],
   mode="parallel")``, which for a single layer is the exact Proposition-1 program on the
   original inputs) at a few relative tolerances g; the sparsity each layer reaches is
   recorded, and the same layer is hard-thresholded to the same number of non-zeros. Net-Trim
   removes the depth effect when its drops are small and flat across layers while
   thresholding's are not.

Seeds: the full preset repeats everything for 3 independently trained networks (seed s) and
calibration draws (seed s + 1); its Net-Trim tolerances were cut from g = 0.05, 0.1, 0.2 to
0.05, 0.2 to fit three seeds. Tables: mean over seeds ± half-range.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..capture import capture_layer, trace_layers
from ..data import subset
from ..layer import ADMMSettings
from ..models import evaluate
from ..pruners import NetTrim, prune
from ..pruners.threshold import keep_count, threshold_layer
from . import zoo
from .common import SPREAD, AdmmPreset, begin_run, count_true, pm, seed_list, stack, write_run

JSON_NAME = "depth.json"
PNG_NAME = "depth.png"


@dataclass(frozen=True)
class Preset(AdmmPreset):
    name: str
    net: dict
    sparsities: tuple[float, ...]
    epsilons: tuple[float, ...]
    samples: int
    test_samples: int | None
    seeds: int = 1
    admm: tuple[tuple[str, float], ...] = (("rel_tol", 1e-2),)
    description: str = ""


QUICK = Preset(
    name="quick",
    net=dict(arch="mlp-deep", dataset="fashion-mnist", epochs=3, train_samples=10000),
    sparsities=(0.0, 0.5, 0.8, 0.9, 0.95), epsilons=(0.1,), samples=256, test_samples=5000,
    description="784-256x5-10 MLP, 3 epochs on 10k Fashion-MNIST images; thresholding at "
                "0-95 %; Net-Trim per layer at g = 0.1 on 256 samples; 5,000 test images.")

FULL = Preset(
    name="full",
    net=dict(arch="mlp-deep", dataset="fashion-mnist", epochs=8, train_samples=None),
    sparsities=(0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95), epsilons=(0.05, 0.2),
    samples=1000, test_samples=None, seeds=3,
    description="784-256x5-10 MLP, 8 epochs on all Fashion-MNIST; thresholding at 0-95 %; "
                "Net-Trim per layer at g = 0.05, 0.2 on 1,000 samples; full test set; 3 seeds "
                "(network and calibration draw).")

PRESETS = {"quick": QUICK, "full": FULL}
TITLES = {"depth": "Depth: which layer can be thresholded (MLP)",
          "depth-conv": "Depth on a convolutional network (LeNet-5)"}


def _params(model: nn.Module, name: str):
    layer = model.get_submodule(name)
    return layer.weight.detach(), None if layer.bias is None else layer.bias.detach()


def layer_size(model: nn.Module, name: str) -> int:
    w, b = _params(model, name)
    return w.numel() + (0 if b is None else b.numel())


def layer_nnz(model: nn.Module, name: str) -> int:
    w, b = _params(model, name)
    return int((w != 0).sum()) + (0 if b is None else int((b != 0).sum()))


def thresholded(model: nn.Module, counts: dict[str, int]) -> nn.Module:
    """A copy of ``model`` with layer ``name`` hard-thresholded to ``counts[name]`` non-zeros."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, keep in counts.items():
            layer = out.get_submodule(name)
            w, b = threshold_layer(layer.weight, layer.bias, keep)
            layer.weight.copy_(w)
            if b is not None:
                layer.bias.copy_(b)
    return out


def threshold_sweep(model: nn.Module, names: Sequence[str], sparsities: Sequence[float],
                    x: torch.Tensor, y: torch.Tensor, base: float, progress: bool = True) -> dict:
    """Accuracy drop (points, negative = worse) for layer l alone and for layers l.. onward."""
    from tqdm.auto import tqdm

    alone = {n: [] for n in names}
    onward = {n: [] for n in names}
    bar = tqdm(total=2 * len(names) * len(sparsities), desc="thresholding", unit="net",
               disable=not progress)
    for i, name in enumerate(names):
        for s in sparsities:
            for target, group in ((alone, [name]), (onward, list(names[i:]))):
                counts = {n: keep_count(layer_size(model, n), s) for n in group}
                target[name].append(evaluate(thresholded(model, counts), x, y) - base)
                bar.update()
    bar.close()
    return dict(alone=alone, onward=onward)


def response_error(original: nn.Module, pruned: nn.Module, name: str, x: torch.Tensor,
                   rescale: bool = False) -> float:
    """||act(layer_pruned(X)) - act(layer(X))||_F / ||act(layer(X))||_F for layer ``name`` on
    its ORIGINAL inputs X (only this layer differs between the two networks). With
    ``rescale`` the pruned response is first multiplied by its best scalar c (least squares):
    the part of the error that is not a uniform shrinkage."""
    spec = next(s for s in trace_layers(original, x[:2]) if s.name == name)
    X, Z = capture_layer(original, name, x)
    layer = pruned.get_submodule(name)
    W = layer.weight.detach().reshape(len(layer.weight), -1)  # a Conv2d's (C_out, C_in kh kw)
    Zp = X @ W.T + (0 if layer.bias is None else layer.bias.detach())
    act = torch.relu if spec.relu else (lambda t: t)
    Y, Yp = act(Z).double(), act(Zp).double()
    if rescale:
        Yp = Yp * (Yp * Y).sum() / (Yp * Yp).sum().clamp_min(1e-300)
    return float((Yp - Y).norm() / Y.norm().clamp_min(1e-30))


def nettrim_per_layer(model: nn.Module, names: Sequence[str], x_prune: torch.Tensor,
                      epsilons: Sequence[float], x: torch.Tensor, y: torch.Tensor, base: float,
                      settings: ADMMSettings, progress: bool = True) -> list[dict]:
    """Net-Trim on one layer at a time; thresholding the same layer to the same count."""
    from tqdm.auto import tqdm

    rows = []
    bar = tqdm(total=len(names) * len(epsilons), desc="net-trim per layer", unit="layer",
               disable=not progress)
    for eps in epsilons:
        for name in names:
            res = prune(model, x_prune, method=NetTrim.paper(epsilon=eps, settings=settings),
                        mode="parallel", layers=[name], cleanup=False, progress=False)
            rep = res.report.layers[0]
            nnz = layer_nnz(res.model, name)
            total = layer_size(model, name)
            th_model = thresholded(model, {name: nnz})
            acc_nt = evaluate(res.model, x, y)
            acc_th = evaluate(th_model, x, y)
            err = {f"{who}_{where}{tag}": response_error(model, m, name, xs, rescale)
                   for who, m in (("nettrim", res.model), ("threshold", th_model))
                   for where, xs in (("train", x_prune), ("test", x[:len(x_prune)]))
                   for tag, rescale in (("", False), ("_rescaled", True))}
            rows.append(dict(epsilon=eps, layer=name, nnz=nnz, total=total,
                             sparsity=1 - nnz / total, drop_nettrim=acc_nt - base,
                             drop_threshold=acc_th - base, rel_layer_error=err, status=rep.status,
                             iterations=rep.iterations, seconds=rep.seconds,
                             rel_response_error=rep.response_error / max(rep.target_norm, 1e-300),
                             rel_output_error=res.report.output_error / res.report.output_norm))
            bar.update()
    bar.close()
    return rows


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 3:
        return None
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def summarize(names, sparsities, sweep, nt_rows, logits: str) -> dict:
    hidden = [n for n in names if n != logits]
    high = [i for i, s in enumerate(sparsities) if s >= 0.8]
    mean_high = {n: float(np.mean([sweep["alone"][n][i] for i in high])) for n in names}
    # depth effect: drop (negative) increases in magnitude for earlier layers, i.e. the drop
    # is positively rank-correlated with the layer index among hidden layers
    corr = {f"{100 * sparsities[i]:g}": _spearman(list(range(len(hidden))),
                                                  [sweep["alone"][n][i] for n in hidden])
            for i in high}
    out = dict(hidden_layers=hidden, logits_layer=logits,
               mean_drop_alone_at_80_plus=mean_high,
               first_minus_last_hidden=mean_high[hidden[0]] - mean_high[hidden[-1]],
               first_hurts_more_than_last_hidden=bool(mean_high[hidden[0]] < mean_high[hidden[-1]]),
               spearman_index_vs_drop=corr)
    per_eps = {}
    for eps in sorted({r["epsilon"] for r in nt_rows}):
        rows = [r for r in nt_rows if r["epsilon"] == eps and r["layer"] in hidden]
        per_eps[f"{eps:g}"] = dict(
            layers=[r["layer"] for r in rows], sparsity=[r["sparsity"] for r in rows],
            drop_nettrim=[r["drop_nettrim"] for r in rows],
            drop_threshold=[r["drop_threshold"] for r in rows],
            spread_nettrim=float(np.ptp([r["drop_nettrim"] for r in rows])),
            spread_threshold=float(np.ptp([r["drop_threshold"] for r in rows])),
            worst_nettrim=float(min(r["drop_nettrim"] for r in rows)),
            worst_threshold=float(min(r["drop_threshold"] for r in rows)),
            spearman_nettrim=_spearman(list(range(len(rows))), [r["drop_nettrim"] for r in rows]),
            spearman_threshold=_spearman(list(range(len(rows))),
                                         [r["drop_threshold"] for r in rows]))
    out["nettrim"] = per_eps
    return out


def _band(ax, x, values, style, color, label):
    """Mean over seeds with a min-max band (``values``: one list of seed values per x)."""
    v = np.asarray(values, float)
    ax.plot(x, v.mean(1), style, ms=3, color=color, label=label)
    if v.shape[1] > 1:
        ax.fill_between(x, v.min(1), v.max(1), color=color, alpha=0.15)


def _bars(ax, rows, x, w, off, key, color, label):
    """Bars of the mean over seeds with min-max whiskers."""
    v = np.asarray([r[key] for r in rows], float)
    m = v.mean(1)
    ax.bar(x + off, m, w, color=color, label=label,
           yerr=[m - v.min(1), v.max(1) - m], capsize=2)


def plot(payload: dict):
    """Six panels, each with its own scale: one layer thresholded (hidden layers; logits),
    layers l.. onward thresholded, Net-Trim vs thresholding at the same count (hidden layers;
    logits), and the sparsity Net-Trim reached per layer. Means over seeds, bands and whiskers
    the min-max over seeds."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    st = stack(payload["runs"])
    names, sp = payload["layers"], [100 * s for s in payload["sparsities"]]
    logits = payload["runs"][0]["summary"]["logits_layer"]
    hidden = [n for n in names if n != logits]
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5), layout="constrained")
    cmap = plt.get_cmap("viridis")
    color = {n: cmap(i / max(1, len(names) - 1)) for i, n in enumerate(names)}
    label = {n: f"layer {i + 1}" + (" (logits)" if n == logits else "") for i, n in enumerate(names)}
    panels = ((axes[0, 0], "alone", hidden, "one hidden layer thresholded"),
              (axes[0, 1], "alone", [logits], "logits layer thresholded"),
              (axes[0, 2], "onward", names, "layers l.. onward thresholded"))
    for ax, key, group, title in panels:
        for n in group:
            _band(ax, sp, st["threshold"][key][n], "-o", color[n], label[n])
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("test accuracy change (points)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    rows = st["nettrim"]
    eps_list = sorted({r["epsilon"][0] for r in rows})
    w = 0.8 / (2 * len(eps_list))
    for ax, group, title in ((axes[1, 0], hidden, "hidden layer pruned alone"),
                             (axes[1, 1], [logits], "logits layer pruned alone")):
        x = np.arange(len(group))
        for j, eps in enumerate(eps_list):
            sel = [r for r in rows if r["epsilon"][0] == eps and r["layer"] in group]
            off = (2 * j - len(eps_list)) * w + w / 2
            shade = 0.4 + 0.5 * j / max(1, len(eps_list))
            _bars(ax, sel, x, w, off, "drop_nettrim", plt.get_cmap("Reds")(shade),
                  f"Net-Trim g={eps:g}")
            _bars(ax, sel, x, w, off + w, "drop_threshold", plt.get_cmap("Blues")(shade),
                  f"threshold at Net-Trim's count, g={eps:g}")
        ax.set_xticks(x, [label[n] for n in group])
        ax.set_ylabel("test accuracy change (points)")
        ax.set_title(f"Net-Trim vs thresholding: {title}")
        ax.axhline(0, color="k", lw=0.6)
        ax.legend(fontsize=7)
    ax = axes[1, 2]
    for j, eps in enumerate(eps_list):
        sel = [r for r in rows if r["epsilon"][0] == eps]
        v = 100 * np.asarray([r["sparsity"] for r in sel], float)
        ax.errorbar(np.arange(len(sel)) + 1, v.mean(1), yerr=[v.mean(1) - v.min(1),
                    v.max(1) - v.mean(1)], fmt="-o", capsize=2, label=f"g={eps:g}")
    ax.set_xticks(np.arange(len(names)) + 1)
    ax.set_xlabel("layer")
    ax.set_ylabel("weights removed by Net-Trim (%)")
    ax.set_title("sparsity Net-Trim reaches per layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def run(p: Preset, seed: int, progress: bool = True) -> dict:
    """One seed: train-or-load the network, the thresholding sweep and Net-Trim per layer."""
    model, info = zoo.get_model(**p.net, seed=seed, progress=progress)
    data = zoo.load_data(p.net["dataset"])
    x_prune, _ = subset(data.x_train, data.y_train, p.samples, seed=seed + 1)
    x_te, y_te = (data.x_test, data.y_test) if p.test_samples is None else \
        subset(data.x_test, data.y_test, p.test_samples, seed=seed + 1)
    base = evaluate(model, x_te, y_te)
    specs = trace_layers(model, x_prune[:2])
    names = [s.name for s in specs]
    logits = next(s.name for s in specs if not s.relu)
    sweep = threshold_sweep(model, names, p.sparsities, x_te, y_te, base, progress)
    nt = nettrim_per_layer(model, names, x_prune, p.epsilons, x_te, y_te, base, p.settings(),
                           progress)
    return dict(seed=seed, model=zoo.describe(info), test_accuracy=base, layers=names,
                shapes={s.name: list(model.get_submodule(s.name).weight.shape) for s in specs},
                threshold=sweep, nettrim=nt,
                summary=summarize(names, list(p.sparsities), sweep, nt, logits))


def main(out_dir: Path, preset: str | Preset = "quick", seed: int = 0, *,
         progress: bool = True, presets: dict = PRESETS, experiment: str = "depth",
         files: tuple[str, str] = (JSON_NAME, PNG_NAME)) -> dict:
    """Run a preset (``p.seeds`` seeds from ``seed`` on) and write ``depth.json`` and
    ``depth.png`` (or ``files``) into ``out_dir``."""
    p, out_dir, start = begin_run(out_dir, preset, presets)
    runs = [run(p, s, progress) for s in seed_list(seed, p.seeds)]
    payload = dict(experiment=experiment, preset=p.name, seed=seed, seeds=seed_list(seed, p.seeds),
                   description=p.description, test_samples=p.test_samples, samples=p.samples,
                   admm=dict(p.admm), layers=runs[0]["layers"], sparsities=list(p.sparsities),
                   runs=runs)
    return write_run(out_dir, payload, plot(payload), start, files[1], files[0])


def markdown_section(payload: dict) -> str:
    """The docs section, every number the mean over seeds ± half-range."""
    names, sp = payload["layers"], payload["sparsities"]
    st = stack(payload["runs"])
    s = st["summary"]
    logits = payload["runs"][0]["summary"]["logits_layer"]
    n = len(payload["runs"])
    name = payload["experiment"].replace("_", "-")
    title = TITLES.get(name, name)
    lines = [f"## {title}", "", "```",
             f"nettrim experiment {name} --preset {payload['preset']} --out runs/{name}", "```", "",
             payload["description"], "",
             f"Every number: {SPREAD} ({n} seed{'s' if n > 1 else ''}). Original test accuracy "
             f"{pm(st['test_accuracy'])} %.", ""]
    for key, title in (("alone", "One layer thresholded (accuracy change, points)"),
                       ("onward", "Layers l.. onward thresholded (accuracy change, points)")):
        lines += [f"{title}:", "",
                  "| layer | " + " | ".join(f"{100 * v:g} %" for v in sp) + " |",
                  "|---" * (len(sp) + 1) + "|"]
        for i, name in enumerate(names):
            tag = " (logits)" if name == logits else ""
            lines.append(f"| {i + 1}{tag} | " + " | ".join(
                pm(v, "+.2f") for v in st["threshold"][key][name]) + " |")
        lines.append("")
    lines += ["Net-Trim on one layer (parallel program on the original inputs) and thresholding "
              "that layer to the same count; the layer's relative response error "
              "||act(U^T X) - Y|| / ||Y|| on the pruning samples / on as many test samples:", "",
              "| g | layer | removed % | Net-Trim change | threshold change | "
              "layer error Net-Trim (train / test) | layer error threshold (train / test) | "
              "after best rescaling (test): Net-Trim / threshold |",
              "|---|---|---|---|---|---|---|---|"]
    for r in st["nettrim"]:
        i = names.index(r["layer"]) + 1
        e = r["rel_layer_error"]
        lines.append(f"| {r['epsilon'][0]:g} | {i} | {pm(r['sparsity'], '.1f', 100)} | "
                     f"{pm(r['drop_nettrim'], '+.2f')} | {pm(r['drop_threshold'], '+.2f')} | "
                     f"{pm(e['nettrim_train'], '.3f')} / {pm(e['nettrim_test'], '.3f')} | "
                     f"{pm(e['threshold_train'], '.3f')} / {pm(e['threshold_test'], '.3f')} | "
                     f"{pm(e['nettrim_test_rescaled'], '.3f')} / "
                     f"{pm(e['threshold_test_rescaled'], '.3f')} |")
    rho = {k: [v for v in vals if v is not None] for k, vals in s["spearman_index_vs_drop"].items()}
    lines += ["", "- mean change at sparsity >= 80 %, one layer alone: " + ", ".join(
        f"layer {names.index(name) + 1}: {pm(v, '+.2f')}"
        for name, v in s["mean_drop_alone_at_80_plus"].items()),
              "- Spearman correlation of hidden-layer index with the change, thresholding one "
              "layer: " + ", ".join(f"{k} %: {pm(v)}" for k, v in rho.items() if v),
              f"- first hidden layer hurts more than the last hidden layer: "
              f"{count_true(s['first_hurts_more_than_last_hidden'])} seeds "
              f"({pm(s['first_minus_last_hidden'], '+.2f')} points)"]
    for eps, v in s["nettrim"].items():
        rn = [x for x in v["spearman_nettrim"] if x is not None]
        lines.append(f"- g = {eps}: hidden-layer changes spread {pm(v['spread_nettrim'])} points "
                     f"with Net-Trim vs {pm(v['spread_threshold'])} thresholding at the same "
                     f"counts (worst {pm(v['worst_nettrim'], '+.2f')} vs "
                     f"{pm(v['worst_threshold'], '+.2f')}); Spearman index vs change with "
                     f"Net-Trim {pm(rn) if rn else 'undefined'}")
    return "\n".join(lines) + "\n"
