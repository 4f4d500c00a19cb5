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

``measure_model(label, variant, model, ...)`` measures any other model the same way (a
structured, smaller dense model: one more call in ``rows_for``).

Writes benchmarks/results/inference.json and the generated table of docs/export.md. Run:
`.venv/bin/python benchmarks/inference.py`
"""
from __future__ import annotations

import argparse
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
from nettrim.report import write_json_atomic

Predict = Callable[[torch.Tensor], torch.Tensor]



OUT = Path(__file__).parent / "results" / "inference.json"

def median_seconds(fn: Predict, x: torch.Tensor, runs: int, warmup: int) -> float:
    """Median wall time of ``fn(x)`` over ``runs`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    test = load_dataset("mnist", "test")
    rows = [r for arch in EPOCHS for r in rows_for(arch, args, test)]
    write_json_atomic(args.out, {"machine": dict(machine(), threads=args.threads),
                                 "sparsity_target": args.sparsity, "rows": rows})
    if args.out.resolve() == OUT.resolve():
        print(f"wrote {args.out}, updated {', '.join(map(str, tables.update()))}")


if __name__ == "__main__":
    run(main)
