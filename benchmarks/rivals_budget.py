"""Benchmark: every method at the user's budget (``nettrim.shrink``), each allocation.

For each network and training seed (0, 1, 2): the network is trained on 55,000 MNIST training
images; the other 5,000 (``validation_split``, seed 0) are its validation split. Each method is
given the same 2,000 calibration images (drawn from the 55,000 with the seed) and searched by
``shrink`` for the sparsest model within ``max_drop`` of validation accuracy: Net-Trim over its
tolerance, the rivals over one network sparsity, spread over the layers by their allocation
(``nettrim.methods.allocation``). The test split is evaluated once, for the model returned.

Writes benchmarks/results/rivals_budget.json; ``--doc`` writes docs/rivals.md from it. Run:
`.venv/bin/python benchmarks/rivals_budget.py [--nets lenet-300-100,mlp-300-100] [--seeds 0,1,2]`
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from common import machine, run
import nettrim
from nettrim.data import subset, validation_split
from nettrim.experiments import zoo
from nettrim.models import evaluate
from nettrim.report import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "rivals_budget.json"
DOC = ROOT / "docs" / "rivals.md"
NETS = {
    "lenet-300-100": dict(arch="lenet-300-100", dataset="mnist", epochs=15, dropout=0.2),
    "mlp-300-100": dict(arch="lenet-300-100", dataset="mnist", epochs=15, dropout=0.0),
}
VALIDATION = 5000
SAMPLES = 2000
BUDGETS = (0.005, 0.01)
METHODS = {
    "NetTrim()": lambda: nettrim.NetTrim(),
    "SparseGPT uniform": lambda: nettrim.SparseGPT(),
    "SparseGPT global": lambda: nettrim.SparseGPT(allocation="global"),
    "SparseGPT owl": lambda: nettrim.SparseGPT(allocation="owl"),
    "Wanda uniform": lambda: nettrim.Wanda(),
    "Wanda global": lambda: nettrim.Wanda(allocation="global"),
    "Wanda owl": lambda: nettrim.Wanda(allocation="owl"),
    "L-OBS uniform": lambda: nettrim.LOBS(),
    "L-OBS global": lambda: nettrim.LOBS(allocation="global"),
    "threshold uniform": lambda: nettrim.Threshold(),
    "threshold global": lambda: nettrim.Threshold(allocation="global"),
}
QUIET = nettrim.RunOptions(progress=False)


def network(net: str, seed: int):
    """(model, calibration inputs, validation pair, test pair)."""
    model, _ = zoo.get_model(**NETS[net], seed=seed, validation=VALIDATION, progress=False)
    data = zoo.load_data(NETS[net]["dataset"])
    keep, val = validation_split(len(data.x_train), VALIDATION)
    xs, _ = subset(data.x_train[keep], data.y_train[keep], SAMPLES, seed=seed)
    return model, xs, (data.x_train[val], data.y_train[val]), (data.x_test, data.y_test)


def row(net: str, seed: int, label: str, max_drop: float, model, xs, val, test) -> dict:
    found = nettrim.shrink(model, xs, val, max_drop, METHODS[label](), run=QUIET)
    out = dict(net=net, seed=seed, method=label, max_drop=max_drop, status=str(found.status),
               seconds=found.seconds, trials=len(found.search), dense_test=evaluate(model, *test))
    if found.chosen is not None:
        out.update(kept=found.chosen.kept, knob=found.chosen.knob, validation_drop=found.chosen.drop,
                   test_drop=out["dense_test"] - evaluate(found.model, *test), certified=found.chosen.certified)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="max_drop fractions, e.g. 0.005,0.01")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--doc", action="store_true", help="only write docs/rivals.md from the JSON")
    args = ap.parse_args()
    if args.doc:
        DOC.write_text(document(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(2)
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    labels = [m for m in args.methods.split(",") if m]
    nets = [n for n in args.nets.split(",") if n]
    done = {(r["net"], r["seed"], r["method"], r["max_drop"]) for r in old.get("rows", [])}
    rows = list(old.get("rows", []))
    for net in nets:
        for seed in (int(s) for s in args.seeds.split(",")):
            model, xs, val, test = network(net, seed)
            for label in labels:
                for max_drop in (float(b) for b in args.budgets.split(",")):
                    if (net, seed, label, max_drop) in done:
                        continue
                    rows.append(row(net, seed, label, max_drop, model, xs, val, test))
                    r = rows[-1]
                    print(f"{net} s{seed} {label} @{100 * max_drop:g}: kept {100 * r.get('kept', 1):.2f} % "
                          f"({r['seconds']:.0f} s)", flush=True)
                    write_json_atomic(args.out, {"machine": machine(), "nets": NETS, "validation": VALIDATION,
                                            "samples": SAMPLES, "rows": rows})
    DOC.write_text(document(json.loads(args.out.read_text())))


def _mean_spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f} ± {(max(values) - min(values)) / 2:.2f}"


def document(data: dict) -> str:
    """docs/rivals.md from the benchmark's JSON."""
    rows = data["rows"]
    lines = ["# Every method at the user's budget", "",
             "Generated by `benchmarks/rivals_budget.py --doc` from benchmarks/results/rivals_budget.json.",
             "", f"`nettrim.shrink` with each method on {data['samples']:,} MNIST calibration images; the "
             f"budget is judged on {data['validation']:,} held-out training images; the test drop is "
             "measured once, on the model returned. Mean ± half-range over the training seeds; "
             "the seeds column says how many there are (a row with one seed is a single measurement, "
             "not a claim).", ""]
    for net in dict.fromkeys(r["net"] for r in rows):
        for max_drop in dict.fromkeys(r["max_drop"] for r in rows):
            mine = [r for r in rows if r["net"] == net and r["max_drop"] == max_drop]
            if len({r["method"] for r in mine}) < len(METHODS):
                continue  # a budget not every method ran at yet
            lines += [f"## {net}, budget {100 * max_drop:g} point(s)", "",
                      "| method | seeds | weights kept (%) | validation drop | test drop | seconds |",
                      "|---|---|---|---|---|---|"]
            means = {}
            for label in dict.fromkeys(r["method"] for r in mine):
                got = [r for r in mine if r["method"] == label and "kept" in r]
                if not got:
                    lines.append(f"| {label} | 0 | budget unreachable | | | |")
                    continue
                means[label] = statistics.fmean(r["kept"] for r in got)
                lines.append(f"| {label} | {len(got)} | {_mean_spread([100 * r['kept'] for r in got])} | "
                             f"{_mean_spread([r['validation_drop'] for r in got])} | "
                             f"{_mean_spread([r['test_drop'] for r in got])} | "
                             f"{statistics.fmean(r['seconds'] for r in got):.0f} |")
            if means:
                lines += ["", f"Fewest weights kept: **{min(means, key=means.get)}**."]
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
