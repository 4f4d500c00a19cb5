"""Benchmark: structured Net-Trim (whole units removed) against magnitude unit pruning.

For LeNet-300-100 (15 epochs, dropout 0.2) and LeNet-5 (8 epochs) trained on MNIST with 5,000
training images held out (``nettrim.experiments.zoo``, cached under runs/cache):

1. calibration: 2,000 images drawn (seed 0) from the other 55,000 training images;
2. ``NetTrim(structure="units")`` in cascade at every tolerance of ``GRID[arch]`` (a relative
   eps per layer: ``epsilon`` for the first, ``layer_epsilon`` floors for the others); each
   run's widths, multiply-adds per image, validation accuracy, certificates and seconds;
3. the choice, on the validation images only: the run with the fewest multiply-adds whose
   validation accuracy is within ``BUDGET`` points of the dense model's;
4. for that run: magnitude unit pruning at the same widths (each hidden layer keeps the units
   with the largest L2 norm of their outgoing weights, ``structured.magnitude_units``; also
   with the norm of their incoming weights, the other common choice), the
   test accuracy of the dense, structured and magnitude models, once, and again after one
   epoch of masked fine-tuning of each (``nettrim.models.finetune``, Adam, lr 1e-3, the
   55,000 training images);
5. the smaller models saved as checkpoints (``save_checkpoint`` records their widths) under
   ``--cache``/structured, read back by ``load_checkpoint`` and checked equal; the latency
   benchmark (benchmarks/inference.py) times them.

The removal of unread units (the surgery that makes the network smaller, and the widths the
report records) is not on the current core yet: ``nettrim.prune`` with
``NetTrim(structure="units")`` zeroes groups but keeps every unit. This script therefore runs
the earlier prune, ``nettrim.pruners.prune`` with ``nettrim.pruners.NetTrim``, as the
committed benchmarks/results/structured.json was made.

Writes benchmarks/results/structured.json and the generated tables of docs/structured.md.
Run: `.venv/bin/python benchmarks/structured.py` (about 10 minutes on one core).
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch import nn

from common import machine, run
from nettrim import pruners  # the earlier prune: structured surgery (module docstring)
from nettrim.capture import trace_layers
from nettrim.data import load_dataset, subset, validation_split
from nettrim.experiments.zoo import get_model
from nettrim.models import evaluate, finetune, load_checkpoint, save_checkpoint
from nettrim.pruners.structured import magnitude_units
from nettrim.report import write_json_atomic

OUT = Path(__file__).parent / "results" / "structured.json"
RECIPES = {"lenet-300-100": dict(epochs=15, dropout=0.2), "lenet5": dict(epochs=8, dropout=0.0)}
VALIDATION, SAMPLES, BUDGET, FT_LR = 5000, 2000, 0.8, 1e-3
# relative eps per layer, in layer order: the first layer's eps, then the floors of the others
GRID = {
    "lenet-300-100": [(0.02, e, 0.02) for e in (0.15, 0.2, 0.25, 0.3, 0.35, 0.4)],
    "lenet5": [(0.02, e, 0.1, 0.02, 0.02) for e in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)],
}


def macs(model: nn.Module, shape=(1, 28, 28)) -> int:
    """Multiply-adds of one forward pass of one input through the Linear and Conv2d layers."""
    total = 0

    def hook(m, args, out):
        nonlocal total
        total += out[0].numel() * (m.in_features if isinstance(m, nn.Linear)
                                   else m.in_channels * m.kernel_size[0] * m.kernel_size[1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


def data():
    """(calibration inputs, training part (x, y), validation (x, y), test (x, y))."""
    x, y = load_dataset("mnist", "train")
    keep, held = validation_split(len(x), VALIDATION)
    xs, _ = subset(x[keep], y[keep], SAMPLES, seed=0)
    return xs, (x[keep], y[keep]), (x[held], y[held]), load_dataset("mnist", "test")


def method(names: list[str], eps: tuple) -> pruners.NetTrim:
    """The options of the committed run, pinned (two reweighting rounds, values refit, the
    papers' slack V: margin None), whatever NetTrim's defaults become."""
    return pruners.NetTrim(structure="units", epsilon=eps[0], layer_epsilon=dict(zip(names[1:], eps[1:])),
                           reweight=2, refit=True, margin=None)


def tuned(model: nn.Module, train) -> nn.Module:
    model = copy.deepcopy(model)
    finetune(model, *train, epochs=1, lr=FT_LR, seed=0, progress=False)
    return model.eval()


def saved(model: nn.Module, arch: str, kwargs: dict, path: Path, meta: dict) -> str:
    """Save, read back, check equal; returns the path."""
    save_checkpoint(path, model, arch, kwargs, meta)
    back, _ = load_checkpoint(path)
    probe = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(back(probe), model.eval()(probe)), path
    return str(path)


def bench(arch: str, cache: Path, sets) -> dict:
    xs, train, val, test = sets
    recipe = RECIPES[arch]
    dense, info = get_model(arch, "mnist", recipe["epochs"], 0, dropout=recipe["dropout"],
                            validation=VALIDATION, progress=False)
    names = [s.name for s in trace_layers(dense, xs[:2])]
    dense_val, dense_macs = evaluate(dense, *val), macs(dense)
    grid = []
    for eps in GRID[arch]:
        t0 = time.perf_counter()
        res = pruners.prune(dense, xs, method=method(names, eps), progress=False)
        seconds = time.perf_counter() - t0
        rep = res.report
        grid.append({"eps": list(eps), "widths": rep.settings["widths"]["after"], "macs": macs(res.model),
                     "validation_accuracy": evaluate(res.model, *val), "seconds": seconds,
                     "certified": [r.certified for r in rep.layers],
                     "output_max_abs_diff": rep.settings["structure"]["output_max_abs_diff"],
                     "model": res.model, "report": rep.to_dict()})
        g = grid[-1]
        print(f"{arch} eps {eps}: widths {g['widths']}, {dense_macs / g['macs']:.2f}x fewer multiply-adds, "
              f"validation {g['validation_accuracy']:.2f} % (dense {dense_val:.2f} %), {seconds:.0f} s", flush=True)
    within = [g for g in grid if g["validation_accuracy"] >= dense_val - BUDGET]
    chosen = min(within, key=lambda g: g["macs"]) if within else None
    out = {"arch": arch, "model_path": info["path"], "recipe": recipe, "names": names,
           "dense": {"widths": grid[0]["report"]["settings"]["widths"]["before"], "macs": dense_macs,
                     "validation_accuracy": dense_val},
           "grid": [{k: v for k, v in g.items() if k not in ("model", "report")} for g in grid],
           "budget_points": BUDGET, "chosen": None}
    if chosen is None:
        return out
    structured = chosen["model"]
    widths = {n: w for n, w in zip(names[:-1], chosen["widths"][1:-1])}
    models = {"structured": structured, "magnitude": magnitude_units(dense, xs[:2], widths).model,
              "magnitude_incoming": magnitude_units(dense, xs[:2], widths, norm="incoming").model}
    shapes = lambda model: [m.weight.shape for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert shapes(models["magnitude"]) == shapes(models["magnitude_incoming"]) == shapes(structured)
    models.update({f"{k}_finetuned": tuned(m, train) for k, m in list(models.items())})
    folder = cache / "structured"
    kwargs = load_checkpoint(info["path"])[1]["arch_kwargs"]
    out["chosen"] = {
        "eps": chosen["eps"], "widths": chosen["widths"], "macs": chosen["macs"],
        "validation_accuracy": chosen["validation_accuracy"], "report": chosen["report"],
        "test_accuracy": {"dense": evaluate(dense, *test), **{k: evaluate(m, *test) for k, m in models.items()}},
        "validation_accuracy_all": {"dense": dense_val, **{k: evaluate(m, *val) for k, m in models.items()}},
        "checkpoints": {k: saved(m, arch, kwargs, folder / f"{arch}-{k}.pt",
                                 {"dataset": "mnist", "source": info["path"], "variant": k,
                                  "eps": chosen["eps"]})
                        for k, m in models.items()},
    }
    t = out["chosen"]["test_accuracy"]
    print(f"{arch}: chosen eps {chosen['eps']}, widths {chosen['widths']}; test dense {t['dense']:.2f}, "
          f"structured {t['structured']:.2f} (+1 epoch {t['structured_finetuned']:.2f}), magnitude "
          f"{t['magnitude']:.2f} (+1 epoch {t['magnitude_finetuned']:.2f}), incoming "
          f"{t['magnitude_incoming']:.2f} (+1 epoch {t['magnitude_incoming_finetuned']:.2f})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--arch", action="append", choices=list(RECIPES), help="default: both")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sets = data()
    results = [bench(arch, args.cache, sets) for arch in args.arch or RECIPES]
    write_json_atomic(args.out, {"machine": machine(), "validation": VALIDATION, "samples": SAMPLES,
                                 "budget_points": BUDGET, "finetune_lr": FT_LR, "models": results})
    if args.out.resolve() == OUT.resolve():
        import tables  # it imports this module for the renderers below

        print(f"wrote {args.out}, updated {', '.join(map(str, tables.update()))}")


# -- tables ---------------------------------------------------------------------------------


def _w(widths) -> str:
    return "-".join(str(w) for w in widths)


def grid_table(data: dict) -> str:
    """Every tolerance tried, with what validation said (the test set is not used here)."""
    rows = ["| model | eps per layer | widths | fewer multiply-adds | validation accuracy | chosen |",
            "|---|---|---|---:|---:|:---:|"]
    for m in data["models"]:
        d = m["dense"]
        rows.append(f"| {m['arch']} | dense | {_w(d['widths'])} | 1.00x | {d['validation_accuracy']:.2f} % | |")
        chosen = (m["chosen"] or {}).get("eps")
        for g in m["grid"]:
            rows.append(f"| {m['arch']} | {', '.join(f'{e:g}' for e in g['eps'])} | {_w(g['widths'])} | "
                        f"{d['macs'] / g['macs']:.2f}x | {g['validation_accuracy']:.2f} % | "
                        f"{'yes' if g['eps'] == chosen else ''} |")
    return "\n".join(rows)


def result_table(data: dict) -> str:
    """The chosen tolerance: test accuracy of each model, without and with one masked epoch."""
    rows = ["| model | widths | multiply-adds | test accuracy | + 1 masked epoch |",
            "|---|---|---:|---:|---:|"]
    for m in data["models"]:
        c = m["chosen"]
        if c is None:
            rows.append(f"| {m['arch']} | no tolerance within the budget | | | |")
            continue
        t = c["test_accuracy"]
        rows.append(f"| {m['arch']} dense | {_w(m['dense']['widths'])} | {m['dense']['macs']:,} | "
                    f"{t['dense']:.2f} % | |")
        for key, label in (("structured", "structured Net-Trim"), ("magnitude", "magnitude units, outgoing L2"),
                           ("magnitude_incoming", "magnitude units, incoming L2")):
            rows.append(f"| {m['arch']} {label} | {_w(c['widths'])} | {c['macs']:,} | {t[key]:.2f} % | "
                        f"{t[key + '_finetuned']:.2f} % |")
    return "\n".join(rows)


def speed_table(data: dict) -> str:
    """benchmarks/inference.py's structured rows: median latency (and the fastest call) at
    batch 1 and 256, and the speed-ups over the dense original by each."""
    rows = ["| model | variant | batch 1 (µs) | batch 256 (ms) | speed-up, batch 1 | speed-up, batch 256 | test accuracy |",
            "|---|---|---:|---:|---:|---:|---:|"]
    group = [r for r in data["rows"] if r.get("group") == "structured"]
    dense = {r["model"]: r for r in group if r["variant"] == "dense original"}
    ratio = lambda r, key: f"{dense[r['model']][key] / r[key]:.2f}x"
    for r in group:
        rows.append(f"| {r['model']} | {r['variant']} | {r['batch_1_us']:,.0f} ({r['batch_1_us_min']:,.0f}) | "
                    f"{r['batch_256_ms']:,.2f} ({r['batch_256_ms_min']:,.2f}) | "
                    f"{ratio(r, 'batch_1_us')} ({ratio(r, 'batch_1_us_min')}) | "
                    f"{ratio(r, 'batch_256_ms')} ({ratio(r, 'batch_256_ms_min')}) | {r['accuracy']:.2f} % |")
    return "\n".join(rows)

if __name__ == "__main__":
    run(main)
