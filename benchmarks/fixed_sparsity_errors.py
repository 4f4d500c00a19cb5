"""Benchmark: how each pruner's error reaches the decision, at one fixed sparsity.

Prunes the hidden layers of a checkpoint to ``--sparsity`` (seed 004's setting: cascade,
the logits layer left as it is, 2,000 training images) with L-OBS, Net-Trim with one ball
per layer and Net-Trim with one ball per neuron, and measures for each: test accuracy, the
relative logit error ||f_pruned(x) - f(x)|| / ||f(x)|| on the pruning images and on the test
set, and the agreement of the pruned network's predicted class with the dense network's.
Two pruned networks with the same logit error can disagree with the dense one on very
different numbers of images: the error's direction matters, not only its size.

Prints a table and writes benchmarks/results/fixed_sparsity_errors.json. Run:
`.venv/bin/python benchmarks/fixed_sparsity_errors.py --checkpoint runs/cache/mlp-100-100-fashion-mnist.pt --dataset fashion-mnist`
(the checkpoint is what `nettrim compare --model mlp-100-100 --dataset fashion-mnist` caches).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import machine, run
from nettrim import prune
from nettrim.capture import trace_layers
from nettrim.data import load_dataset, subset
from nettrim.experiments.compare import DEFAULT_OPTIONS
from nettrim.models import evaluate, load_checkpoint, predict
from nettrim.report import write_json_atomic

VARIANTS = {
    "lobs": dict(method="lobs"),
    "nettrim (layer ball)": dict(method="nettrim", **DEFAULT_OPTIONS["nettrim"]),
    "nettrim (per neuron)": dict(method="nettrim", **DEFAULT_OPTIONS["nettrim"], per_neuron=True),
}


def logit_errors(dense, pruned, x) -> dict:
    """Relative logit error, and agreement of the predicted classes, on images x."""
    f, g = predict(dense, x), predict(pruned, x)
    return {"relative_logit_error": float((g - f).norm() / f.norm()),
            "agreement": float((g.argmax(1) == f.argmax(1)).double().mean())}


def measure(model, xs, test, layers, sparsity, options) -> dict:
    xt, yt = test
    t0 = time.perf_counter()
    res = prune(model, xs, sparsity=sparsity, layers=layers, progress=False, **options)
    seconds = time.perf_counter() - t0
    return {"removed": res.report.sparsity, "accuracy": evaluate(res.model, xt, yt),
            "seconds": seconds,
            "pruning_images": logit_errors(model, res.model, xs),
            "test": logit_errors(model, res.model, xt)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("runs/cache/mlp-100-100-fashion-mnist.pt"))
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fixed_sparsity_errors.json"))
    args = ap.parse_args()
    model, info = load_checkpoint(args.checkpoint)
    x, y = load_dataset(args.dataset, "train")
    test = load_dataset(args.dataset, "test")
    xs, _ = subset(x, y, args.samples, seed=0)
    layers = [s.name for s in trace_layers(model, xs[:2])][:-1]
    rows = {}
    print(f"{'variant':<22} {'removed':>8} {'accuracy':>9} {'logit err (train)':>18} "
          f"{'logit err (test)':>17} {'agreement':>10} {'seconds':>8}", flush=True)
    for name, options in VARIANTS.items():
        r = rows[name] = measure(model, xs, test, layers, args.sparsity, options)
        print(f"{name:<22} {100 * r['removed']:>7.2f}% {r['accuracy']:>8.2f}% "
              f"{r['pruning_images']['relative_logit_error']:>18.4f} "
              f"{r['test']['relative_logit_error']:>17.4f} {100 * r['test']['agreement']:>9.2f}% "
              f"{r['seconds']:>8.1f}", flush=True)
    write_json_atomic(args.out, {"checkpoint": str(args.checkpoint), "arch": info["arch"],
                                 "dataset": args.dataset, "sparsity": args.sparsity,
                                 "samples": len(xs), "layers": layers, "rows": rows,
                                 **machine()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run(main)
