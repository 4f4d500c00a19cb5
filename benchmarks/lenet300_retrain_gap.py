"""Benchmark: is LeNet-300-100's loss at 95 % removed in Net-Trim's mask or in its values?

Prunes the `make demo` checkpoint with the best 95 % setting of the README (cascade, eps 0.30,
three rounds of reweighting, hinge program, relaxed slack, floors 4=0.2 and 7=0.15, one ball
per neuron in the hidden layers, 8,000 training images), then retrains with labels, keeping
every zero at zero (Adam 1e-3, cosine schedule to zero, all 60,000 training images), for each
``--epochs`` budget:

* from Net-Trim's pruned network (its mask and its values);
* from hard thresholding at exactly Net-Trim's per-layer non-zero counts (same size);
* from L-OBS (exact greedy, cascade) at the same counts: another way to pick the values for
  Net-Trim's per-layer allocation (removing a unit left without weights may take it a little
  below the counts; the row gives what it removed).

If the retrained Net-Trim mask reaches the dense accuracy minus 0.5 points, the mask can hold
the target and what the one-shot program gives up is in the values it picks: it keeps each
layer's response on the pruning images, not the decision. The retraining runs are seeded and
use the same batches for both starts.

Prints a table and writes benchmarks/results/lenet300_retrain_gap.json. Run:
`.venv/bin/python benchmarks/lenet300_retrain_gap.py` (after `make demo`, which trains the
checkpoint).
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from common import machine, run
from nettrim import prune
from nettrim.data import load_dataset, subset
from nettrim.models import evaluate, finetune, load_checkpoint
from nettrim.report import write_json_atomic

BEST_95 = dict(method="nettrim", mode="cascade", epsilon=0.30, reweight=3, hinge=True,
               relax_slack=True, layer_epsilon={"4": 0.2, "7": 0.15}, per_neuron=["1", "4"])


def retrain(pruned, data, test, epochs: int) -> dict:
    """Masked retraining of a copy of ``pruned`` for ``epochs``; test accuracy and seconds."""
    model = copy.deepcopy(pruned)
    log = finetune(model, *data, epochs=epochs, lr=1e-3, schedule="cosine", seed=0,
                   progress=False)
    return {"epochs": epochs, "accuracy": evaluate(model, *test), "seconds": log.total_seconds}


def epoch_budgets(text: str) -> list[int]:
    """``"1,5,15"`` -> [1, 5, 15]; anything else is an argparse error (one line)."""
    try:
        budgets = [int(e) for e in text.split(",")]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,5,15, got {text!r}")
    return budgets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("runs/demo/lenet-300-100.pt"))
    ap.add_argument("--samples", type=int, default=8000)
    ap.add_argument("--epochs", type=epoch_budgets, default="1,2,3,5,15",
                    help="retraining budgets, e.g. 1,5,15")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lenet300_retrain_gap.json"))
    args = ap.parse_args()
    model, info = load_checkpoint(args.checkpoint)
    data, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    xs, _ = subset(*data, args.samples, seed=0)
    dense = evaluate(model, *test)
    t0 = time.perf_counter()
    trimmed = prune(model, xs, progress=False, **BEST_95)
    prune_seconds = time.perf_counter() - t0
    counts = {r.name: r.nnz_after for r in trimmed.report.layers}
    thresholded = prune(model, xs, method="threshold", counts=counts, progress=False)
    obs = prune(model, xs, method="lobs", counts=counts, progress=False)
    starts = {"nettrim": trimmed, "threshold": thresholded, "lobs": obs}
    rows = {}
    print(f"dense {dense:.2f} %; target {dense - 0.5:.2f} %; "
          f"{100 * trimmed.report.sparsity:.2f} % removed, Net-Trim in {prune_seconds:.1f} s",
          flush=True)
    print(f"{'start':<10} {'removed':>8} {'no retraining':>14} "
          + " ".join(f"{f'{e} epochs':>14}" for e in args.epochs), flush=True)
    for name, res in starts.items():
        row = rows[name] = {"removed": res.report.sparsity,
                            "accuracy": evaluate(res.model, *test),
                            "retrained": [retrain(res.model, data, test, e) for e in args.epochs]}
        print(f"{name:<10} {100 * row['removed']:>7.2f}% {row['accuracy']:>13.2f}% "
              + " ".join(f"{r['accuracy']:>7.2f}% {r['seconds']:>4.0f}s" for r in row["retrained"]),
              flush=True)
    write_json_atomic(args.out, {"checkpoint": str(args.checkpoint), "arch": info["arch"],
                                 "dense_accuracy": dense, "samples": len(xs),
                                 "setting": BEST_95,
                                 "prune_seconds": prune_seconds, "counts": counts,
                                 "rows": rows, **machine()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run(main)
