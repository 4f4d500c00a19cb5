"""The jobs behind the CLI: train, prune, evaluate, demo. Plain functions, no argument parsing."""
from __future__ import annotations

import copy
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import DATASETS, load_dataset, subset
from ..errors import NettrimError, require
from ..layer import ADMMSettings
from ..models import build_model, count_nonzero, evaluate, finetune, load_checkpoint, save_checkpoint, train
from ..pruners import prune
from ..report import layer_table, write_json_atomic
from ..report.plots import plot_nonzeros


@dataclass(frozen=True)
class Recipe:
    """How a reference model is trained (chosen by measurement, see README)."""

    epochs: int = 15
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float | None = 0.2
    schedule: str = "cosine"


RECIPES = {"lenet-300-100": Recipe(), "mlp-100-100": Recipe(), "mlp-60-60": Recipe(dropout=None),
           "mlp-300-300-300": Recipe(), "mlp-deep": Recipe(),
           "lenet5": Recipe(epochs=8, dropout=None), "lenet-demo": Recipe(epochs=6, dropout=0.5),
           "cifar-cnn": Recipe(epochs=20, dropout=None)}


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def recipe_kwargs(arch: str, dataset: str) -> dict:
    """The architecture keywords a reference model is trained (and saved) with."""
    recipe, info = RECIPES.get(arch, Recipe()), DATASETS[dataset]
    kwargs = {"in_shape": list(info.shape), "n_classes": info.n_classes}
    if recipe.dropout is not None:
        kwargs["dropout"] = recipe.dropout
    return kwargs


def train_model(arch: str, dataset: str, out: Path, *, data_dir=None, epochs=None, seed=0,
                progress=True, log=print) -> tuple[torch.nn.Module, dict]:
    """Train a reference model with its recipe and save a plain checkpoint at ``out``."""
    recipe = RECIPES.get(arch, Recipe())
    kwargs = recipe_kwargs(arch, dataset)
    torch.manual_seed(seed)  # the initial weights too: the same seed gives the same model
    model = build_model(arch, **kwargs)
    x, y = load_dataset(dataset, "train", data_dir)
    xt, yt = load_dataset(dataset, "test", data_dir)
    n_epochs = recipe.epochs if epochs is None else epochs
    log(f"training {arch} on {dataset}: {n_epochs} epochs, seed {seed}")
    hist = train(model, x, y, epochs=n_epochs, lr=recipe.lr, weight_decay=recipe.weight_decay,
                 schedule=recipe.schedule, seed=seed, progress=progress)
    acc = evaluate(model, xt, yt)
    meta = {"dataset": dataset, "test_accuracy": acc, "epochs": n_epochs, "seed": seed,
            "train_seconds": hist.total_seconds}
    save_checkpoint(out, model, arch, kwargs, meta)
    log(f"test accuracy {acc:.2f} %  ({hist.total_seconds:.0f} s) -> {out}")
    return model, meta


def prune_model(model, dataset: str, *, data_dir=None, samples=2000, seed=0, finetune_epochs=0,
                finetune_lr=1e-3, progress=True, log=print, **prune_kwargs) -> dict:
    """Prune ``model`` on ``samples`` training images, evaluate before/after (and after masked
    fine-tuning when asked). Returns {"result": PruneResult, "summary": dict}."""
    x, y = load_dataset(dataset, "train", data_dir)
    xt, yt = load_dataset(dataset, "test", data_dir)
    xs, _ = subset(x, y, min(samples, len(x)), seed=seed)
    acc_before = evaluate(model, xt, yt)
    t0 = time.perf_counter()
    result = prune(model, xs, progress=progress, **prune_kwargs)
    prune_seconds = time.perf_counter() - t0
    acc_after = evaluate(result.model, xt, yt)
    summary = {"dataset": dataset, "samples": int(xs.shape[0]), "test_accuracy_before": acc_before,
               "test_accuracy_after": acc_after, "prune_seconds": prune_seconds,
               "report": result.report.to_dict()}
    out = {"result": result, "summary": summary}
    if finetune_epochs:
        tuned = out["finetuned"] = copy.deepcopy(result.model)
        hist = finetune(tuned, x, y, epochs=finetune_epochs, lr=finetune_lr, seed=seed, progress=progress)
        summary["finetune"] = {"epochs": finetune_epochs, "lr": finetune_lr,
                               "seconds": hist.total_seconds,
                               "test_accuracy": evaluate(tuned, xt, yt),
                               "nonzero_after": count_nonzero(tuned)["nonzero"]}
    summary["peak_memory_mb"] = peak_memory_mb()
    return out


