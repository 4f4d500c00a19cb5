"""Benchmark: Net-Trim on networks people train today, a ResNet and a vision transformer.

Networks (``nettrim.models``, trained here on Fashion-MNIST's 55,000 training images with
seeds 0, 1, 2; the other 5,000 are the validation split, ``validation_split`` seed 0):
``resnet20`` (BatchNorm folded before pruning, residual adds, 22 layers) for 4 epochs and
``vit-tiny`` (4 blocks, GELU MLP, 26 linear-program layers) for 10 epochs.

Per network and seed, on 1,000 calibration images drawn from the 55,000 with the seed,
cascade: ``NetTrim()`` at two tolerances (0.2 and its default 0.4) and ``shrink`` with a
budget of half a point of validation accuracy; then hard thresholding and L-OBS at exactly
the per-layer non-zero counts each Net-Trim model has (``prune(counts=...)``). Every pruned
model is tested as it is and after one masked epoch (``finetune``: Adam 1e-4, the 55,000
images, zeros kept). The test set is evaluated, never used to choose.

Each prune runs in a fresh subprocess, so ``peak_memory_mb`` (ru_maxrss) is that prune's own
peak; ``base_memory_mb`` is the same process's resident size before it (model and dataset
loaded). Timings: wall seconds and CPU seconds (all threads) of the prune, 2 torch threads,
on a 2-core machine that other jobs shared (the wall time is an upper bound; the CPU time is
the steadier figure).

The committed benchmarks/results/any_model.json predates the current core: its rows were
made with the earlier ``nettrim.prune`` and ``nettrim.shrink`` (``nettrim.pruners``); a run
of this script measures the current ones (``nettrim.api``, ``nettrim.search``) and, since
rows of the two cores do not mix, resumes only from a result file this core wrote.

Writes benchmarks/results/any_model.json. Run:
`.venv/bin/python benchmarks/any_model.py [--nets resnet20,vit-tiny] [--seeds 0,1,2]`
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from common import CORE, child_result, earlier, machine, run, start_child
from nettrim import NetTrim, NettrimError, RunOptions, prune, shrink
from nettrim.data import subset, validation_split
from nettrim.experiments import zoo
from nettrim.models import evaluate, finetune
from nettrim.report import write_json_atomic
from nettrim.scheme import peak_memory_mb

OUT = Path(__file__).parent / "results" / "any_model.json"
NETS = {
    "resnet20": dict(arch="resnet20", dataset="fashion-mnist", epochs=4, dropout=0.0),
    "vit-tiny": dict(arch="vit-tiny", dataset="fashion-mnist", epochs=10, dropout=0.0),
}
VALIDATION = 5000
SAMPLES = 1000
EPSILONS = (0.2, 0.4)
MAX_DROP = 0.005
FINETUNE_LR = 1e-4
SOURCES = tuple(f"nettrim eps {e:g}" for e in EPSILONS) + ("shrink 0.5 points",)
RIVALS = ("threshold", "lobs")
QUIET = RunOptions(progress=False)


def network(net: str, seed: int):
    """(model, calibration inputs, validation (x, y), training (x, y), test (x, y))."""
    model, _ = zoo.get_model(**NETS[net], seed=seed, validation=VALIDATION, progress=False)
    data = zoo.load_data(NETS[net]["dataset"])
    keep, val = validation_split(len(data.x_train), VALIDATION)
    train = (data.x_train[keep], data.y_train[keep])
    xs, _ = subset(*train, SAMPLES, seed=seed)
    return model, xs, (data.x_train[val], data.y_train[val]), train, (data.x_test, data.y_test)


def prune_row(net: str, seed: int, method: str, source: str, counts: dict | None) -> dict:
    """One prune (Net-Trim variant ``source``, or a rival at ``counts``), tested before and
    after one masked epoch; run in its own process (see the module doc)."""
    torch.set_num_threads(2)
    model, xs, val, train, test = network(net, seed)
    base, cpu0 = peak_memory_mb(), time.process_time()  # CPU time, all threads
    t0 = time.perf_counter()
    if method == "shrink":
        found = shrink(model, xs, val, MAX_DROP, NetTrim(), run=QUIET)
        if found.report is None:  # no trial within the budget: nothing pruned to compare at
            raise NettrimError(f"{net} seed {seed}: shrink found no model within the budget")
        pruned, report, extra = found.model, found.report, dict(
            status=str(found.status), epsilon=None if found.chosen is None else found.chosen.knob,
            trials=[dict(epsilon=t.knob, kept=t.kept, drop=t.drop) for t in found.search])
    else:
        res = prune(model, xs, NetTrim(epsilon=float(source.split()[-1])) if method == "nettrim" else method,
                    counts=counts, run=QUIET)
        pruned, report, extra = res.model, res.report, {}
    seconds, cpu, peak = time.perf_counter() - t0, time.process_time() - cpu0, peak_memory_mb()
    row = dict(net=net, seed=seed, method=method, source=source, seconds=seconds, cpu_seconds=cpu,
               peak_memory_mb=peak, base_memory_mb=base, kept=1 - report.sparsity,
               layer_nonzeros={r.name: r.nnz_after for r in report.layers},
               certified=sum(r.certified for r in report.layers), layers=len(report.layers),
               dense_test=evaluate(model, *test), test=evaluate(pruned, *test), **extra)
    finetune(pruned, *train, epochs=1, lr=FINETUNE_LR, seed=seed, progress=False)
    row["finetuned_test"] = evaluate(pruned, *test)
    return row


def _in_subprocess(spec: dict) -> dict:
    return child_result(start_child(__file__, json.dumps(spec)),
                        f"row {spec['net']} seed {spec['seed']} {spec['method']} ({spec['source']})")


def rows_for(net: str, seed: int, done: dict):
    """The Net-Trim rows of (net, seed), each followed by its rivals at its counts."""
    for source in SOURCES:
        method = "shrink" if source.startswith("shrink") else "nettrim"
        key = (net, seed, method, source)
        if key not in done:
            done[key] = _in_subprocess(dict(net=net, seed=seed, method=method, source=source,
                                            counts=None))
            yield done[key]
        counts = done[key]["layer_nonzeros"]
        for rival in RIVALS:
            if (net, seed, rival, source) not in done:
                done[(net, seed, rival, source)] = _in_subprocess(
                    dict(net=net, seed=seed, method=rival, source=source, counts=counts))
                yield done[(net, seed, rival, source)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--child", help=argparse.SUPPRESS)  # internal: one prune, JSON to stdout
    args = ap.parse_args()
    if args.child:
        print(json.dumps(prune_row(**json.loads(args.child))))
        return
    nets = [n for n in args.nets.split(",") if n]
    unknown = sorted(set(nets) - set(NETS))
    if unknown:
        raise SystemExit(f"error: unknown network {', '.join(unknown)}; known: {', '.join(NETS)}")
    torch.set_num_threads(2)
    rows = earlier(args.out).get("rows", [])
    done = {(r["net"], r["seed"], r["method"], r["source"]): r for r in rows}
    for net in nets:
        for seed in [int(s) for s in args.seeds.split(",")]:
            zoo.get_model(**NETS[net], seed=seed, validation=VALIDATION, progress=False)
            for r in rows_for(net, seed, done):
                rows.append(r)
                print(f"{net} seed {seed} {r['method']:<9} @ {r['source']:<18} kept "
                      f"{100 * r['kept']:6.2f} %  test {r['test']:.2f} (dense {r['dense_test']:.2f}), "
                      f"finetuned {r['finetuned_test']:.2f}  {r['seconds']:.0f} s  "
                      f"{r['peak_memory_mb']:.0f} MB", flush=True)
                write_json_atomic(args.out, {"machine": machine(), "core": CORE, "nets": NETS,
                                             "validation": VALIDATION, "samples": SAMPLES,
                                             "max_drop": MAX_DROP, "finetune_lr": FINETUNE_LR,
                                             "method": NetTrim().record(), "rows": rows})
    print(table({"rows": rows}))


def _ms(values: list[float], n: int, scale: float = 1.0, unit: str = "") -> str:
    """mean ± half-range, with the seed count when it is not the row's ``n``."""
    s = (f"{scale * statistics.fmean(values):.2f}{unit} ± "
         f"{scale * (max(values) - min(values)) / 2:.2f}{unit}")
    return s if len(values) == n else f"{s} ({len(values)} seed{'s' * (len(values) > 1)})"


