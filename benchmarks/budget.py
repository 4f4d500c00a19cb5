"""Benchmark: name a budget, get the smallest model (``nettrim.shrink`` at half a point).

For each network (LeNet-300-100 and LeNet-5 on MNIST, a 784-100-100-10 MLP on Fashion-MNIST)
and training seed (0, 1, 2): the network is trained on 55,000 training images, the other 5,000
(``validation_split``, seed 0) are its validation split. ``shrink`` prunes it on 2,000
calibration images (drawn from the 55,000 with the seed) to the sparsest ``NetTrim()`` model
whose validation accuracy is within 0.5 points; the test set is evaluated once, for the model
it returns. In the same run one prune of ``NetTrim()`` at its default tolerance is timed, and
the search's time is given as a multiple of it; so is one prune from scratch at the
tolerance the search chose (what a trial costs where the answer lies).

Second part (``--compare``): ``NetTrim()`` against the papers' program ``NetTrim.paper()`` at
three tolerances on the LeNet-300-100 networks: weights kept and test accuracy, no fine-tuning.

The committed benchmarks/results/budget.json predates the current core: it was made with the
earlier ``nettrim.prune`` and ``nettrim.shrink`` (``nettrim.pruners``); a run of this script
measures the current ones (``nettrim.api``, ``nettrim.search``) and keeps the rows of an
earlier result file only when this core wrote it.

Writes benchmarks/results/budget.json. Run:
`.venv/bin/python benchmarks/budget.py [--nets lenet-300-100,lenet5,mlp-100-100-fashion] [--seeds 0,1,2]`
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from common import CORE, earlier, machine, run
from nettrim import NetTrim, RunOptions, prune, shrink
from nettrim.data import subset, validation_split
from nettrim.experiments import zoo
from nettrim.models import evaluate
from nettrim.report import write_json_atomic

OUT = Path(__file__).parent / "results" / "budget.json"
NETS = {
    "lenet-300-100": dict(arch="lenet-300-100", dataset="mnist", epochs=15, dropout=0.2),
    "lenet5": dict(arch="lenet5", dataset="mnist", epochs=8, dropout=0.0),
    "mlp-100-100-fashion": dict(arch="mlp-100-100", dataset="fashion-mnist", epochs=15, dropout=0.2),
}
VALIDATION = 5000
SAMPLES = 2000
MAX_DROP = 0.005
COMPARE_EPSILONS = (0.1, 0.2, 0.3)
QUIET = RunOptions(progress=False)


def network(net: str, seed: int):
    """(model, calibration inputs, (validation inputs, labels), (test inputs, labels), info)."""
    model, info = zoo.get_model(**NETS[net], seed=seed, validation=VALIDATION, progress=False)
    data = zoo.load_data(NETS[net]["dataset"])
    keep, val = validation_split(len(data.x_train), VALIDATION)
    xs, _ = subset(data.x_train[keep], data.y_train[keep], SAMPLES, seed=seed)
    return (model, xs, (data.x_train[val], data.y_train[val]), (data.x_test, data.y_test),
            info)


def budget_row(net: str, seed: int) -> dict:
    model, xs, val, test, info = network(net, seed)
    t0 = time.perf_counter()
    single = prune(model, xs, NetTrim(), run=QUIET)
    one_prune = time.perf_counter() - t0
    found = shrink(model, xs, val, MAX_DROP, NetTrim(), run=QUIET)
    chosen = found.chosen
    row = dict(net=net, seed=seed, status=str(found.status), one_prune_seconds=one_prune,
               search_seconds=found.seconds, search_ratio=found.seconds / one_prune,
               trials=len(found.search), dense_test=evaluate(model, *test),
               dense_validation=found.original_accuracy,
               default_kept=1 - single.report.sparsity,
               search=[dict(epsilon=t.knob, kept=t.kept, drop=t.drop, within_budget=t.within_budget,
                            seconds=t.seconds) for t in found.search])
    if chosen is not None:
        row.update(kept=chosen.kept, epsilon=chosen.knob, validation_drop=chosen.drop,
                   test=evaluate(found.model, *test), certified=chosen.certified)
        row["test_drop"] = row["dense_test"] - row["test"]
        t0 = time.perf_counter()  # what one prune costs where the answer lies, from scratch
        prune(model, xs, NetTrim(epsilon=chosen.knob), run=QUIET)
        row["chosen_prune_ratio"] = (time.perf_counter() - t0) / one_prune
    return row


def compare_row(seed: int, eps: float, name: str) -> dict:
    model, xs, _, test, _ = network("lenet-300-100", seed)
    method = NetTrim.paper(epsilon=eps) if name == "paper" else NetTrim(epsilon=eps)
    t0 = time.perf_counter()
    res = prune(model, xs, method, run=QUIET)
    return dict(seed=seed, epsilon=eps, method=name, kept=1 - res.report.sparsity,
                test=evaluate(res.model, *test), dense_test=evaluate(model, *test),
                seconds=time.perf_counter() - t0, certified=not res.report.uncertified)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--compare", action="store_true", help="also NetTrim() against NetTrim.paper()")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    nets = [n for n in args.nets.split(",") if n]
    unknown = sorted(set(nets) - set(NETS))
    if unknown:
        raise SystemExit(f"error: unknown network {', '.join(unknown)}; known: {', '.join(NETS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(2)
    old = earlier(args.out)
    rows = [r for r in old.get("budget", []) if r["net"] not in nets]
    compare = old.get("compare", [])
    for net in nets:
        for seed in seeds:
            rows.append(budget_row(net, seed))
            r = rows[-1]
            print(f"{net} seed {seed}: {r['status']}, kept {100 * r.get('kept', 1):.2f} %, "
                  f"validation -{r.get('validation_drop', 0):.2f}, test -{r.get('test_drop', 0):.2f}, "
                  f"search {r['search_seconds']:.0f} s = {r['search_ratio']:.2f} prunes", flush=True)
            _write(args.out, rows, compare)
    if args.compare:
        compare = [compare_row(s, e, m) for s in seeds for e in COMPARE_EPSILONS
                   for m in ("paper", "default")]
        _write(args.out, rows, compare)
    print(budget_table(summary(rows)))


def _write(path: Path, rows: list[dict], compare: list[dict]) -> None:
    write_json_atomic(path, {"machine": machine(), "core": CORE, "nets": NETS, "validation": VALIDATION,
                             "samples": SAMPLES, "max_drop": MAX_DROP,
                             "method": NetTrim().record(), "budget": rows, "compare": compare})


def _mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (max(values) - min(values)) / 2


def summary(rows: list[dict]) -> dict:
    """Per network: mean and half-range over seeds of kept, drops and the search's cost."""
    out = {}
    for net in dict.fromkeys(r["net"] for r in rows):
        mine = [r for r in rows if r["net"] == net and "kept" in r]
        out[net] = {k: _mean_spread([r[k] for r in mine]) for k in
                    ("kept", "validation_drop", "test_drop", "search_ratio", "search_seconds")} \
            if mine else {}
        if mine and all("chosen_prune_ratio" in r for r in mine):
            out[net]["chosen_prune_ratio"] = _mean_spread([r["chosen_prune_ratio"] for r in mine])
        out[net]["seeds"] = len(mine)
        out[net]["unreachable"] = sum(r["status"] == "budget_unreachable" for r in rows if r["net"] == net)
    return out


