"""The jobs behind the CLI: train, prune, shrink, verify, demo. Plain functions, no parsing."""
from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data import DATASETS, load_dataset, subset, validation_split
from ..data.user import UserData, read_user_data
from ..errors import NettrimError, require
from ..export import export
from ..models import build_model, count_nonzero, evaluate, finetune, load_checkpoint, save_checkpoint, train
from ..models.user import UserModel, file_sha256
from ..api import RunOptions, prune
from ..methods import Method, NetTrim
from ..pruners.resume import run_key
from ..scheme import peak_memory_mb
from ..search import SearchOptions, shrink
from ..report import layer_table, write_json_atomic
from ..report.io import atomic_write
from ..report.plots import plot_nonzeros
from ..status import Status


@dataclass(frozen=True)
class Recipe:
    """How a reference model is trained (chosen by measurement, see docs/results.md)."""

    epochs: int = 15
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float | None = 0.2
    schedule: str = "cosine"


RECIPES = {"lenet-300-100": Recipe(), "mlp-100-100": Recipe(), "mlp-60-60": Recipe(dropout=None),
           "mlp-300-300-300": Recipe(), "mlp-deep": Recipe(),
           "lenet5": Recipe(epochs=8, dropout=None), "lenet-demo": Recipe(epochs=6, dropout=0.5),
           "cifar-cnn": Recipe(epochs=20, dropout=None),
           # measured on Fashion-MNIST, one thread: ~140 s and ~20 s per epoch (docs/any-model.md)
           "resnet20": Recipe(epochs=4, dropout=None), "vit-tiny": Recipe(epochs=10, dropout=None)}
VALIDATION_SIZE = 5000  # training images held out by `nettrim train` and `prune --max-drop`
VALIDATION_SEED = 0


def recipe_kwargs(arch: str, dataset: str) -> dict:
    """The architecture keywords a reference model is trained (and saved) with."""
    recipe, info = RECIPES.get(arch, Recipe()), DATASETS[dataset]
    kwargs = {"in_shape": list(info.shape), "n_classes": info.n_classes}
    if recipe.dropout is not None:
        kwargs["dropout"] = recipe.dropout
    return kwargs


@dataclass(frozen=True)
class Split:
    """One draw of a run's data: ``train`` (inputs, labels) the data minus its validation part
    (what fine-tuning uses), ``validation`` the held-out pair or None, ``inputs`` the
    calibration inputs drawn from ``train``; ``data`` the user's data it came from, if any."""

    train: tuple[torch.Tensor, torch.Tensor]
    validation: tuple[torch.Tensor, torch.Tensor] | None
    inputs: torch.Tensor
    data: UserData | None = None


@dataclass(frozen=True)
class Calibration:
    """Where a CLI run's calibration inputs and validation split come from, so that ``verify``
    can draw them again: ``samples`` inputs drawn (stratified) with ``seed`` from the training
    data minus its validation part (``validation_size`` samples held out with
    ``validation_seed``). ``dataset``: a name of ``nettrim.data.DATASETS`` (its training
    split, from ``data_dir``), or the absolute path of a user's data (``nettrim.data.user``),
    from which both parts are carved; such a file has no test split."""

    dataset: str
    samples: int
    seed: int = 0
    validation_size: int | None = VALIDATION_SIZE
    validation_seed: int = VALIDATION_SEED
    data_dir: str | None = None

    @property
    def user(self) -> bool:
        """Whether the data is a user's file rather than a named dataset."""
        return self.dataset not in DATASETS

    def split(self, data: UserData | None = None) -> Split:
        """The draw; ``data``: the user's data already read from ``dataset`` (else read here)."""
        if self.user:
            data = data if data is not None else read_user_data(self.dataset)
            require(data.path == self.dataset, f"the data read is {data.path}, not {self.dataset}")
            x, y = data.x, data.y
        else:
            x, y = load_dataset(self.dataset, "train", self.data_dir)
        val = None
        if self.validation_size:
            keep, held = validation_split(len(x), self.validation_size, self.validation_seed)
            val = (x[held], y[held])
            x, y = x[keep], y[keep]
        xs, _ = subset(x, y, min(self.samples, len(x)), seed=self.seed)
        return Split((x, y), val, xs, data)

    def draw(self):
        """(calibration inputs, (validation inputs, labels) or None)."""
        split = self.split()
        return split.inputs, split.validation

    def record(self, xs: torch.Tensor, data: UserData | None = None) -> dict:
        """This draw's description and the sha256 of its inputs (with a user's data: its
        path, layout, samples and the sha256 of its files, under "data")."""
        out = dict(asdict(self), samples=int(len(xs)), sha256=tensor_sha256(xs))
        if data is not None:
            out["data"] = data.record()
        return out


