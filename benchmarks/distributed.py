"""Benchmark: the Ray backend against the local one, LeNet-300-100, one ball per neuron, parallel.

The LeNet-300-100 network of ``budget.py`` (MNIST, 15 epochs, 5,000 training images held out,
training seed 0) is pruned in parallel mode with ``NetTrim(per_neuron=True)`` on its 2,000
calibration images three ways: in this process with one torch thread, with two threads, and
with ``RayBackend(threads=1)`` on a local Ray of two CPUs (two workers of one thread; each
of the three layers is a task). Each answer is compared with the one-thread local answer and
the two-thread one: bit-identical weights, largest absolute difference, same support, same
certified layers. Ray's start (``ray.init`` and the workers' first imports, warmed with one
task a CPU) is timed apart from the prune.

The committed benchmarks/results/distributed.json predates the current core: it was made with
the earlier ``nettrim.prune`` (``nettrim.pruners``), on whose Ray backend the first layer's two
blocks of 150 output neurons were tasks of their own (five tasks); a run of this script
measures the current ``nettrim.prune`` (one task a layer) and records its tasks (``ray_tasks``).

Writes benchmarks/results/distributed.json. Run:
`.venv/bin/python benchmarks/distributed.py [--seed 0]`; ``--quick`` (200 calibration images,
written to runs/distributed-quick.json) only checks that the script runs.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from budget import network
from common import CORE, machine, run
from nettrim import NetTrim, NettrimError, RunOptions, prune
from nettrim.pruners.backend import RayBackend
from nettrim.report import write_json_atomic

OUT = Path(__file__).parent / "results" / "distributed.json"
QUICK_OUT = Path(__file__).parents[1] / "runs" / "distributed-quick.json"
NET = "lenet-300-100"
RAY_CPUS = 2
LOCAL, LOCAL2, RAY = "local, 1 thread", "local, 2 threads", "ray, 2 workers x 1 thread"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="training seed of the network (default 0)")
    ap.add_argument("--quick", action="store_true", help="200 calibration images: checks the script runs")
    ap.add_argument("--out", type=Path, default=None, help=f"result file (default {OUT})")
    args = ap.parse_args()
    out = args.out or (QUICK_OUT if args.quick else OUT)
    try:
        import ray  # noqa: F401  (checked before the local runs)
    except ImportError:
        raise NettrimError("this benchmark needs Ray: pip install 'nettrim[ray]'") from None
    model, xs, *_ = network(NET, args.seed)
    xs = xs[:200] if args.quick else xs
    results = {LOCAL: timed_prune(model, xs, 1), LOCAL2: timed_prune(model, xs, 2)}
    start = start_ray()
    results[RAY] = timed_prune(model, xs, 1, RayBackend(threads=1))
    rows = [row(name, res, seconds, results) for name, (res, seconds) in results.items()]
    write_json_atomic(out, {"machine": machine(), "core": CORE, "net": NET, "seed": args.seed,
                            "quick": args.quick, "samples": int(xs.shape[0]), "mode": "parallel",
                            "method": NetTrim(per_neuron=True).record(), "ray_cpus": RAY_CPUS,
                            "ray_tasks": len(results[RAY][0].report.layers),
                            "ray_start_seconds": start, "runs": rows})
    for r in rows:
        print(f"{r['run']}: {r['seconds']:.1f} s, kept {100 * r['kept']:.2f} %, certified "
              f"{r['certified']}/{r['layers']}; same bits as {LOCAL}: {r['vs ' + LOCAL]['bit_identical']}, "
              f"as {LOCAL2}: {r['vs ' + LOCAL2]['bit_identical']}")
    print(f"ray start {start:.1f} s; wrote {out}")


def timed_prune(model, xs, threads: int, backend="local"):
    """(PruneResult, seconds) of NetTrim(per_neuron=True) in parallel mode with ``threads``
    torch threads in this process."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = prune(model, xs, NetTrim(per_neuron=True), mode="parallel",
                run=RunOptions(progress=False, backend=backend))
    return res, time.perf_counter() - t0


def start_ray() -> float:
    """Seconds to start a local Ray of RAY_CPUS CPUs and its workers (one task a CPU, each
    paying the imports a layer task pays)."""
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    list(RayBackend(threads=1).map(_warm, range(RAY_CPUS), None))
    return time.perf_counter() - t0


def _warm(i, shared):
    import nettrim.methods  # noqa: F401  (the imports a real task pays)
    import nettrim.scheme  # noqa: F401

    return os.getpid()


def row(name: str, res, seconds: float, results: dict) -> dict:
    """One run's time, size and certificates, and its answer compared with each local run's."""
    layers = res.report.layers
    return {"run": name, "seconds": seconds, "kept": 1 - res.report.sparsity,
            "layers": len(layers), "certified": sum(r.certified for r in layers),
            "output_error": res.report.output_error,
            **{f"vs {other}": same(res, results[other][0]) for other in (LOCAL, LOCAL2)}}


def same(a, b) -> dict:
    """Whether two pruned models are one answer: bits, largest difference, support, certificates."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return {"bit_identical": all(torch.equal(sa[k], sb[k]) for k in sa),
            "max_abs_difference": max(float((sa[k] - sb[k]).abs().max()) for k in sa),
            "same_support": all(torch.equal(sa[k] != 0, sb[k] != 0) for k in sa),
            "same_certified": [r.certified for r in a.report.layers] == [r.certified for r in b.report.layers]}


def table(data: dict) -> str:
    """Markdown: each run's time, speed-up over the one-thread local run, size, certificates,
    and its answer against the one-thread local answer."""
    base = next(r["seconds"] for r in data["runs"] if r["run"] == LOCAL)
    rows = ["| run | seconds | speed-up over local, 1 thread | weights kept | layers certified | "
            "same bits as local, 1 thread | largest weight difference | same support |",
            "|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        v = r[f"vs {LOCAL}"]
        rows.append(f"| {r['run']} | {r['seconds']:.1f} | {base / r['seconds']:.2f}x | "
                    f"{100 * r['kept']:.2f} % | {r['certified']} of {r['layers']} | "
                    f"{'yes' if v['bit_identical'] else 'no'} | {v['max_abs_difference']:.3g} | "
                    f"{'yes' if v['same_support'] else 'no'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    run(main)
