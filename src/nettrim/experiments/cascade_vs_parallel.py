"""Cascade against parallel Net-Trim: sparsity against output discrepancy, and time.

A trained LeNet-300-100 is pruned in both schemes over a sweep of relative tolerances g.
For every (g, scheme): the fraction of weights and biases removed (after the exact dead-unit
cleanup), the relative output discrepancy ||Yhat_L - Y_L||_F / ||Y_L||_F on the pruning
samples and on held-out test samples, test accuracy, and wall time. The papers' claim is that
cascade reaches sparser networks at equal discrepancy; since the two schemes land at different
discrepancies for the same g, each cascade point is compared with the parallel curve
interpolated at the same discrepancy (linear in log discrepancy), and vice versa.

Parallel speed-up. In the parallel scheme the layers are independent problems. Two numbers:
* estimated from the per-layer solve times of the sweep: sum (one worker) against max
  (one worker per layer) and against the longest-processing-time schedule on 2 workers;
* measured (when the preset asks for it): the parallel scheme's layer programs (inputs and
  targets captured from the original network) solved one after another in this process, then
  in a ``concurrent.futures.ProcessPoolExecutor`` with 2 spawned workers (1 torch thread each,
  pool started and warmed up before timing). On a shared 2-core machine this number depends on
  the other load, which is recorded (``os.getloadavg``).

The first layer's program is the same in both schemes; it is solved once and shared, and each
scheme's reported time counts it as if the scheme had run alone.

Generalization (the Net-Trim papers' remark that pruning can slightly reduce the
generalization error): every pruned network's accuracy on the held-out test images minus the
original's, and on 10,000 training images, so the train-test gap is visible too. Nothing is
selected on the test images: every g of the sweep is reported.

Seeds: the full preset repeats everything for 3 seeds (seed s: network s, calibration draw
s + 1); its sweep was shrunk from g = 0.01..0.3 to 0.02..0.3 (g = 0.01 took 80 % of the time).
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..capture import capture_layer, network_output, trace_layers
from ..data import subset
from ..layer import ADMMSettings, trim_layer
from ..models import evaluate
from . import zoo
from .bounds import nettrim_modes
from .common import SPREAD, AdmmPreset, begin_run, count_true, pm, seed_list, stack, write_run

JSON_NAME = "cascade_vs_parallel.json"
PNG_NAME = "cascade_vs_parallel.png"
MODES = ("parallel", "cascade")


@dataclass(frozen=True)
class Preset(AdmmPreset):
    name: str
    net: dict  # keyword arguments of zoo.get_model
    epsilons: tuple[float, ...]
    samples: int
    test_samples: int
    gamma: float = 1.1
    pool_epsilons: tuple[float, ...] = ()  # g values at which the 2-worker pool is measured
    workers: int = 2
    seeds: int = 1
    train_eval: int = 10000  # training images on which the train accuracy is measured
    admm: tuple[tuple[str, float], ...] = (("rel_tol", 1e-2),)
    description: str = ""


QUICK = Preset(
    name="quick",
    net=dict(arch="lenet-300-100", dataset="mnist", epochs=3, train_samples=10000),
    epsilons=(0.02, 0.05, 0.1, 0.2, 0.3), samples=256, test_samples=2000,
    description="LeNet-300-100 (3 epochs on 10k MNIST images), pruned on 256 samples, "
                "g in 0.02..0.3; speed-up estimated from per-layer times only.")

FULL = Preset(
    name="full",
    net=dict(arch="lenet-300-100", dataset="mnist", epochs=6, train_samples=None),
    epsilons=(0.02, 0.05, 0.1, 0.2, 0.3), samples=1000, test_samples=10000,
    pool_epsilons=(0.1,), seeds=3,
    description="LeNet-300-100 (6 epochs on all MNIST), pruned on 1,000 samples, g in "
                "0.02..0.3; speed-up estimated from per-layer times and measured with a "
                "2-process pool at g = 0.1; 3 seeds (network and calibration draw).")

PRESETS = {"quick": QUICK, "full": FULL}


# --------------------------------------------------------------------------------------------
# comparison at equal discrepancy


def interpolate_sparsity(disc: float, curve_disc: Sequence[float], curve_sparsity: Sequence[float]
                         ) -> float | None:
    """Sparsity of a curve at discrepancy ``disc`` (linear in log discrepancy); None outside
    the curve's range. The curve need not be sorted; it is sorted by discrepancy."""
    d = np.log(np.asarray(curve_disc, float))
    s = np.asarray(curve_sparsity, float)
    order = np.argsort(d)
    d, s = d[order], s[order]
    x = math.log(disc)
    if len(d) == 0 or x < d[0] - 1e-12 or x > d[-1] + 1e-12:
        return None
    return float(np.interp(x, d, s))


