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
from .common import AdmmPreset, begin_run, write_run

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
    epsilons=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3), samples=1000, test_samples=10000,
    pool_epsilons=(0.1,),
    description="LeNet-300-100 (6 epochs on all MNIST), pruned on 1,000 samples, g in "
                "0.01..0.3; speed-up estimated from per-layer times and measured with a "
                "2-process pool at g = 0.1.")

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
    ref_test = network_output(model, x_te)
    acc0 = evaluate(model, x_te, y_te)
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
    return dict(model=zoo.describe(info), test_accuracy_before=acc0, samples=p.samples,
                test_samples=p.test_samples, gamma=p.gamma, admm=dict(p.admm), points=points,
                comparison=comparison, pool=pool, summary=summary)


def plot(res: dict):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    colors = {"parallel": "tab:blue", "cascade": "tab:red"}
    ax = axes[0]
    for m in MODES:
        pts = res["points"][m]
        ax.plot([q["rel_error_train"] for q in pts], [100 * q["sparsity"] for q in pts], "-o",
                color=colors[m], label=f"{m} (train)")
        ax.plot([q["rel_error_test"] for q in pts], [100 * q["sparsity"] for q in pts], ":s",
                color=colors[m], alpha=0.6, label=f"{m} (test)")
        for q in pts:
            ax.annotate(f"{q['epsilon']:g}", (q["rel_error_train"], 100 * q["sparsity"]),
                        fontsize=7, xytext=(3, -8), textcoords="offset points", color=colors[m])
    ax.set_xscale("log")
    ax.set_xlabel("relative output discrepancy ||Yhat_L - Y_L|| / ||Y_L||")
    ax.set_ylabel("weights removed (%)")
    ax.set_title("sparsity vs discrepancy (labels: g)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax = axes[1]
    for m in MODES:
        pts = res["points"][m]
        ax.plot([100 * q["sparsity"] for q in pts], [q["test_accuracy"] for q in pts], "-o",
                color=colors[m], label=m)
    ax.axhline(res["test_accuracy_before"], color="k", lw=0.8, ls="--", label="original")
    ax.set_xlabel("weights removed (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy (no fine-tuning)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[2]
    eps = [q["epsilon"] for q in res["points"]["parallel"]]
    x = np.arange(len(eps))
    ax.bar(x - 0.3, [q["seconds"] for q in res["points"]["cascade"]], 0.2, color=colors["cascade"],
           label="cascade (sequential)")
    ax.bar(x - 0.1, [q["seconds"] for q in res["points"]["parallel"]], 0.2,
           color=colors["parallel"], label="parallel, 1 worker")
    ax.bar(x + 0.1, [q["speedup_estimate"]["makespan"] for q in res["points"]["parallel"]], 0.2,
           color="tab:cyan", label="parallel, 2 workers (est.)")
    ax.bar(x + 0.3, [q["speedup_estimate"]["one_worker_per_layer"]
                     for q in res["points"]["parallel"]], 0.2, color="tab:green",
           label="parallel, 1 worker/layer (est.)")
    for q in res["pool"]:
        i = eps.index(q["epsilon"]) if q["epsilon"] in eps else None
        if i is not None:
            ax.plot([i + 0.1], [q["pool_wall"]], "k*", ms=10, label="2-process pool (measured)")
    ax.set_xticks(x, [f"{e:g}" for e in eps])
    ax.set_xlabel("g")
    ax.set_ylabel("seconds")
    ax.set_title("wall time")
    ax.legend(fontsize=7)
    return fig


def main(out_dir: Path, preset: str | Preset = "quick", seed: int = 0, *,
         progress: bool = True) -> dict:
    """Run a preset and write ``cascade_vs_parallel.json`` and ``.png`` into ``out_dir``."""
    p, out_dir, start = begin_run(out_dir, preset, PRESETS)
    res = run(p, seed=seed, progress=progress)
    payload = dict(experiment="cascade_vs_parallel", preset=p.name, seed=seed,
                   description=p.description, epsilons=list(p.epsilons), **res)
    return write_run(out_dir, payload, plot(res), start, PNG_NAME, JSON_NAME)


def markdown_section(payload: dict) -> str:
    lines = ["## Cascade vs parallel", "", "```",
             f"nettrim experiment cascade-vs-parallel --preset {payload['preset']} "
             "--out runs/cascade-vs-parallel", "```", "", payload["description"], "",
             f"Original test accuracy {payload['test_accuracy_before']:.2f} % "
             f"(on {payload['test_samples']} test images).", "",
             "| g | mode | removed | kept per layer | rel. discrepancy train | test | "
             "test acc. | seconds |", "|---|---|---|---|---|---|---|---|"]
    for i, eps in enumerate(payload["epsilons"]):
        for m in MODES:
            q = payload["points"][m][i]
            kept = " / ".join(f"{100 * v:.1f}" for v in q["kept_per_layer"].values())
            lines.append(f"| {eps:g} | {m} | {100 * q['sparsity']:.1f} % | {kept} % | "
                         f"{q['rel_error_train']:.4f} | {q['rel_error_test']:.4f} | "
                         f"{q['test_accuracy']:.2f} | {q['seconds']:.1f} |")
    c = payload["comparison"]
    s = payload["summary"]
    lines += ["", "At equal training discrepancy (interpolated):", ""]
    for key, label in (("cascade_vs_parallel", "cascade point vs parallel curve"),
                       ("parallel_vs_cascade", "parallel point vs cascade curve")):
        for r in c[key]["points"]:
            lines.append(f"- {label}: g = {r['epsilon']:g}, discrepancy {r['rel_error_train']:.4f}:"
                         f" {100 * r['sparsity']:.1f} % vs {100 * r['other_sparsity']:.1f} % "
                         f"removed ({100 * r['advantage']:+.1f} points)")
    lines += ["", f"- cascade sparser at equal discrepancy: "
                  f"{'yes' if s['cascade_sparser_at_equal_discrepancy'] else 'NO'}",
              f"- parallel speed-up estimated from per-layer times: "
              f"{s['estimated_speedup_2_workers']:.2f}x on 2 workers, "
              f"{s['estimated_speedup_unlimited']:.2f}x with one worker per layer (mean over g)"]
    for q in payload["pool"]:
        lines.append(f"- measured at g = {q['epsilon']:g}: sequential {q['sequential_wall']:.1f} s,"
                     f" 2-process pool {q['pool_wall']:.1f} s, speed-up {q['speedup']:.2f}x "
                     f"(ideal {q['ideal_speedup']:.2f}x; load average before "
                     f"{q['loadavg_before'][0]:.1f} on {q['cpu_count']} cores)")
    return "\n".join(lines) + "\n"
