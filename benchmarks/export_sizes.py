"""Benchmark: how small a pruned model ships, and whether it comes back exactly.

For LeNet-300-100, LeNet-5 and the authors' LeNet demo network, each trained briefly on MNIST
(cached under ``--cache``), pruned by magnitude thresholding to ``--sparsity`` per layer and
fine-tuned one epoch with its zeros kept (sizes depend on the sparsity, not on the accuracy),
measures: the state dict saved by
``torch.save``, the dense safetensors file and the sparse file (``nettrim.export``), their
ratios, the exactness of the sparse round trip (``torch.equal`` on every state-dict tensor),
the ONNX export's largest difference from PyTorch on 256 test images, and what the positions
of the non-zeros would cost under other codings (bits per state-dict entry).

The committed benchmarks/results/export_sizes.json predates the current core: its pruned
models were thresholded by the earlier ``nettrim.prune`` (``nettrim.pruners``); a run of this
script prunes with the current ``nettrim.prune``.

Writes benchmarks/results/export_sizes.json and the generated tables of docs/export.md. Run:
`.venv/bin/python benchmarks/export_sizes.py`
"""
from __future__ import annotations

import argparse
import io
import math
import tempfile
from pathlib import Path

import torch

import tables
from common import machine, run
from nettrim import RunOptions, prune
from nettrim.data import load_dataset
from nettrim.export import codec, export, load
from nettrim.models import (build_model, count_nonzero, evaluate, finetune, load_checkpoint,
                            save_checkpoint, train)
from nettrim.report import write_json_atomic

EPOCHS = {"lenet-300-100": 3, "lenet5": 2, "lenet-demo": 1}



OUT = Path(__file__).parent / "results" / "export_sizes.json"

def trained(arch: str, epochs: int, cache: Path, data) -> torch.nn.Module:
    """``arch`` trained ``epochs`` epochs on MNIST (seed 0), cached as a checkpoint."""
    path = cache / f"{arch}-mnist-{epochs}ep.pt"
    if path.is_file():
        return load_checkpoint(path)[0]
    x, y = data
    torch.manual_seed(0)
    model = build_model(arch)
    train(model, x, y, epochs=epochs, seed=0, progress=False)
    save_checkpoint(path, model, arch, {}, {"dataset": "mnist", "epochs": epochs})
    return model.eval()


def pruned(model, data, sparsity: float, cache: Path, arch: str, epochs: int) -> torch.nn.Module:
    """Magnitude thresholding of every layer to ``sparsity`` zeros (weights and biases), then
    one epoch of masked fine-tuning (the zeros stay), cached as a checkpoint."""
    path = cache / f"{arch}-mnist-{epochs}ep-threshold{sparsity:g}-ft1.pt"
    if path.is_file():
        return load_checkpoint(path)[0]
    x, y = data
    model = prune(model, x[:1000], "threshold", sparsity=sparsity, run=RunOptions(progress=False)).model
    finetune(model, x, y, epochs=1, lr=1e-3, seed=0, progress=False)
    save_checkpoint(path, model, arch, {}, {"dataset": "mnist", "pruned": "threshold",
                                            "sparsity": sparsity, "finetune_epochs": 1})
    return model.eval()


def prepare(arch: str, sparsity: float, cache: Path, epochs: int | None = None):
    """``(dense, pruned)`` models of ``arch``, the pruned one at ``sparsity``."""
    data = load_dataset("mnist", "train")
    epochs = epochs or EPOCHS[arch]
    dense = trained(arch, epochs, cache, data)
    return dense, pruned(dense, data, sparsity, cache, arch, epochs)


def _entropy_bits(n: int, u: int) -> float:
    p = n / u
    return 0.0 if p in (0.0, 1.0) else -u * (p * math.log2(p) + (1 - p) * math.log2(1 - p))


def position_bits(t: torch.Tensor) -> dict[str, float]:
    """Bits that the positions of ``t``'s non-zeros take under each coding."""
    flat = t.reshape(-1)
    pos = (flat != 0).nonzero().squeeze(1).numpy()
    n, u = pos.size, flat.numel()
    gaps = codec.gaps_of(pos)
    rows = t.shape[0] if t.ndim > 1 else 1
    low = max(0, int(math.floor(math.log2(u / n)))) if n else 0
    return {"entropy bound": _entropy_bits(n, u),
            "Golomb-Rice gaps (used)": 8.0 * codec.code_bytes(gaps, codec.best_k(gaps)),
            "Elias-Fano": float(n * low + n + (u >> low)) if n else 0.0,
            "uint8 gaps + escape": 8.0 * float((gaps // 255 + 1).sum()),
            "bitmask": float(u),
            "CSR int32": 32.0 * (n + rows + 1)}


def position_costs(model) -> dict[str, float]:
    """Bits per state-dict entry of each position coding, over the whole state dict."""
    state = model.state_dict()
    totals: dict[str, float] = {}
    for t in state.values():
        for k, v in position_bits(t).items():
            totals[k] = totals.get(k, 0.0) + v
    entries = sum(t.numel() for t in state.values())
    return {k: v / entries for k, v in totals.items()}


def torch_save_bytes(model) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k])
                                        for k in sa)


def measure(arch: str, sparsity: float, cache: Path, test) -> dict:
    dense, model = prepare(arch, sparsity, cache)
    xt, yt = test
    with tempfile.TemporaryDirectory() as tmp:
        files = {f: export(model, Path(tmp) / f"m.{f}", f, sample=xt[:256])
                 for f in ("dense", "sparse", "onnx")}
        exact = same_state(model, load(files["sparse"].path))
    b = {"torch_save": torch_save_bytes(model), "dense_safetensors": files["dense"].bytes,
         "sparse": files["sparse"].bytes, "onnx": files["onnx"].bytes}
    nz, state = count_nonzero(model), model.state_dict()
    zeros = sum(int((t == 0).sum()) for t in state.values())
    return {"arch": arch, "arch_kwargs": files["sparse"].arch_kwargs, "epochs": EPOCHS[arch],
            "sparsity_target": sparsity, "removed": 1.0 - nz["density"],
            "weights_and_biases": nz["total"], "nonzero": nz["nonzero"],
            "state_dict_entries": sum(t.numel() for t in state.values()),
            "state_dict_zero_fraction": zeros / sum(t.numel() for t in state.values()),
            "accuracy_dense": evaluate(dense, xt, yt), "accuracy_pruned": evaluate(model, xt, yt),
            "bytes": b, "ratio_torch_save": b["torch_save"] / b["sparse"],
            "ratio_dense_safetensors": b["dense_safetensors"] / b["sparse"],
            "round_trip_exact": exact, "onnx_max_abs_diff": files["onnx"].onnx_max_abs_diff,
            "position_bits_per_entry": position_costs(model)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.95)
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    test = load_dataset("mnist", "test")
    rows = []
    for arch in EPOCHS:
        rows.append(measure(arch, args.sparsity, args.cache, test))
        r = rows[-1]
        print(f"{arch}: {100 * r['removed']:.2f} % removed, sparse {r['bytes']['sparse']} B, "
              f"{r['ratio_torch_save']:.1f}x smaller than torch.save, exact {r['round_trip_exact']}")
    write_json_atomic(args.out, {"machine": machine(), "sparsity_target": args.sparsity,
                                 "models": rows})
    if args.out.resolve() == OUT.resolve():
        print(f"wrote {args.out}, updated {', '.join(map(str, tables.update()))}")


if __name__ == "__main__":
    run(main)