def compare_at_equal_discrepancy(points: dict[str, list[dict]]) -> dict:
    """For every point of one scheme inside the other's discrepancy range: its sparsity minus
    the other's interpolated sparsity at the same (training) discrepancy."""
    out = {}
    for a, b in (("cascade", "parallel"), ("parallel", "cascade")):
        bd = [p["rel_error_train"] for p in points[b]]
        bs = [p["sparsity"] for p in points[b]]
        rows = []
        for p in points[a]:
            other = interpolate_sparsity(p["rel_error_train"], bd, bs)
            if other is not None:
                rows.append(dict(epsilon=p["epsilon"], rel_error_train=p["rel_error_train"],
                                 sparsity=p["sparsity"], other_sparsity=other,
                                 advantage=p["sparsity"] - other))
        out[f"{a}_vs_{b}"] = dict(
            points=rows, n=len(rows),
            mean_advantage=float(np.mean([r["advantage"] for r in rows])) if rows else None,
            n_at_least_as_sparse=sum(r["advantage"] >= 0 for r in rows))
    c = out["cascade_vs_parallel"]
    p = out["parallel_vs_cascade"]
    # kept-weight ratio: how many more weights parallel keeps at the same discrepancy
    out["cascade_sparser"] = bool(
        (c["n"] == 0 or c["mean_advantage"] >= 0) and (p["n"] == 0 or p["mean_advantage"] <= 0)
        and (c["n"] + p["n"]) > 0)
    return out


# --------------------------------------------------------------------------------------------
# speed-up


def lpt_makespan(times: Sequence[float], workers: int) -> float:
    """Longest-processing-time-first schedule of ``times`` on ``workers`` machines."""
    loads = [0.0] * max(1, workers)
    for t in sorted(times, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def estimated_speedup(layer_seconds: Sequence[float], workers: int = 2) -> dict:
    total = float(sum(layer_seconds))
    return dict(layer_seconds=list(layer_seconds), sequential=total,
                one_worker_per_layer=max(layer_seconds),
                speedup_unlimited=total / max(max(layer_seconds), 1e-12),
                workers=workers, makespan=lpt_makespan(layer_seconds, workers),
                speedup_workers=total / max(lpt_makespan(layer_seconds, workers), 1e-12))


def _solve_job(job: dict) -> dict:
    """One parallel-scheme layer program (runs in a worker or in the main process)."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = trim_layer(job["X"], job["Y"], job["eps"], relu=job["relu"], bias=job["bias"],
                     settings=ADMMSettings(**job["admm"]))
    return dict(name=job["name"], seconds=time.perf_counter() - t0, nnz=res.nnz,
                status=res.status, iterations=res.iterations, pid=os.getpid())


def _warm(_: int) -> int:
    import nettrim.layer  # noqa: F401  (import cost paid before timing)

    torch.set_num_threads(1)
    return os.getpid()


def parallel_jobs(model, inputs: torch.Tensor, epsilon: float, admm: dict) -> list[dict]:
    """The parallel scheme's layer programs: original inputs and targets, eps = g ||Y_l||."""
    jobs = []
    for spec in trace_layers(model, inputs[:2]):
        X, Z = capture_layer(model, spec.name, inputs)
        Y = torch.relu(Z) if spec.relu else Z
        layer = model.get_submodule(spec.name)
        jobs.append(dict(name=spec.name, X=X, Y=Y, eps=epsilon * float(Y.norm()), relu=spec.relu,
                         bias=layer.bias is not None, admm=admm))
    return jobs


def measure_pool(model, inputs: torch.Tensor, epsilon: float, admm: dict, workers: int = 2) -> dict:
    """Wall time of the parallel scheme's layer solves: sequential here, then in a pool."""
    jobs = parallel_jobs(model, inputs, epsilon, admm)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    try:
        t0 = time.perf_counter()
        seq = [_solve_job(j) for j in jobs]
        seq_wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_warm, range(workers)))
        t0 = time.perf_counter()
        # longest job first: the first layer dominates
        order = sorted(jobs, key=lambda j: -j["X"].shape[1] * j["Y"].shape[1])
        par = list(pool.map(_solve_job, order))
        pool_wall = time.perf_counter() - t0
    return dict(epsilon=epsilon, workers=workers, sequential_wall=seq_wall, pool_wall=pool_wall,
                speedup=seq_wall / max(pool_wall, 1e-12),
                ideal_speedup=seq_wall / max(max(r["seconds"] for r in seq), 1e-12),
                sequential=seq, pool=par, loadavg_before=list(load_before),
                loadavg_after=list(os.getloadavg()), cpu_count=os.cpu_count(),
                same_nnz=[a["nnz"] for a in seq] == [next(b["nnz"] for b in par
                                                          if b["name"] == a["name"]) for a in seq])