def print_summary(summary: dict, result, log=print) -> None:
    log(layer_table(result.report))
    rep = result.report
    log(f"output discrepancy on the pruning samples: {rep.output_error / rep.output_norm:.4f} (relative)"
        + (f", bound {rep.bound / rep.output_norm:.4f}" if rep.bound is not None else ""))
    log(f"test accuracy: {summary['test_accuracy_before']:.2f} % -> {summary['test_accuracy_after']:.2f} % "
        f"with {100 * rep.sparsity:.2f} % of weights and biases removed "
        f"({rep.total / max(rep.nnz_after, 1):.1f}x smaller)")
    if "finetune" in summary:
        ft = summary["finetune"]
        log(f"after {ft['epochs']} epoch(s) of masked fine-tuning: {ft['test_accuracy']:.2f} % "
            f"({ft['seconds']:.1f} s)")
    log(f"pruning time {summary['prune_seconds']:.1f} s, peak memory {summary['peak_memory_mb']:.0f} MB")


def write_outputs(out: dict, out_dir: Path, stem: str, source: Path | None = None,
                  arch: str | None = None, arch_kwargs: dict | None = None) -> dict:
    """Pruned checkpoint(s) (never over the source), JSON report and PNG, each written atomically."""
    summary, result = out["summary"], out["result"]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report": out_dir / f"{stem}.json", "plot": out_dir / f"{stem}.png"}
    if arch is not None:
        models = {"checkpoint": (result.model, summary["test_accuracy_after"], "")}
        if "finetuned" in out:
            models["finetuned_checkpoint"] = (out["finetuned"], summary["finetune"]["test_accuracy"],
                                              "-finetuned")
        for key, (model, acc, suffix) in models.items():
            ckpt = out_dir / f"{stem}{suffix}.pt"
            require(source is None or ckpt.resolve() != source.resolve(),
                    f"refusing to overwrite the input checkpoint {source}: choose another --out")
            save_checkpoint(ckpt, model, arch, arch_kwargs, {"pruned": True, "test_accuracy": acc})
            paths[key] = ckpt
    plot_nonzeros(result.report, paths["plot"])
    summary = dict(summary, outputs={k: str(v) for k, v in paths.items()})
    write_json_atomic(paths["report"], summary)
    return paths


def load_or_train(path: Path, arch: str, dataset: str, *, progress=True, log=print, epochs=None,
                  data_dir=None):
    """Reuse the cached checkpoint at ``path`` when it loads, else train one there."""
    if path.exists():
        try:
            model, info = load_checkpoint(path)
            if info["arch"] == arch:
                log(f"reusing {path} ({info['meta'].get('test_accuracy', float('nan')):.2f} % test accuracy)")
                return model, info
        except NettrimError as exc:
            log(f"cached checkpoint unusable ({exc}); training a new one")
    model, meta = train_model(arch, dataset, path, progress=progress, log=log, epochs=epochs,
                              data_dir=data_dir)
    return model, {"arch": arch, "arch_kwargs": recipe_kwargs(arch, dataset), "meta": meta}


DEMO = dict(arch="lenet-300-100", dataset="mnist", epsilon=0.1, gamma=1.1, reweight=2, samples=2000)


def demo(out_dir: Path, *, epsilon=None, samples=None, finetune_epochs=1, progress=True, log=print) -> dict:
    """The main job: train (or reuse) LeNet-300-100 on MNIST, prune it with Net-Trim cascade,
    print the table, write report JSON + PNG + pruned checkpoint under ``out_dir``."""
    out_dir = Path(out_dir)
    model, info = load_or_train(out_dir / "lenet-300-100.pt", DEMO["arch"], DEMO["dataset"],
                                progress=progress, log=log)
    out = prune_model(model, DEMO["dataset"], samples=samples or DEMO["samples"],
                      finetune_epochs=finetune_epochs, progress=progress, log=log,
                      method="nettrim", mode="cascade", epsilon=epsilon or DEMO["epsilon"],
                      gamma=DEMO["gamma"], reweight=DEMO["reweight"])
    result, summary = out["result"], out["summary"]
    print_summary(summary, result, log)
    paths = write_outputs(out, out_dir, "lenet-300-100-nettrim", None, DEMO["arch"],
                          info.get("arch_kwargs"))
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return summary
