"""Benchmark: which Net-Trim configuration gives the best frontier (the choice of ``NetTrim()``).

Three LeNet-300-100 networks (the ``make demo`` recipe, training seeds 0, 1, 2) are trained on
55,000 MNIST training images; the other 5,000 (``validation_split``, seed 0) are the
validation split every choice here is judged on. Each configuration prunes each network in
cascade on 2,000 calibration images (drawn from the 55,000 with the network's seed) at a grid
of relative tolerances, no fine-tuning. The configurations are the candidate default (``BASE``)
with one option changed at a time, and the papers' program. The frontier figure of a configuration on one network
is the fraction of weights and biases it keeps at a 0.5-point (and a 1-point) validation
accuracy drop, interpolated along its (kept, drop) curve; a configuration is better when it
keeps less. The test set is not read.

The committed benchmarks/results/default_config.json predates the current core: its rows were
made with the earlier ``nettrim.prune`` (``nettrim.pruners``, whose ``NetTrim`` chose each
support on at most 8,000 rows a layer, ``solve_rows``); a run of this script measures the
current ``nettrim.prune`` and resumes only from a result file this core wrote.

Writes benchmarks/results/default_config.json. Run:
`.venv/bin/python benchmarks/default_config.py [--configs paper,reweight2,...] [--seeds 0,1,2]`
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from common import CORE, earlier, machine, run
from nettrim import NetTrim, RunOptions, prune
from nettrim.data import subset, validation_split
from nettrim.experiments import zoo
from nettrim.models import evaluate
from nettrim.report import write_json_atomic

OUT = Path(__file__).parent / "results" / "default_config.json"
NET = dict(arch="lenet-300-100", dataset="mnist", epochs=15, validation=5000)
EPSILONS = (0.1, 0.15, 0.2, 0.3)
EXTEND = 3  # further tolerances (x1.5 each) while the validation drop is within the largest budget
BUDGETS = (0.5, 1.0)
# the candidate the search started from (the support by the l1 program, two rounds of
# reweighting, values refit on the support, the papers' V), the papers' program, and the
# candidate with one option changed at a time; every option is spelled out, so a row means
# the same whatever NetTrim()'s defaults are
BASE = dict(support="l1", reweight=2, refit=True, margin=None, per_neuron=False, layer_epsilon=None)
CONFIGS = {
    "paper": dict(reweight=0, refit=False),
    "default": {},
    "no refit": dict(refit=False),
    "no reweighting": dict(reweight=0),
    "reweight 3": dict(reweight=3),
    "margin 1": dict(margin=1.0),
    "per_neuron": dict(per_neuron=True),
    "margin 1 + per_neuron": dict(margin=1.0, per_neuron=True),
    "layer_epsilon floors": dict(layer_epsilon={"4": 0.2, "7": 0.15}),
}
# options measured here and then removed from NetTrim for not paying off (their rows stay in
# the JSON; they ran at commit 73db244): polish (refit does what it did, better), the hinge
# program and relax_slack (margin's theta covers the inactive side)
RETIRED = {
    "polish instead of refit": dict(refit=False, polish=True),
    "hinge": dict(hinge=True),
    "relax_slack": dict(relax_slack=True),
}


def network(seed: int):
    """(model, calibration inputs, validation inputs, validation labels) for one training seed."""
    model, _ = zoo.get_model(**NET, seed=seed, progress=False)
    data = zoo.load_data(NET["dataset"])
    keep, val = validation_split(len(data.x_train), NET["validation"])
    xs, _ = subset(data.x_train[keep], data.y_train[keep], 2000, seed=seed)
    return model, xs, data.x_train[val], data.y_train[val]


def kept_at(points: list[tuple[float, float]], budget: float) -> float | None:
    """Kept fraction at validation drop ``budget`` (points), interpolated in log(kept) between
    the nearest grid points either side; the sparsest within budget if none is beyond it."""
    pts = sorted(points)  # by kept fraction, ascending
    inside = [p for p in pts if p[1] <= budget]
    if not inside:
        return None
    best = inside[0]
    beyond = [p for p in pts if p[0] < best[0] and p[1] > budget]
    if not beyond:
        return best[0]
    lo = beyond[-1]
    t = (budget - best[1]) / (lo[1] - best[1])
    return math.exp(math.log(best[0]) + t * (math.log(lo[0]) - math.log(best[0])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    names = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"error: unknown configuration {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    torch.set_num_threads(2)
    rows = _earlier_rows(args.out)
    for seed in [int(s) for s in args.seeds.split(",")]:
        model, xs, xv, yv = network(seed)
        dense = evaluate(model, xv, yv)
        for name in names:
            grid = list(EPSILONS)
            while grid:
                eps = round(grid.pop(0), 4)
                row = next((r for r in rows if (r["config"], r["seed"], r["epsilon"]) == (name, seed, eps)), None)
                if row is None:
                    row = prune_row(model, xs, xv, yv, dense, name, seed, eps)
                    rows.append(row)
                    write_json_atomic(args.out, {"machine": machine(), "core": CORE, "net": NET, "epsilons": EPSILONS,
                                                 "base": BASE, "configs": {**CONFIGS, **RETIRED},
                                                 "retired": sorted(RETIRED), "rows": rows,
                                                 "summary": summarize(rows)})
                extended = sum(e > EPSILONS[-1] for e in (r["epsilon"] for r in rows
                               if (r["config"], r["seed"]) == (name, seed)))
                if not grid and row["drop"] <= max(BUDGETS) and extended < EXTEND:
                    grid.append(eps * 1.5)
    print(table(summarize(rows)))


def prune_row(model, xs, xv, yv, dense: float, name: str, seed: int, eps: float) -> dict:
    """One configuration at one tolerance on one network, judged on the validation split."""
    t0 = time.perf_counter()
    res = prune(model, xs, NetTrim(epsilon=eps, **{**BASE, **CONFIGS[name]}), run=RunOptions(progress=False))
    seconds = time.perf_counter() - t0
    acc = evaluate(res.model, xv, yv)
    row = dict(config=name, seed=seed, epsilon=eps, kept=1 - res.report.sparsity,
               validation_accuracy=acc, dense_validation_accuracy=dense,
               drop=round(dense - acc, 4), seconds=seconds, certified=not res.report.uncertified)
    print(f"seed {seed} {name:<26} eps {eps:<6} kept {100 * row['kept']:6.2f} % "
          f"val drop {row['drop']:+.2f}  {seconds:5.1f} s", flush=True)
    return row


def _earlier_rows(path: Path) -> list[dict]:
    """The rows an interrupted run of the same configurations (and core) already wrote (resumed after)."""
    old = earlier(path)
    if not old:
        return []
    base = {**BASE, **{k: v for k, v in old.get("base", {}).items()}}
    same = base == BASE and old.get("net") == NET
    known = {**CONFIGS, **RETIRED}
    return [r for r in old["rows"] if same and known.get(r["config"]) == old["configs"].get(r["config"])]


def summarize(rows: list[dict]) -> dict:
    """Per configuration and budget: the kept fraction per seed, its mean and spread (max - min),
    and the median seconds per prune."""
    out = {}
    for name in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == name]
        seeds = sorted({r["seed"] for r in mine})
        entry = {"seconds": statistics.median(r["seconds"] for r in mine)}
        for budget in BUDGETS:
            kept = [kept_at([(r["kept"], r["drop"]) for r in mine if r["seed"] == s], budget)
                    for s in seeds]
            ok = [k for k in kept if k is not None]
            entry[f"kept_at_{budget}"] = kept
            entry[f"mean_{budget}"] = sum(ok) / len(ok) if len(ok) == len(kept) else None
            entry[f"spread_{budget}"] = max(ok) - min(ok) if ok else None
        out[name] = entry
    return out


# how the table names the rows ("default" is the candidate the search started from)
LABELS = {"default": "start: reweight 2, refit", "margin 1": "margin 1 (= `NetTrim()`)",
          "paper": "papers' program (`NetTrim.paper()`)"}


def table(summary: dict) -> str:
    """Markdown: kept % at each budget (mean and spread over seeds), seconds per prune."""
    head = "| configuration | " + " | ".join(f"kept at {b}-point drop (mean, spread)" for b in BUDGETS) \
           + " | s per prune |"
    rows = [head, "|---" * (len(BUDGETS) + 2) + "|"]
    for name, e in summary.items():
        cells = []
        for b in BUDGETS:
            mean, spread = e[f"mean_{b}"], e[f"spread_{b}"]
            cells.append("-" if mean is None else f"{100 * mean:.2f} % (±{100 * spread / 2:.2f})")
        rows.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + f" | {e['seconds']:.1f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    run(main)