def user_validation_size(n: int) -> int:
    """The validation part carved from a user's file of ``n`` samples: a tenth, at most
    ``VALIDATION_SIZE``, at least one."""
    return max(1, min(VALIDATION_SIZE, n // 10))


def tensor_sha256(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def held_out(meta: dict) -> tuple[int | None, int]:
    """The validation split a checkpoint was trained without (``nettrim train``), else the
    default one, which the model may have seen in training."""
    v = meta.get("validation") or {}
    return v.get("size", VALIDATION_SIZE), v.get("seed", VALIDATION_SEED)


def train_model(arch: str, dataset: str, out: Path, *, data_dir=None, epochs=None, seed=0,
                validation_size: int | None = VALIDATION_SIZE, progress=True,
                log=print) -> tuple[torch.nn.Module, dict]:
    """Train a reference model with its recipe on the training split minus ``validation_size``
    held-out images (recorded in the checkpoint), and save a plain checkpoint at ``out``."""
    recipe = RECIPES.get(arch, Recipe())
    kwargs = recipe_kwargs(arch, dataset)
    torch.manual_seed(seed)  # the initial weights too: the same seed gives the same model
    model = build_model(arch, **kwargs)
    x, y = load_dataset(dataset, "train", data_dir)
    xt, yt = load_dataset(dataset, "test", data_dir)
    meta = {"dataset": dataset, "seed": seed}
    if validation_size:
        keep, held = validation_split(len(x), validation_size, VALIDATION_SEED)
        meta["validation"] = {"size": validation_size, "seed": VALIDATION_SEED}
        (x, y), (xv, yv) = (x[keep], y[keep]), (x[held], y[held])
    n_epochs = recipe.epochs if epochs is None else epochs
    log(f"training {arch} on {len(x)} {dataset} images: {n_epochs} epochs, seed {seed}")
    hist = train(model, x, y, epochs=n_epochs, lr=recipe.lr, weight_decay=recipe.weight_decay,
                 schedule=recipe.schedule, seed=seed, progress=progress)
    if validation_size:
        meta["validation_accuracy"] = evaluate(model, xv, yv)
    meta.update(test_accuracy=evaluate(model, xt, yt), epochs=n_epochs,
                train_seconds=hist.total_seconds)
    save_checkpoint(out, model, arch, kwargs, meta)
    log(f"test accuracy {meta['test_accuracy']:.2f} %  ({hist.total_seconds:.0f} s) -> {out}")
    return model, meta


def prune_model(model, calibration: Calibration, *, method: Method = NetTrim(),
                mode: str = "cascade", max_drop: float | None = None, sparsity: float | None = None,
                finetune_epochs=0, finetune_lr=1e-3, run: RunOptions = RunOptions(), log=print,
                store=None, data: UserData | None = None) -> dict:
    """Prune ``model`` on the calibration draw: at the method's tolerance (or ``sparsity``),
    or, with ``max_drop`` (points), the sparsest model within that validation budget
    (``shrink``). The accuracy reported is the test split's for a named dataset (evaluated
    once, for the model returned), the validation part's for a user's data, which has no
    test split (``summary["accuracy_on"]`` says which). Returns {"result", "summary"[,
    "finetuned"]}; with an unreachable budget, {"summary"} alone (status budget_unreachable).

    ``store``: an unopened ``RunStore``; it is opened with this run's key (the arguments and the
    hashes of the model and the data) and keeps every finished layer. ``run``: how the run goes
    (rows, memory, progress, backend). ``data``: the user's data already read, if any."""
    split = calibration.split(data)
    xs, val = split.inputs, split.validation
    t0 = time.perf_counter()
    summary = {"dataset": calibration.dataset, "calibration": calibration.record(xs, split.data)}
    if store is not None:
        store.open(run_key(command="prune", model=model, calibration=summary["calibration"],
                           validation=val if max_drop is not None else None, method=method,
                           mode=mode, max_drop=max_drop, sparsity=sparsity,
                           run=run.replace(progress=True, backend="local").record(),
                           finetune=[finetune_epochs, finetune_lr]))
        run = run.replace(store=store)
    progress = run.progress
    if max_drop is None:
        result = prune(model, xs, method, mode=mode, sparsity=sparsity, run=run)
    else:
        require(val is not None, "--max-drop needs a validation split: --validation-size > 0")
        found = shrink(model, xs, val, max_drop / 100, method, mode=mode, search=SearchOptions(log=log), run=run)
        summary["search"] = found.to_dict()
        summary["search"].pop("report")
        if found.status == Status.BUDGET_UNREACHABLE:
            return {"summary": summary}
        result = found
    summary["prune_seconds"] = time.perf_counter() - t0
    if result.report.resumed:
        log(f"resumed {len(result.report.resumed)} finished layer(s) from {store.root}: "
            f"{', '.join(result.report.resumed)}")
    on = "validation" if calibration.user else "test"
    xe, ye = val if calibration.user else load_dataset(calibration.dataset, "test", calibration.data_dir)
    summary.update(accuracy_on=on, **{f"{on}_accuracy_before": evaluate(model, xe, ye),
                                      f"{on}_accuracy_after": evaluate(result.model, xe, ye)},
                   report=result.report.to_dict())
    out = {"result": result, "summary": summary}
    if finetune_epochs:
        tuned = out["finetuned"] = copy.deepcopy(result.model)
        hist = finetune(tuned, *split.train, epochs=finetune_epochs, lr=finetune_lr, seed=calibration.seed,
                        progress=progress)
        summary["finetune"] = {"epochs": finetune_epochs, "lr": finetune_lr,
                               "seconds": hist.total_seconds,
                               f"{on}_accuracy": evaluate(tuned, xe, ye),
                               "nonzero_after": count_nonzero(tuned)["nonzero"]}
    summary["peak_memory_mb"] = peak_memory_mb()
    return out


def print_summary(summary: dict, result, log=print) -> None:
    log(layer_table(result.report))
    rep = result.report
    change = rep.output_error / rep.output_norm
    if rep.bound is not None:
        log(f"certified: every layer within its tolerance; the network's output moved {change:.4f} <= "
            f"bound {rep.bound / rep.output_norm:.4f} (relative, ||Yhat - Y||_F / ||Y||_F on the "
            "calibration inputs: the bound covers those inputs, not unseen ones)")
    else:
        why = "; ".join(rep.notes) or "no network bound"
        log(f"{why}; the network's output moved {change:.4f} (relative, ||Yhat - Y||_F / ||Y||_F on "
            "the calibration inputs)")
    on = summary.get("accuracy_on", "test")
    log(f"{on} accuracy: {summary[f'{on}_accuracy_before']:.2f} % -> {summary[f'{on}_accuracy_after']:.2f} % "
        f"with {100 * rep.sparsity:.2f} % of the pruned layers' weights and biases removed")
    if on == "validation":
        log("test accuracy: not measured (the data file has no test split): run "
            "`nettrim eval ... --data TEST_PATH` on the pruned weights")
    if "finetune" in summary:
        ft = summary["finetune"]
        log(f"after {ft['epochs']} epoch(s) of masked fine-tuning: {ft[f'{on}_accuracy']:.2f} % {on} accuracy "
            f"({ft['seconds']:.1f} s)")
    for r in rep.layers:
        if r.sampled:
            log(f"layer {r.name} solved and certified on {r.rows:,} of its {r.rows_total:,} rows "
                "(a seeded uniform sample); the certificate holds on those rows")
    log(f"pruning time {summary['prune_seconds']:.1f} s, peak memory {summary['peak_memory_mb']:.0f} MB")


def write_outputs(out: dict, out_dir: Path, stem: str, source: Path | None = None,
                  arch: str | None = None, arch_kwargs: dict | None = None,
                  user: UserModel | None = None) -> dict:
    """Pruned weights (never over the source), sparse safetensors, JSON report and PNG, each
    written atomically.

    With ``arch`` (a nettrim checkpoint's model): pruned checkpoint(s), whose meta carries what
    ``nettrim verify`` needs: the prune report (the certificate), the calibration draw and the
    source checkpoint's path and sha256. With ``user`` (``--model``): the pruned state dict(s)
    as ``.pt`` (``torch.load(weights_only=True)`` reads them), the report recording the
    factory and the weights' path and sha256 under "source". Either way the sparse file of the
    pruned model (``nettrim.export``) and its measured size against the dense state dict."""
    summary, result = out["summary"], out["result"]
    paths = {"report": out_dir / f"{stem}.json", "plot": out_dir / f"{stem}.png"}
    models = {}
    if arch is not None or user is not None:
        models["checkpoint"] = (result.model, "")
        if "finetuned" in out:
            models["finetuned_checkpoint"] = (out["finetuned"], "-finetuned")
        paths.update({key: out_dir / f"{stem}{suffix}.pt" for key, (_, suffix) in models.items()})
        paths["sparse"] = out_dir / f"{stem}.safetensors"
    inputs = [p for p in (source, None if user is None else Path(user.weights)) if p is not None]
    clash = next((p for p in paths.values() for q in inputs if p.resolve() == Path(q).resolve()), None)
    require(clash is None, f"refusing to overwrite the input {clash}: choose another --out")
    src = None
    if user is not None:
        src = user.record()
    elif source is not None:
        src = {"path": str(Path(source).resolve()), "sha256": file_sha256(source)}
    with _all_or_nothing(out_dir, paths.values()):
        _write_models(summary, models, paths, arch, arch_kwargs, user, src)
        if "sparse" in paths:
            if arch is not None and result.report.surgery:  # a cut network: its architecture at its widths
                from ..models.architectures import widths_kwargs
                arch_kwargs = widths_kwargs(arch, arch_kwargs, result.model)
            export(result.model, paths["sparse"], format="sparse", force=True,
                   **({} if arch is None else {"arch": arch, "arch_kwargs": arch_kwargs}))
        plot_nonzeros(result.report, paths["plot"])
        summary = dict(summary, outputs={k: str(v) for k, v in paths.items()})
        if src is not None:
            summary["source"] = src
        if "sparse" in paths:
            summary["sizes"] = file_sizes(result.model, paths["sparse"])
        write_json_atomic(paths["report"], summary)
    return paths


def _write_models(summary, models, paths, arch, arch_kwargs, user, src) -> None:
    on = summary.get("accuracy_on", "test")
    for key, (model, suffix) in models.items():
        if user is not None:
            save_state_dict(paths[key], model)
            continue
        acc = summary[f"{on}_accuracy_after"] if not suffix else summary["finetune"][f"{on}_accuracy"]
        meta = {"pruned": True, f"{on}_accuracy": acc, "finetuned": bool(suffix)}
        if not suffix:  # fine-tuning moves the weights: only the pruned model is certified
            meta.update(certificate=summary["report"], calibration=summary["calibration"], source=src)
        save_checkpoint(paths[key], model, arch, arch_kwargs, meta)


@contextlib.contextmanager
def _all_or_nothing(out_dir: Path, paths):
    """Create ``out_dir`` if needed; when the block fails, remove those of ``paths`` that were
    not there before it and the directories it made, so a failed write leaves no new file
    behind (a file replaced before the failure stays replaced)."""
    paths = list(paths)
    before = {p for p in paths if p.exists()}
    made = [d for d in [*reversed(out_dir.parents), out_dir] if not d.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for p in paths:
            if p not in before:
                p.unlink(missing_ok=True)
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty
        raise


def save_state_dict(path: Path, model) -> Path:
    """``model.state_dict()`` as a plain ``torch.save`` dict of tensors, written atomically."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def file_sizes(model, sparse_path: Path) -> dict:
    """Measured bytes of the sparse file against the dense state dict (safetensors, float32)."""
    from safetensors.torch import save

    dense = len(save({k: v.detach().contiguous() for k, v in model.state_dict().items()}))
    sparse = Path(sparse_path).stat().st_size
    return {"sparse_bytes": sparse, "dense_bytes": dense, "ratio": dense / max(sparse, 1)}


def size_line(sizes: dict) -> str:
    """The sizes for people; "N x smaller" only for a file that is smaller."""
    text = f"sparse file {sizes['sparse_bytes']:,} bytes, dense state dict {sizes['dense_bytes']:,} bytes"
    return text + (f" ({sizes['ratio']:.1f}x smaller)" if sizes["ratio"] > 1 else " (not smaller)")


def verify_checkpoint(path: Path, *, dataset: str | None = None, data_dir=None,
                      original: Path | None = None, log=print) -> int:
    """Recompute every number of a pruned checkpoint's report (``nettrim.verify``) on its
    recorded calibration draw; the exit status: 0 every claim holds, 1 one does not (or the
    model, original or data are not the report's), 4 the report makes no certified claim."""
    from ..verify import verify

    pruned, info = load_checkpoint(path)
    meta = info["meta"]
    require(isinstance(meta.get("certificate"), dict) and isinstance(meta.get("calibration"), dict),
            f"{path} carries no certificate: verify a checkpoint written by `nettrim prune` "
            "(not a fine-tuned one)")
    cal = meta["calibration"]
    try:
        draw = Calibration(str(cal["dataset"]), int(cal["samples"]), int(cal["seed"]), cal["validation_size"],
                           int(cal["validation_seed"]), data_dir if data_dir is not None else cal["data_dir"])
    except (KeyError, TypeError, ValueError):
        raise NettrimError(f"{path}: its calibration record is malformed; verify a checkpoint written by "
                           "`nettrim prune`") from None
    require(dataset is None or dataset == draw.dataset,
            f"{path} was pruned on {draw.dataset}, not {dataset}: pass --data {draw.dataset}")
    xs, _ = draw.draw()
    src = Path(original) if original is not None else Path(str((meta.get("source") or {}).get("path", "")))
    require(src.is_file(), f"the original checkpoint {src} is not there: pass --original PATH")
    model, _ = load_checkpoint(src)
    result = verify(model, pruned, xs, meta["certificate"])
    for c in result.checks:
        if not c.holds or c.name.startswith("claim"):
            log(c.line())
    log(result.summary())
    return result.exit_code


def load_or_train(arch: str, dataset: str, *, epochs=None, seed=0, progress=True, log=print,
                  data_dir=None):
    """The reference model of ``arch`` on ``dataset`` from the one model cache
    (``nettrim.experiments.zoo``), trained there with its recipe when missing."""
    from ..experiments import zoo

    require(data_dir is None, "cached reference models use the installed datasets: drop --data-dir "
                              "or pass --checkpoint")
    recipe = RECIPES.get(arch, Recipe())
    model, info = zoo.get_model(arch, dataset, recipe.epochs if epochs is None else epochs, seed,
                                dropout=recipe.dropout or 0.0, lr=recipe.lr,
                                weight_decay=recipe.weight_decay, schedule=recipe.schedule,
                                validation=VALIDATION_SIZE, progress=progress, log=log)
    log(f"{'reusing' if info['cached'] else 'trained'} {info['path']} "
        f"({info['test_accuracy']:.2f} % test accuracy)")
    return model, info


DEMO = dict(arch="lenet-300-100", dataset="mnist", max_drop=0.5, samples=2000)


def demo(out_dir: Path, *, max_drop=None, samples=None, finetune_epochs=1, progress=True,
         log=print) -> dict:
    """The main job: LeNet-300-100 on MNIST (trained once, cached), then the sparsest Net-Trim
    model within ``max_drop`` points of validation accuracy; prints the trail and the table,
    writes report JSON + PNG + pruned checkpoint under ``out_dir``."""
    out_dir = Path(out_dir)
    model, info = load_or_train(DEMO["arch"], DEMO["dataset"], progress=progress, log=log)
    source = Path(info["path"])
    arch_kwargs = load_checkpoint(source)[1]["arch_kwargs"]
    calibration = Calibration(DEMO["dataset"], samples or DEMO["samples"])
    out = prune_model(model, calibration, max_drop=DEMO["max_drop"] if max_drop is None else max_drop,
                      finetune_epochs=finetune_epochs, run=RunOptions(progress=progress), log=log)
    if "result" not in out:
        raise NettrimError("no tolerance keeps the model within the budget: raise --max-drop")
    paths = write_outputs(out, out_dir, "lenet-300-100-nettrim", source, DEMO["arch"], arch_kwargs)
    print_summary(out["summary"], out["result"], log)
    log(size_line(file_sizes(out["result"].model, paths["sparse"])))
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return out["summary"]
