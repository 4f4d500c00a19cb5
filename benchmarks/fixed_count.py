"""Benchmark: at a fixed size, which one-shot pruner is the most accurate.

Every layer of the network is pruned to the same fraction of zeros (``prune(method=...,
sparsity=s)``, so every method keeps exactly the same per-layer counts), cascade, 2,000
calibration images, no retraining: Net-Trim (``NetTrim()`` at a count: its eps searched per
layer, cut to the count, values refit), L-OBS (exact greedy, and the public code's one-shot
ranking, ``LOBS(greedy=False)``) and hard thresholding, on
LeNet-300-100 (MNIST) and a 784-100-100-10 MLP (MNIST) trained with seeds 0, 1, 2 on 55,000
training images. Test accuracy is reported (nothing is chosen here).

Two crossed rows separate the support from the values: "lobs support, refit values" keeps
L-OBS's non-zeros and refits their values as Net-Trim does (``nettrim.solvers.refit``, on
``NetTrim()``'s program of the layer); "nettrim support, obs values" keeps Net-Trim's
non-zeros and sets their values as L-OBS does (the damped least squares of the layer's
pre-activations, ``nettrim.solvers.lobs.refit_rows``).

The committed benchmarks/results/fixed_count.json predates the current core: its rows were
made with the earlier ``nettrim.prune`` (``nettrim.pruners``, with that core's Net-Trim at a
count and L-OBS); a run of this script measures the current ``nettrim.prune`` and resumes
only from a result file this core wrote.

Writes benchmarks/results/fixed_count.json. Run:
`.venv/bin/python benchmarks/fixed_count.py [--nets lenet-300-100,mlp-100-100] [--seeds 0,1,2]`
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from typing import ClassVar

import torch

from common import CORE, earlier, machine, run
from nettrim import LOBS, NetTrim, RunOptions, prune
from nettrim.data import subset, validation_split
from nettrim.experiments import zoo
from nettrim.methods import LayerJob, LayerOutcome, Method
from nettrim.models import evaluate
from nettrim.options import OneOf, options
from nettrim.report import write_json_atomic
from nettrim.solvers.lobs import inverse_spd, layer_hessian, refit_rows
from nettrim.solvers.refit import refit
from nettrim.status import Status

OUT = Path(__file__).parent / "results" / "fixed_count.json"
NETS = {
    "lenet-300-100": dict(arch="lenet-300-100", dataset="mnist", epochs=15, dropout=0.2),
    "mlp-100-100": dict(arch="mlp-100-100", dataset="mnist", epochs=15, dropout=0.2),
}
SPARSITIES = (0.9, 0.95)



@options
class Crossed(Method):
    """One method's support with the other's values (benchmark only, see the module doc):
    ``support="lobs"``: L-OBS's non-zeros, values refit on ``NetTrim()``'s program of the
    layer (its V, the hinge objective); ``support="nettrim"``: ``NetTrim()``'s non-zeros,
    values w = argmin (w - w0)^T H (w - w0) on them, H = A^T A / P + damp mean(diag) I."""

    support: str = "lobs"
    name: ClassVar[str] = "crossed"
    CHECKS: ClassVar = dict(support=OneOf("lobs", "nettrim"))

    def at_count(self, job: LayerJob, keep: int) -> LayerOutcome:
        if self.support == "lobs":
            U = refit_values(job, LOBS().at_count(job, keep).U)
        else:
            U = obs_values(job, NetTrim().at_count(job, keep).U)
        return LayerOutcome(U, Status.FITTED, info={"support": self.support})


def refit_values(job: LayerJob, U: torch.Tensor) -> torch.Tensor:
    """U's support with the values Net-Trim's refit gives on ``NetTrim()``'s program of the layer."""
    rule = NetTrim()
    return refit(job.problem(rule.constraint(job), rule.theta(job)), U)


