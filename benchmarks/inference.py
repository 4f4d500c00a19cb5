"""Benchmark: CPU inference of a pruned model, dense zeros against sparse kernels.

For the models of benchmarks/export_sizes.py (trained briefly on MNIST, thresholded to
``--sparsity`` and fine-tuned one epoch, cached under ``--cache``), measures the median
latency at batch 1 and at batch 256 (after warm-up runs, ``--threads`` torch and onnxruntime
threads) and the MNIST test accuracy of:

* the dense original;
* the pruned model as it is: dense tensors holding zeros;
* the pruned model with its fully connected weights as ``torch.sparse_csr`` matrices
  (``nettrim.export.to_sparse_csr``; convolutions stay dense);
* the pruned model exported to ONNX and run by onnxruntime.

``measure_model(label, variant, model, ...)`` measures any other model the same way.

Structured pruning (benchmarks/structured.py, run it first): for LeNet-300-100 and LeNet-5 as
trained there (15 and 8 epochs, 5,000 training images held out), the dense original, the
smaller network of structured Net-Trim and magnitude unit pruning at the same widths, timed in
turns (``--rounds`` rounds, each variant's median over its share of the runs, then the median
of the rounds), so that a change of machine load hits every variant alike.

Writes benchmarks/results/inference.json and the generated table of docs/export.md. Run:
`.venv/bin/python benchmarks/inference.py`
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

import tables
from common import machine, run
from export_sizes import EPOCHS, prepare
from nettrim.data import load_dataset
from nettrim.export import export, to_sparse_csr
from nettrim.export.onnx import session
from nettrim.models import load_checkpoint
from nettrim.report import write_json_atomic

Predict = Callable[[torch.Tensor], torch.Tensor]



OUT = Path(__file__).parent / "results" / "inference.json"
STRUCTURED = Path(__file__).parent / "results" / "structured.json"

def median_seconds(fn: Predict, x: torch.Tensor, runs: int, warmup: int) -> float:
    """Median wall time of ``fn(x)`` over ``runs`` calls, after ``warmup`` calls."""
    return statistics.median(wall_times(fn, x, runs, warmup))


def wall_times(fn: Predict, x: torch.Tensor, runs: int, warmup: int) -> list[float]:
    """Wall times of ``runs`` calls of ``fn(x)``, after ``warmup`` calls."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return times


def accuracy(fn: Predict, xt: torch.Tensor, yt: torch.Tensor, batch: int = 1000) -> float:
    correct = sum(int((fn(xt[i:i + batch]).argmax(1) == yt[i:i + batch]).sum())
                  for i in range(0, len(xt), batch))
    return 100.0 * correct / len(xt)