def table(data: dict) -> str:
    """Per network and Net-Trim run: seeds, weights kept, then for Net-Trim and each rival at
    the same counts the test drop in points (dense minus pruned) before and after one masked
    epoch; Net-Trim's prune time (wall / CPU) and peak memory. Mean ± half-range over seeds."""
    rows = data["rows"]
    out = ["| network | Net-Trim run | seeds | weights kept | test drop: Net-Trim | threshold | L-OBS | "
           "after one masked epoch: Net-Trim | threshold | L-OBS | prune time: wall / CPU | peak memory |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for net in dict.fromkeys(r["net"] for r in rows):
        for source in SOURCES:
            mine = [[r for r in rows if (r["net"], r["source"]) == (net, source) and r["method"] in m]
                    for m in (("nettrim", "shrink"), ("threshold",), ("lobs",))]
            own, n = mine[0], len(mine[0])
            if not own:
                continue
            drops = [_ms([r["dense_test"] - r["test"] for r in rs], n) if rs else "-" for rs in mine]
            tuned = [_ms([r["dense_test"] - r["finetuned_test"] for r in rs], n) if rs else "-"
                     for rs in mine]
            out.append(f"| {net} | {source} | {n} | {_ms([r['kept'] for r in own], n, 100, ' %')} | "
                       + " | ".join(drops + tuned)
                       + f" | {statistics.fmean(r['seconds'] for r in own):.0f} s / "
                         f"{statistics.fmean(r['cpu_seconds'] for r in own):.0f} CPU-s | "
                         f"{statistics.fmean(r['peak_memory_mb'] for r in own) / 1024:.2f} GiB |")
    return "\n".join(out)


if __name__ == "__main__":
    run(main)