def obs_values(job: LayerJob, U: torch.Tensor, damp: float = 1e-2) -> torch.Tensor:
    """U's support with L-OBS's values: per neuron w = argmin (w - w0)^T H (w - w0) with the
    pruned entries 0, H = A^T A / P + damp mean(diag) I, w0 the original weights."""
    H = layer_hessian(job.stats.gram.double(), job.stats.rows, damp)
    W = job.weight.T.double().contiguous()
    return refit_rows(W, H, inverse_spd(H), (U == 0).T.contiguous(), 64).T.to(job.weight).contiguous()


METHODS = {"nettrim": NetTrim, "lobs": lambda: "lobs", "lobs one-shot": lambda: LOBS(greedy=False),
           "threshold": lambda: "threshold",
           "lobs support, refit values": lambda: Crossed(support="lobs"),
           "nettrim support, obs values": lambda: Crossed(support="nettrim")}


def row(net: str, seed: int, sparsity: float, name: str) -> dict:
    model, _ = zoo.get_model(**NETS[net], seed=seed, validation=5000, progress=False)
    data = zoo.load_data(NETS[net]["dataset"])
    keep, _ = validation_split(len(data.x_train), 5000)
    xs, _ = subset(data.x_train[keep], data.y_train[keep], 2000, seed=seed)
    t0 = time.perf_counter()
    res = prune(model, xs, METHODS[name](), sparsity=sparsity, run=RunOptions(progress=False))
    return dict(net=net, seed=seed, sparsity=sparsity, method=name,
                layer_status=[str(r.status) for r in res.report.layers],
                seconds=time.perf_counter() - t0, achieved=res.report.sparsity,
                layer_nonzeros={r.name: r.nnz_after for r in res.report.layers},
                certified=[r.certified for r in res.report.layers],
                test=evaluate(res.model, data.x_test, data.y_test),
                dense_test=evaluate(model, data.x_test, data.y_test))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=";".join(METHODS), help="names separated by ';'")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    nets = [n for n in args.nets.split(",") if n]
    unknown = sorted(set(nets) - set(NETS))
    if unknown:
        raise SystemExit(f"error: unknown network {', '.join(unknown)}; known: {', '.join(NETS)}")
    methods = [m.strip() for m in args.methods.split(";") if m.strip()]
    if sorted(set(methods) - set(METHODS)):
        raise SystemExit(f"error: unknown method {', '.join(sorted(set(methods) - set(METHODS)))}; "
                         f"known: {', '.join(METHODS)}")
    torch.set_num_threads(2)
    rows = earlier(args.out).get("rows", [])
    done = {(r["net"], r["seed"], r["sparsity"], r["method"]) for r in rows}
    for net in nets:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for sparsity in SPARSITIES:
                for name in methods:
                    if (net, seed, sparsity, name) in done:
                        continue
                    rows.append(row(net, seed, sparsity, name))
                    r = rows[-1]
                    print(f"{net} seed {seed} {sparsity:.2f} {name:<10} test {r['test']:.2f} "
                          f"(dense {r['dense_test']:.2f}) {r['seconds']:.1f} s", flush=True)
                    write_json_atomic(args.out, {"machine": machine(), "core": CORE, "nets": NETS,
                                                 "method": NetTrim().record(), "rows": rows})
    print(table({"rows": rows}))


def table(data: dict) -> str:
    """Test accuracy (mean ± half-range over seeds) per network, sparsity and method."""
    rows = data["rows"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = ["| network | zeros per layer | dense | " + " | ".join(methods) + " |",
           "|---|---|---|" + "---|" * len(methods)]
    for net in dict.fromkeys(r["net"] for r in rows):
        for s in dict.fromkeys(r["sparsity"] for r in rows if r["net"] == net):
            cells = []
            for m in methods:
                acc = [r["test"] for r in rows if (r["net"], r["sparsity"], r["method"]) == (net, s, m)]
                cells.append(f"{statistics.fmean(acc):.2f} ± {(max(acc) - min(acc)) / 2:.2f}"
                             + ("" if len(acc) == 3 else f" ({len(acc)} seed{'s' * (len(acc) > 1)})")
                             if acc else "-")
            dense = [r["dense_test"] for r in rows if (r["net"], r["sparsity"]) == (net, s)]
            out.append(f"| {net} | {100 * s:.0f} % | {statistics.fmean(dense):.2f} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    run(main)
