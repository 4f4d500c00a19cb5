"""Benchmark: how fast the solver is, against training and against an interior-point solver.

1. ``prune_vs_train``: LeNet-300-100 trained on 55,000 MNIST images (15 epochs, the demo's
   recipe), then pruned with ``NetTrim()`` at its default tolerance on 2,000 calibration
   images, both timed in this run with the same thread count: the ratio prune / train.
2. ``solver_vs_cvxpy``: one layer program, the papers' program on LeNet-300-100's second
   layer (300 -> 100, cascade inputs replaced by the original network's, 1,000 samples,
   relative eps 0.1, V = 0): ADMM (``nettrim.solvers.admm.solve`` on the layer's
   ``LayerProblem``, in the default float32 settings and in a strict float64 setting) against
   cvxpy with Clarabel on the same instance; seconds and the l1 norm each reaches.
3. ``full_training_set``: ``prune`` with ``NetTrim()`` on all 55,000 training images of the
   split (``--full``; every ReLU layer's program holds all its rows): seconds, peak memory,
   certified layers, weights kept and validation accuracy, for LeNet-300-100, beside the same
   on 2,000 images.

The committed benchmarks/results/speed.json predates the current core: it was measured with
the earlier ``nettrim.prune`` (``nettrim.pruners``, whose ADMM solves chose each layer's
support on at most 8,000 rows) and its layer solver ``nettrim.layer.trim_layer``; a run of
this script measures the current ``nettrim.prune`` and ``nettrim.solvers.admm``.

Writes benchmarks/results/speed.json. Run: `.venv/bin/python benchmarks/speed.py [--full]`
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import CORE, earlier, machine, run
from nettrim import ADMMSettings, NetTrim, RunOptions, prune
from nettrim.data import subset, validation_split
from nettrim.experiments import zoo
from nettrim.layer.reference import solve_reference
from nettrim.models import build_model, evaluate, train
from nettrim.program import Constraint, LayerProblem
from nettrim.program.stats import stats_of_rows, with_ones
from nettrim.scheme import peak_memory_mb
from nettrim.solvers.admm import solve

OUT = Path(__file__).parent / "results" / "speed.json"
NET = dict(arch="lenet-300-100", dataset="mnist", epochs=15, dropout=0.2, validation=5000)
QUIET = RunOptions(progress=False)


def prune_vs_train(threads: int) -> dict:
    data = zoo.load_data("mnist")
    keep, _ = validation_split(len(data.x_train), 5000)
    x, y = data.x_train[keep], data.y_train[keep]
    torch.manual_seed(0)
    model = build_model("lenet-300-100", dropout=0.2)
    t0 = time.perf_counter()
    train(model, x, y, epochs=15, schedule="cosine", seed=0, progress=False)
    train_s = time.perf_counter() - t0
    xs, _ = subset(x, y, 2000, seed=0)
    t0 = time.perf_counter()
    res = prune(model.eval(), xs, NetTrim(), run=QUIET)
    prune_s = time.perf_counter() - t0
    return dict(threads=threads, train_seconds=train_s, prune_seconds=prune_s,
                ratio=prune_s / train_s, kept=1 - res.report.sparsity,
                certified=not res.report.uncertified)


def solver_vs_cvxpy(samples: int = 1000, eps: float = 0.1) -> dict:
    """cvxpy/Clarabel against ADMM as ``prune`` runs it (float32, the default settings) and
    against a strict ADMM (float64, relative tolerance 1e-4), on the same instance: the papers'
    program min ||U||_1 s.t. ||(U^T X - Y)_Omega||_F <= eps, (U^T X)_{Omega^c} <= 0."""
    model, _ = zoo.get_model(**NET, seed=0, progress=False)
    data = zoo.load_data("mnist")
    keep, _ = validation_split(len(data.x_train), 5000)
    xs, _ = subset(data.x_train[keep], data.y_train[keep], samples, seed=0)
    with torch.no_grad():
        X = torch.relu(model[1](xs.flatten(1))).double()
        Y = torch.relu(model[4](X.float())).double()
    absolute = eps * float(Y.norm())
    t0 = time.perf_counter()
    U = solve_reference(X, Y, absolute)
    cvx_s = time.perf_counter() - t0
    cvx_l1 = float(abs(U).sum())
    out = dict(layer="4", shape=[100, 300], samples=samples, relative_epsilon=eps,
               cvxpy_seconds=cvx_s, cvxpy_l1=cvx_l1)
    problem = layer_problem(X, Y, torch.cat([model[4].weight.T, model[4].bias[None]]).detach(), absolute)
    strict = ADMMSettings(dtype="float64", rel_tol=1e-4, max_iterations=20000)
    for name, settings in (("admm", ADMMSettings()), ("strict", strict)):
        t0 = time.perf_counter()
        res = solve(problem, settings)
        seconds = time.perf_counter() - t0
        l1 = float(res.U.abs().sum())
        out.update({f"{name}_seconds": seconds, f"{name}_l1": l1, f"{name}_status": str(res.info.status),
                    f"{name}_discrepancy_over_eps": problem.measure(res.U).d / absolute,
                    f"{name}_speedup": cvx_s / seconds, f"{name}_l1_gap": l1 / cvx_l1 - 1})
    return out


def layer_problem(X: torch.Tensor, Y: torch.Tensor, U0: torch.Tensor, eps: float) -> LayerProblem:
    """The papers' ReLU program on rows X (P, N) and targets Y (P, M), the bias a ones column:
    one ball of radius ``eps`` on Omega = {Y > 0}, V = 0 off it; U0 (N + 1, M) the original
    weights (the statistics are formed in float64, the solver casts to its dtype)."""
    stats = stats_of_rows(with_ones(X.double()), Y.double(), bias=True)
    return LayerProblem(stats, Constraint(torch.tensor([eps], dtype=torch.float64), False, "halfspace"),
                        U0.double(), relu=True, theta=None)


def full_training_set() -> dict:
    model, _ = zoo.get_model(**NET, seed=0, progress=False)
    data = zoo.load_data("mnist")
    keep, val = validation_split(len(data.x_train), 5000)
    xv, yv = data.x_train[val], data.y_train[val]
    xs, _ = subset(data.x_train[keep], data.y_train[keep], 2000, seed=0)
    small = prune(model, xs, NetTrim(), run=QUIET)
    t0 = time.perf_counter()
    res = prune(model, data.x_train[keep], NetTrim(), run=QUIET)
    return dict(samples=int(len(keep)), seconds=time.perf_counter() - t0,
                peak_memory_mb=peak_memory_mb(),
                dense_validation=evaluate(model, xv, yv), validation=evaluate(res.model, xv, yv),
                validation_2000=evaluate(small.model, xv, yv), kept_2000=1 - small.report.sparsity,
                kept=1 - res.report.sparsity,
                layers=[dict(name=r.name, status=str(r.status), certified=r.certified,
                             iterations=(r.solver or {}).get("iterations"), seconds=r.seconds)
                        for r in res.report.layers])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="also prune on the whole training split")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = earlier(args.out)  # a --full part of this core is kept
    out.update(machine=machine(), core=CORE, prune_vs_train=prune_vs_train(args.threads),
               solver_vs_cvxpy=solver_vs_cvxpy())
    if args.full:
        out["full_training_set"] = full_training_set()
    from nettrim.report import write_json_atomic

    write_json_atomic(args.out, out)
    print(table(out))


def table(data: dict) -> str:
    """The three measurements as one table."""
    p, c = data["prune_vs_train"], data["solver_vs_cvxpy"]
    rows = ["| measurement | result |", "|---|---|",
            f"| LeNet-300-100: prune (`NetTrim()`, 2,000 images) / train (15 epochs), {p['threads']} threads "
            f"| {p['prune_seconds']:.1f} s / {p['train_seconds']:.1f} s = {p['ratio']:.2f} |",
            f"| one layer ({c['shape'][0]}x{c['shape'][1]}, {c['samples']} samples): cvxpy+Clarabel / ADMM "
            f"as `prune` runs it (float32, default settings) | {c['cvxpy_seconds']:.1f} s / "
            f"{c['admm_seconds']:.2f} s = {c['admm_speedup']:.0f}x, l1 norm {100 * c['admm_l1_gap']:+.3f} % |",
            f"| the same, ADMM in float64 to relative tolerance 1e-4 | {c['cvxpy_seconds']:.1f} s / "
            f"{c['strict_seconds']:.2f} s = {c['strict_speedup']:.0f}x, l1 norm {100 * c['strict_l1_gap']:+.3f} % |"]
    f = data.get("full_training_set")
    if f:
        cert = sum(layer["certified"] for layer in f["layers"])
        rows.append(f"| LeNet-300-100 on all {f['samples']:,} training images | {f['seconds']:.0f} s, "
                    f"{f['peak_memory_mb'] / 1024:.2f} GiB peak, {cert} of {len(f['layers'])} layers certified, "
                    f"{100 * f['kept']:.2f} % kept, validation {f['validation'] - f['dense_validation']:+.2f} "
                    f"(on 2,000 images: {100 * f['kept_2000']:.2f} % kept, "
                    f"{f['validation_2000'] - f['dense_validation']:+.2f}) |")
    return "\n".join(rows)


if __name__ == "__main__":
    run(main)