def budget_table(s: dict) -> str:
    rows = ["| network | seeds | weights kept | validation drop | test drop | search time | "
            "search / one prune | one prune at the chosen eps / at the default |",
            "|---|---|---|---|---|---|---|---|"]
    for net, e in s.items():
        if not e.get("kept"):
            rows.append(f"| {net} | {e['seeds']} | budget unreachable | | | | | |")
            continue
        f = lambda k, scale=1, unit="": f"{scale * e[k][0]:.2f}{unit} ± {scale * e[k][1]:.2f}{unit}"
        chosen = f("chosen_prune_ratio") if "chosen_prune_ratio" in e else "-"
        rows.append(f"| {net} | {e['seeds']} | {f('kept', 100, ' %')} | {f('validation_drop')} | "
                    f"{f('test_drop')} | {e['search_seconds'][0]:.0f} s | {f('search_ratio')} | {chosen} |")
    return "\n".join(rows)


def compare_table(compare: list[dict]) -> str:
    rows = ["| tolerance | program | weights kept | test accuracy | test drop |", "|---|---|---|---|---|"]
    for eps in dict.fromkeys(r["epsilon"] for r in compare):
        for name in ("paper", "default"):
            mine = [r for r in compare if r["epsilon"] == eps and r["method"] == name]
            kept, acc = _mean_spread([r["kept"] for r in mine]), _mean_spread([r["test"] for r in mine])
            drop = _mean_spread([r["dense_test"] - r["test"] for r in mine])
            label = "NetTrim.paper()" if name == "paper" else "NetTrim()"
            rows.append(f"| {eps:g} | {label} | {100 * kept[0]:.2f} % ± {100 * kept[1]:.2f} | "
                        f"{acc[0]:.2f} % ± {acc[1]:.2f} | {drop[0]:.2f} ± {drop[1]:.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    run(main)