# --------------------------------------------------------------------------------------------
# run


def run(p: Preset, seed: int = 0, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    model, info = zoo.get_model(**p.net, seed=seed, progress=progress)
    data = zoo.load_data(p.net["dataset"])
    x_tr, _ = subset(data.x_train, data.y_train, p.samples, seed=seed + 1)
    x_te, y_te = subset(data.x_test, data.y_test, p.test_samples, seed=seed + 1)
    x_ev, y_ev = subset(data.x_train, data.y_train, min(p.train_eval, len(data.y_train)),
                        seed=seed + 2)
    ref_test = network_output(model, x_te)
    acc0 = evaluate(model, x_te, y_te)
    train0 = evaluate(model, x_ev, y_ev)
    settings = p.settings()
    points: dict[str, list[dict]] = {m: [] for m in MODES}
    for eps in tqdm(p.epsilons, desc="cascade vs parallel", disable=not progress, unit="eps"):
        results = nettrim_modes(model, x_tr, epsilon=eps, gamma=p.gamma, settings=settings,
                                modes=MODES, cleanup=True)
        for mode, res in results.items():
            rep = res.report
            out_te = network_output(res.model, x_te)
            layer_sec = [r.seconds for r in rep.layers]
            points[mode].append(dict(
                epsilon=eps, sparsity=rep.sparsity, nnz_after=rep.nnz_after, total=rep.total,
                kept_per_layer={r.name: r.kept_fraction for r in rep.layers},
                nnz_per_layer={r.name: r.nnz_after for r in rep.layers},
                rel_error_train=rep.output_error / rep.output_norm,
                rel_error_test=float((out_te - ref_test).norm() / ref_test.norm()),
                test_accuracy=evaluate(res.model, x_te, y_te),
                train_accuracy=evaluate(res.model, x_ev, y_ev),
                status=[r.status for r in rep.layers],
                iterations=[r.iterations for r in rep.layers],
                layer_seconds=layer_sec, seconds=rep.seconds,
                speedup_estimate=estimated_speedup(layer_sec, p.workers) if mode == "parallel"
                else None))
    pool = [measure_pool(model, x_tr, eps, dict(p.admm), p.workers) for eps in p.pool_epsilons]
    comparison = compare_at_equal_discrepancy(points)
    est = [pt["speedup_estimate"] for pt in points["parallel"]]
    summary = dict(
        cascade_sparser_at_equal_discrepancy=comparison["cascade_sparser"],
        mean_sparsity_advantage_cascade=comparison["cascade_vs_parallel"]["mean_advantage"],
        mean_sparsity_advantage_parallel=comparison["parallel_vs_cascade"]["mean_advantage"],
        cascade_lower_discrepancy_same_eps=all(
            c["rel_error_train"] <= q["rel_error_train"]
            for c, q in zip(points["cascade"], points["parallel"])),
        total_seconds={m: sum(pt["seconds"] for pt in points[m]) for m in MODES},
        estimated_speedup_unlimited=float(np.mean([e["speedup_unlimited"] for e in est])),
        estimated_speedup_2_workers=float(np.mean([e["speedup_workers"] for e in est])),
        measured_pool_speedup=[q["speedup"] for q in pool])
    return dict(model=zoo.describe(info), test_accuracy_before=acc0,
                train_accuracy_before=train0, samples=p.samples,
                test_samples=p.test_samples, gamma=p.gamma, admm=dict(p.admm), points=points,
                comparison=comparison, pool=pool, summary=summary)


def _errorbar(ax, x, y, style, color, label, **kw):
    """Mean over seeds with min-max error bars on both axes (x, y: one list per point)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    xm, ym = x.mean(1), y.mean(1)
    ax.errorbar(xm, ym, xerr=[xm - x.min(1), x.max(1) - xm], yerr=[ym - y.min(1), y.max(1) - ym],
                fmt=style, color=color, label=label, capsize=2, ms=4, **kw)
    return xm, ym


def plot(payload: dict):
    """Sparsity against discrepancy, accuracy against sparsity, wall time; means over seeds
    with min-max error bars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    st = stack(payload["runs"])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    colors = {"parallel": "tab:blue", "cascade": "tab:red"}
    ax = axes[0]
    for m in MODES:
        pts = st["points"][m]
        sp = [[100 * v for v in q["sparsity"]] for q in pts]
        xm, ym = _errorbar(ax, [q["rel_error_train"] for q in pts], sp, "-o", colors[m],
                           f"{m} (train)")
        _errorbar(ax, [q["rel_error_test"] for q in pts], sp, ":s", colors[m], f"{m} (test)",
                  alpha=0.6)
        for q, a, b in zip(pts, xm, ym):
            ax.annotate(f"{q['epsilon'][0]:g}", (a, b), fontsize=7, xytext=(3, -9),
                        textcoords="offset points", color=colors[m])
    ax.set_xscale("log")
    ax.set_xlabel("relative output discrepancy ||Yhat_L - Y_L|| / ||Y_L||")
    ax.set_ylabel("weights removed (%)")
    ax.set_title("sparsity vs discrepancy (labels: g)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax = axes[1]
    for m in MODES:
        pts = st["points"][m]
        _errorbar(ax, [[100 * v for v in q["sparsity"]] for q in pts],
                  [q["test_accuracy"] for q in pts], "-o", colors[m], m)
    ax.axhline(np.mean(st["test_accuracy_before"]), color="k", lw=0.8, ls="--", label="original")
    ax.set_xlabel("weights removed (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy (no fine-tuning)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[2]
    par = st["points"]["parallel"]
    eps = [q["epsilon"][0] for q in par]
    x = np.arange(len(eps))
    bars = (("cascade (sequential)", colors["cascade"], [q["seconds"] for q in st["points"]["cascade"]]),
            ("parallel, 1 worker", colors["parallel"], [q["seconds"] for q in par]),
            ("parallel, 2 workers (est.)", "tab:cyan", [q["speedup_estimate"]["makespan"] for q in par]),
            ("parallel, 1 worker/layer (est.)", "tab:green",
             [q["speedup_estimate"]["one_worker_per_layer"] for q in par]))
    for j, (label, color, vals) in enumerate(bars):
        v = np.asarray(vals, float)
        ax.bar(x - 0.3 + 0.2 * j, v.mean(1), 0.2, color=color, label=label,
               yerr=[v.mean(1) - v.min(1), v.max(1) - v.mean(1)], capsize=2)
    ax.set_xticks(x, [f"{e:g}" for e in eps])
    ax.set_xlabel("g")
    ax.set_ylabel("seconds")
    ax.set_title("wall time (bars: mean, whiskers: min-max over seeds)")
    ax.legend(fontsize=7)
    return fig


def main(out_dir: Path, preset: str | Preset = "quick", seed: int = 0, *,
         progress: bool = True) -> dict:
    """Run a preset (``p.seeds`` seeds from ``seed`` on) and write ``cascade_vs_parallel.json``
    and ``.png`` into ``out_dir``."""
    p, out_dir, start = begin_run(out_dir, preset, PRESETS)
    runs = [dict(seed=s, **run(p, seed=s, progress=progress)) for s in seed_list(seed, p.seeds)]
    payload = dict(experiment="cascade_vs_parallel", preset=p.name, seed=seed,
                   seeds=seed_list(seed, p.seeds), description=p.description,
                   epsilons=list(p.epsilons), samples=p.samples, test_samples=p.test_samples,
                   runs=runs)
    return write_run(out_dir, payload, plot(payload), start, PNG_NAME, JSON_NAME)


def equal_discrepancy_lines(runs: list[dict]) -> list[str]:
    """Sparsity advantage at equal training discrepancy per g, pooled over the seeds in which
    the point falls inside the other scheme's range."""
    lines = []
    for key, label in (("cascade_vs_parallel", "cascade point vs parallel curve"),
                       ("parallel_vs_cascade", "parallel point vs cascade curve")):
        by_eps: dict[float, list[dict]] = {}
        for r in runs:
            for q in r["comparison"][key]["points"]:
                by_eps.setdefault(q["epsilon"], []).append(q)
        for eps, qs in sorted(by_eps.items()):
            lines.append(f"- {label}, g = {eps:g} ({len(qs)} of {len(runs)} seeds in range): "
                         f"{pm([q['sparsity'] for q in qs], '.1f', 100)} % vs "
                         f"{pm([q['other_sparsity'] for q in qs], '.1f', 100)} % removed "
                         f"({pm([q['advantage'] for q in qs], '+.1f', 100)} points)")
    return lines


def generalization_lines(st: dict) -> list[str]:
    """Test accuracy change and train-test gap of the pruned networks against the original."""
    t0, r0 = np.asarray(st["test_accuracy_before"]), np.asarray(st["train_accuracy_before"])
    lines = [f"Original: test {pm(t0)} %, train {pm(r0)} %, gap {pm(r0 - t0)} points.", "",
             "| g | mode | test acc. change | seeds improved | train-test gap |",
             "|---|---|---|---|---|"]
    for i, eps in enumerate(st["points"]["parallel"]):
        for m in MODES:
            q = st["points"][m][i]
            d = np.asarray(q["test_accuracy"]) - t0
            gap = np.asarray(q["train_accuracy"]) - np.asarray(q["test_accuracy"])
            lines.append(f"| {eps['epsilon'][0]:g} | {m} | {pm(d, '+.2f')} | "
                         f"{count_true(d > 0)} | {pm(gap)} |")
    return lines


def markdown_section(payload: dict) -> str:
    """The docs section, every number the mean over seeds ± half-range."""
    st = stack(payload["runs"])
    n = len(payload["runs"])
    lines = ["## Cascade vs parallel", "", "```",
             f"nettrim experiment cascade-vs-parallel --preset {payload['preset']} "
             "--out runs/cascade-vs-parallel", "```", "", payload["description"], "",
             f"Every number: {SPREAD} ({n} seed{'s' if n > 1 else ''}). Original test accuracy "
             f"{pm(st['test_accuracy_before'])} % (on {payload['test_samples']} test images).", "",
             "| g | mode | removed % | kept per layer % | rel. discrepancy train | test | "
             "test acc. | seconds |", "|---|---|---|---|---|---|---|---|"]
    for i, eps in enumerate(payload["epsilons"]):
        for m in MODES:
            q = st["points"][m][i]
            kept = " / ".join(pm(v, ".1f", 100) for v in q["kept_per_layer"].values())
            flag = "" if all(all(x == "solved" for x in r["points"][m][i]["status"])
                             for r in payload["runs"]) else " (*)"
            lines.append(f"| {eps:g} | {m}{flag} | {pm(q['sparsity'], '.1f', 100)} | {kept} | "
                         f"{pm(q['rel_error_train'], '.4f')} | {pm(q['rel_error_test'], '.4f')} | "
                         f"{pm(q['test_accuracy'])} | {pm(q['seconds'], '.1f')} |")
    s = st["summary"]
    if any("(*)" in line for line in lines):
        lines += ["", "(*) some layer stopped at the iteration cap in at least one seed."]
    lines += ["", "At equal training discrepancy (interpolated linearly in log discrepancy):", "",
              *equal_discrepancy_lines(payload["runs"]), "",
              f"- cascade sparser at equal discrepancy: {count_true(s['cascade_sparser_at_equal_discrepancy'])} "
              f"seeds; mean advantage of a cascade point {pm(s['mean_sparsity_advantage_cascade'], '+.1f', 100)}"
              f" points, of a parallel point {pm(s['mean_sparsity_advantage_parallel'], '+.1f', 100)}",
              f"- cascade has the lower discrepancy at every g: "
              f"{count_true(s['cascade_lower_discrepancy_same_eps'])} seeds",
              f"- total seconds over the sweep: parallel {pm(s['total_seconds']['parallel'], '.0f')}, "
              f"cascade {pm(s['total_seconds']['cascade'], '.0f')}",
              f"- parallel speed-up estimated from per-layer times: "
              f"{pm(s['estimated_speedup_2_workers'])}x on 2 workers, "
              f"{pm(s['estimated_speedup_unlimited'])}x with one worker per layer (mean over g)"]
    pools = [q for r in payload["runs"] for q in r["pool"]]
    if pools:
        lines.append(f"- measured with a 2-process pool at g = {pools[0]['epsilon']:g}: speed-up "
                     f"{pm([q['speedup'] for q in pools])}x (sequential "
                     f"{pm([q['sequential_wall'] for q in pools], '.1f')} s, pool "
                     f"{pm([q['pool_wall'] for q in pools], '.1f')} s; load average before "
                     f"{pm([q['loadavg_before'][0] for q in pools], '.1f')} on "
                     f"{pools[0]['cpu_count']} cores)")
    lines += ["", "### Generalization: held-out accuracy against the tolerance", "",
              "Test accuracy (all held-out test images) of each pruned network minus the "
              "original's; train accuracy on 10,000 training images; no fine-tuning, every g "
              "reported.", "", *generalization_lines(st)]
    return "\n".join(lines) + "\n"
