"""Benchmark: Net-Trim on LeNet-300-100 / MNIST on this machine.

1. The whole-network cascade prune (the demo's settings): wall time, peak memory, sparsity,
   test accuracy.
2. The layer solver against the cvxpy reference (Clarabel) on the same instance: the first
   layer restricted to a few neurons and samples, so the interior-point solver finishes.

Prints a table and writes benchmarks/results/lenet300.json. Run: `make bench`
(or `.venv/bin/python benchmarks/bench_lenet300.py --samples 2000 --epsilon 0.1`).
"""
from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from nettrim import prune, trim_layer
from nettrim.capture import capture_layer
from nettrim.cli.workflows import DEMO, load_or_train
from nettrim.data import load_dataset, subset
from nettrim.layer.reference import solve_reference
from nettrim.models import evaluate
from nettrim.report import write_json_atomic
from nettrim.report.tables import status_label


def whole_network(model, xs, xt, yt, epsilon, gamma, per_neuron, reweight=0):
    t0 = time.perf_counter()
    res = prune(model, xs, mode="cascade", epsilon=epsilon, gamma=gamma, per_neuron=per_neuron,
                reweight=reweight, progress=False)
    seconds = time.perf_counter() - t0
    rep = res.report
    return {"seconds": seconds, "sparsity": rep.sparsity, "nnz_after": rep.nnz_after,
            "accuracy_before": evaluate(model, xt, yt), "accuracy_after": evaluate(res.model, xt, yt),
            "layers": [{"name": r.name, "kept": r.kept_fraction, "seconds": r.seconds,
                        "iterations": r.iterations, "status": status_label(r)} for r in rep.layers]}


def solver_vs_cvxpy(model, xs, neurons, samples, g):
    X, Z = capture_layer(model, "1", xs[:samples])
    Y = torch.relu(Z[:, :neurons])
    eps = g * float(Y.norm())
    t0 = time.perf_counter()
    res = trim_layer(X, Y, eps)
    t_admm = time.perf_counter() - t0
    t0 = time.perf_counter()
    U = solve_reference(X, Y, eps)
    t_ref = time.perf_counter() - t0
    l1_admm = float(res.weight.abs().sum() + res.bias.abs().sum())
    l1_ref = float(np.abs(U).sum())
    return {"instance": f"layer 1, {samples} samples x {neurons} neurons, eps {g} ||Y||",
            "admm_seconds": t_admm, "cvxpy_seconds": t_ref, "admm_l1": l1_admm, "cvxpy_l1": l1_ref,
            "l1_gap": (l1_admm - l1_ref) / l1_ref, "admm_status": res.status,
            "admm_nnz": res.nnz, "cvxpy_nnz_1e-6": int((np.abs(U) > 1e-6).sum())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=DEMO["samples"])
    ap.add_argument("--epsilon", type=float, default=DEMO["epsilon"])
    ap.add_argument("--gamma", type=float, default=DEMO["gamma"])
    ap.add_argument("--per-neuron", action="store_true")
    ap.add_argument("--reweight", type=int, default=DEMO["reweight"])
    ap.add_argument("--checkpoint", type=Path, default=Path("runs/demo/lenet-300-100.pt"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lenet300.json"))
    args = ap.parse_args()
    model, _ = load_or_train(args.checkpoint, DEMO["arch"], DEMO["dataset"])
    x, y = load_dataset("mnist", "train")
    xt, yt = load_dataset("mnist", "test")
    xs, _ = subset(x, y, args.samples, seed=0)
    net = whole_network(model, xs, xt, yt, args.epsilon, args.gamma, args.per_neuron, args.reweight)
    cmp = solver_vs_cvxpy(model, xs, neurons=20, samples=500, g=args.epsilon)
    result = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "samples": args.samples, "epsilon": args.epsilon,
              "reweight": args.reweight,
              "gamma": args.gamma, "per_neuron": args.per_neuron, "network": net, "solver": cmp,
              "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(f"LeNet-300-100 cascade, eps {args.epsilon}, gamma {args.gamma}, {args.samples} samples")
    print(f"{'layer':<8}{'kept %':>9}{'iters':>8}{'seconds':>10}{'status':>18}")
    for r in net["layers"]:
        print(f"{r['name']:<8}{100 * r['kept']:>9.2f}{r['iterations']:>8}{r['seconds']:>10.1f}{r['status']:>18}")
    print(f"whole network: {net['seconds']:.1f} s, {100 * net['sparsity']:.2f} % removed, "
          f"accuracy {net['accuracy_before']:.2f} -> {net['accuracy_after']:.2f} %, "
          f"peak memory {result['peak_memory_mb']:.0f} MB")
    print(f"solver vs cvxpy ({cmp['instance']}): ADMM {cmp['admm_seconds']:.2f} s, "
          f"cvxpy {cmp['cvxpy_seconds']:.2f} s, l1 gap {100 * cmp['l1_gap']:+.3f} %")
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
