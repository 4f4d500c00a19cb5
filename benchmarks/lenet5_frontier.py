"""Benchmark: the Net-Trim frontier of LeNet-5 on MNIST, settings chosen on held-out data.

Each setting (cascade, hinge program, relaxed slack, reweighted l1, per-layer floors) prunes
the checkpoint on 2,000 training images (4,000 to 16,000 for some of them). The MNIST test set is split in two: the first 5,000
images choose the setting (the "selection" half), the last 5,000 judge it (the "held-out"
half); the full-set figure is printed too. The chosen setting is the sparsest whose drop on
the selection half is within ``--budget`` points, else the one with the smallest drop among
those that remove at least ``--target`` of the weights.

Prints a table and writes benchmarks/results/lenet5_frontier.json. Run:
`.venv/bin/python benchmarks/lenet5_frontier.py --checkpoint runs/cache/lenet5-mnist.pt`
(train the checkpoint with `nettrim train --model lenet5 --dataset mnist --out ...`).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import machine, run
from nettrim import prune
from nettrim.data import load_dataset, subset
from nettrim.models import evaluate, finetune, load_checkpoint
from nettrim.report import write_json_atomic

# (first-layer eps, floors for conv2 / fc1 / fc2 / fc3 by layer name, reweighting rounds,
# pruning images (None = --samples)[, layers with one ball per neuron])
SETTINGS = [
    (0.1, {"3": 0.1, "7": 0.1, "9": 0.1, "11": 0.04}, 3, None),
    (0.1, {"3": 0.12, "7": 0.12, "9": 0.1, "11": 0.04}, 3, None),
    (0.07, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 3, None),
    (0.07, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 4, None),
    (0.05, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 3, None),
    (0.05, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 4, None),
    (0.05, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 3, 4000),
    (0.05, {"3": 0.1, "7": 0.11, "9": 0.08, "11": 0.03}, 3, None),
    (0.05, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 4, 4000),
    (0.05, {"3": 0.1, "7": 0.13, "9": 0.08, "11": 0.03}, 4, 4000),
    (0.05, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 3, 6000),
    (0.05, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 3, 8000),
    (0.05, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 4, 8000),
    (0.05, {"3": 0.1, "7": 0.13, "9": 0.08, "11": 0.03}, 4, 8000),
    (0.05, {"3": 0.1, "7": 0.12, "9": 0.08, "11": 0.03}, 3, 8000, ("7", "9")),
    (0.05, {"3": 0.1, "7": 0.13, "9": 0.08, "11": 0.03}, 3, 8000, ("7", "9")),
    (0.05, {"3": 0.1, "7": 0.13, "9": 0.08, "11": 0.03}, 3, 16000, ("7", "9")),
    (0.05, {"3": 0.1, "7": 0.13, "9": 0.08, "11": 0.03}, 4, 16000, ("7", "9")),
    (0.05, {"3": 0.1, "7": 0.125, "9": 0.08, "11": 0.03}, 5, 16000, ("7", "9")),
    (0.05, {"3": 0.1, "7": 0.125, "9": 0.08, "11": 0.03}, 7, 16000, ("7", "9")),
    (0.05, {"3": 0.1, "7": 0.13, "9": 0.08, "11": 0.03}, 7, 16000, ("7", "9")),
]


def measure(model, xs, data, eps, floors, reweight, finetune_epochs, per_neuron=()):
    """Prune with one setting; accuracies on both halves and the full test set."""
    x, y, halves = data
    t0 = time.perf_counter()
    res = prune(model, xs, epsilon=eps, reweight=reweight, hinge=True, relax_slack=True,
                layer_epsilon=floors, per_neuron=list(per_neuron) or False, progress=False)
    seconds = time.perf_counter() - t0
    row = {"epsilon": eps, "floors": floors, "reweight": reweight, "images": len(xs),
           "per_neuron": list(per_neuron), "seconds": seconds,
           "removed": res.report.sparsity,
           "kept": {r.name: r.kept_fraction for r in res.report.layers},
           **{name: evaluate(res.model, xv, yv) for name, (xv, yv) in halves.items()}}
    if finetune_epochs:
        finetune(res.model, x, y, epochs=finetune_epochs, lr=1e-3, seed=0, progress=False)
        row["finetuned"] = evaluate(res.model, *halves["test"])
    return row


def choose(rows, dense, budget, target):
    """Sparsest setting within ``budget`` on the selection half, else the best at ``target``.

    Drops are compared rounded to 1e-4 points (one image in 5,000 is 0.02): accuracies are
    float32 means, and a drop of exactly 25 images must read as 0.5, not 0.500005."""
    drop = lambda r: round(dense["selection"] - r["selection"], 4)
    within = [r for r in rows if drop(r) <= budget]
    if within:
        return max(within, key=lambda r: r["removed"])
    enough = [r for r in rows if r["removed"] >= target] or rows
    return min(enough, key=drop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("runs/cache/lenet5-mnist.pt"))
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--budget", type=float, default=0.5, help="allowed drop, points")
    ap.add_argument("--target", type=float, default=0.9, help="fraction of weights to remove")
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lenet5_frontier.json"))
    args = ap.parse_args()
    model, info = load_checkpoint(args.checkpoint)
    x, y = load_dataset("mnist", "train")
    xt, yt = load_dataset("mnist", "test")
    halves = {"selection": (xt[:5000], yt[:5000]), "held_out": (xt[5000:], yt[5000:]),
              "test": (xt, yt)}
    dense = {name: evaluate(model, xv, yv) for name, (xv, yv) in halves.items()}
    print(f"dense: selection {dense['selection']:.2f}, held-out {dense['held_out']:.2f}, "
          f"test {dense['test']:.2f}", flush=True)
    rows = []
    for eps, floors, reweight, samples, *per_neuron in SETTINGS:
        xs, _ = subset(x, y, samples or args.samples, seed=0)
        split = per_neuron[0] if per_neuron else ()
        rows.append(measure(model, xs, (x, y, halves), eps, floors, reweight,
                            args.finetune_epochs, split))
        r = rows[-1]
        print(f"eps {eps}, reweight {reweight}, floors {floors}, {len(xs)} images"
              f"{', per neuron ' + ','.join(split) if split else ''}: removed {100 * r['removed']:.2f} %, selection "
              f"{r['selection'] - dense['selection']:+.2f}, held-out "
              f"{r['held_out'] - dense['held_out']:+.2f}, test {r['test']:.2f} "
              f"({r['test'] - dense['test']:+.2f}), fine-tuned {r.get('finetuned', float('nan')):.2f}, "
              f"{r['seconds']:.1f} s", flush=True)
    best = choose(rows, dense, args.budget, args.target)
    print(f"chosen on the selection half: eps {best['epsilon']}, reweight {best['reweight']}, "
          f"floors {best['floors']}, {best['images']} images: "
          f"{100 * best['removed']:.2f} % removed, held-out {best['held_out'] - dense['held_out']:+.2f}, "
          f"full test {best['test'] - dense['test']:+.2f}")
    write_json_atomic(args.out, {"checkpoint": str(args.checkpoint), "arch": info["arch"],
                                 "samples": args.samples, "dense": dense, "rows": rows,
                                 "chosen": best, **machine()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run(main)