def measure(label: str, variant: str, fn: Predict, test, runs: tuple[int, int]) -> dict:
    """One row: median latency at batch 1 (µs) and 256 (ms), and test accuracy."""
    xt, yt = test
    return {"model": label, "variant": variant,
            "batch_1_us": 1e6 * median_seconds(fn, xt[:1], runs[0], max(10, runs[0] // 10)),
            "batch_256_ms": 1e3 * median_seconds(fn, xt[:256], runs[1], max(3, runs[1] // 10)),
            "accuracy": accuracy(fn, xt, yt), "runs": list(runs)}


def torch_predict(model: torch.nn.Module) -> Predict:
    model = model.eval()

    def fn(x):
        with torch.inference_mode():
            return model(x)
    return fn


def onnx_predict(model: torch.nn.Module, tmp: Path, threads: int, sample) -> Predict:
    path = export(model, tmp / "model.onnx", "onnx", sample=sample).path
    sess = session(path, threads)
    return lambda x: torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])


def measure_model(label: str, variant: str, model: torch.nn.Module, test, runs) -> dict:
    """Measure a PyTorch model (e.g. a structured, smaller dense one) like the others."""
    return measure(label, variant, torch_predict(model), test, runs)


def measure_in_turns(label: str, variants: dict, test, runs: tuple[int, int], rounds: int) -> list[dict]:
    """``measure`` for several models at once, timed in turns: ``rounds`` rounds, in each every
    variant timed for runs / rounds calls, then each variant's median over the rounds of the
    rounds' medians, and the fastest call of all (``*_min``: the time of a call nothing else
    interrupted, the steadier figure on a loaded machine)."""
    xt, yt = test
    fns = {v: torch_predict(m) for v, m in variants.items()}
    times = {v: {1: [], 256: []} for v in variants}
    for _ in range(rounds):
        for v, fn in fns.items():
            for batch, n in ((1, runs[0]), (256, runs[1])):
                per = max(1, n // rounds)
                times[v][batch].append(wall_times(fn, xt[:batch], per, max(3, per // 10)))
    med = lambda ts: statistics.median(statistics.median(t) for t in ts)
    low = lambda ts: min(min(t) for t in ts)
    return [{"model": label, "variant": v, "group": "structured",
             "batch_1_us": 1e6 * med(times[v][1]), "batch_256_ms": 1e3 * med(times[v][256]),
             "batch_1_us_min": 1e6 * low(times[v][1]), "batch_256_ms_min": 1e3 * low(times[v][256]),
             "accuracy": accuracy(fn, xt, yt), "runs": list(runs), "rounds": rounds}
            for v, fn in fns.items()]


def structured_rows(args, test) -> list[dict]:
    """The dense original and the smaller models of benchmarks/structured.py, in turns."""
    if not STRUCTURED.is_file():
        raise SystemExit(f"error: {STRUCTURED} is missing: run benchmarks/structured.py first")
    rows = []
    for m in json.loads(STRUCTURED.read_text())["models"]:
        c = m["chosen"]
        if c is None:
            continue
        widths = "-".join(map(str, c["widths"]))
        variants = {"dense original": load_checkpoint(m["model_path"])[0],
                    f"structured Net-Trim {widths}": load_checkpoint(c["checkpoints"]["structured"])[0],
                    f"magnitude units {widths}": load_checkpoint(c["checkpoints"]["magnitude"])[0]}
        label = f"{m['arch']} ({m['recipe']['epochs']} epochs)"
        rows += measure_in_turns(label, variants, test, (args.runs_1, args.runs_256), args.rounds)
    for r in rows:
        print(f"{r['model']:24s} {r['variant']:40s} {r['batch_1_us']:9.0f} µs {r['batch_256_ms']:9.2f} ms "
              f"{r['accuracy']:6.2f} %")
    return rows


def rows_for(arch: str, args, test) -> list[dict]:
    dense, pruned = prepare(arch, args.sparsity, args.cache)
    runs = (args.runs_1, args.runs_256)
    rows = [measure_model(arch, "dense original", dense, test, runs),
            measure_model(arch, "pruned, dense zeros", pruned, test, runs),
            measure_model(arch, "pruned, sparse CSR (Linear)", to_sparse_csr(pruned), test, runs)]
    with tempfile.TemporaryDirectory() as tmp:
        fn = onnx_predict(pruned, Path(tmp), args.threads, test[0][:256])
        rows.append(measure(arch, "pruned, onnxruntime", fn, test, runs))
    for r in rows:
        print(f"{arch:14s} {r['variant']:28s} {r['batch_1_us']:9.0f} µs {r['batch_256_ms']:9.2f} ms "
              f"{r['accuracy']:6.2f} %")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.95)
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    ap.add_argument("--runs-1", type=int, default=500, help="timed runs at batch 1")
    ap.add_argument("--runs-256", type=int, default=40, help="timed runs at batch 256")
    ap.add_argument("--rounds", type=int, default=5, help="turns of the structured rows")
    ap.add_argument("--structured-only", action="store_true",
                    help="measure the structured rows again, keep the others of --out as they are")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    test = load_dataset("mnist", "test")
    if args.structured_only:
        if not args.out.is_file():
            raise SystemExit(f"error: --structured-only keeps the other rows of {args.out}, which is missing")
        data = json.loads(args.out.read_text())
        rows = [r for r in data["rows"] if r.get("group") != "structured"] + structured_rows(args, test)
        data.update(rows=rows, structured_machine=dict(machine(), threads=args.threads,
                                                       load_average=list(os.getloadavg())))
        write_json_atomic(args.out, data)
    else:
        rows = [r for arch in EPOCHS for r in rows_for(arch, args, test)] + structured_rows(args, test)
        write_json_atomic(args.out, {"machine": dict(machine(), threads=args.threads),
                                     "sparsity_target": args.sparsity, "rows": rows})
    if args.out.resolve() == OUT.resolve():
        print(f"wrote {args.out}, updated {', '.join(map(str, tables.update()))}")


if __name__ == "__main__":
    run(main)
