"""``nettrim`` command line: train, prune, verify, eval, export, demo, experiment, compare.

Every failure the user can fix prints one line ``error: ...`` and exits with status 2, with no
output file. ``prune --max-drop`` exits with 3 when no tolerance keeps the model within the
budget; ``verify`` exits with 1 when a claim or a number of the report does not hold, 4 when
the report makes no certified claim.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NettrimError, require


NAMES = ("mnist", "fashion-mnist", "cifar10", "svhn")
NETTRIM_FLAGS = ("epsilon", "gamma", "kappa", "reweight", "paper", "structure")


def _add_data(p: argparse.ArgumentParser, *, paths: bool = True, default: str | None = "mnist",
              what: str = "") -> None:
    if paths:
        p.add_argument("--data", default=default, metavar="NAME|PATH",
                       help=f"{what or 'the data'}: {', '.join(NAMES)}"
                            f"{' (default ' + default + ')' if default else ''}, or PATH: an .npz "
                            "with arrays x and y, a directory with x.npy and y.npy, or an image "
                            "folder (one sub-folder per class)")
    else:
        p.add_argument("--data", default=default, choices=NAMES, help=f"default {default}")
    p.add_argument("--data-dir", default=None, help="directory with a named dataset's files")


def _add_model(p: argparse.ArgumentParser, what: str) -> None:
    """The model to work on: a nettrim checkpoint, or a user's factory and weights."""
    p.add_argument("checkpoint", type=Path, nargs="?", metavar="CHECKPOINT",
                   help=f"the nettrim checkpoint to {what} (from nettrim train or prune); "
                        "or give --model and --weights")
    p.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                   help="your own model: a function (or class) returning the nn.Module, imported "
                        "by module path from the current directory, e.g. my_pkg.nets:build")
    p.add_argument("--weights", type=Path, default=None, metavar="W",
                   help="with --model: its state dict, a .pt read with torch.load(weights_only=True) "
                        "or a .safetensors file")


def _add_prune_options(p: argparse.ArgumentParser) -> None:
    from ..methods import METHODS

    p.add_argument("--method", default="nettrim", choices=list(METHODS),
                   help="nettrim (default) or a rival; the rivals prune to --sparsity (or search "
                        "one shared sparsity for --max-drop)")
    p.add_argument("--mode", default="cascade", choices=["cascade", "parallel"])
    target = p.add_mutually_exclusive_group()
    target.add_argument("--epsilon", type=float, default=None,
                        help="Net-Trim's relative tolerance (default: that of nettrim.NetTrim())")
    target.add_argument("--sparsity", type=float, default=None, metavar="S",
                        help="the fraction of zeros in every pruned layer, in (0, 1)")
    target.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                        help="the sparsest model within this many points of validation accuracy")
    p.add_argument("--validation-size", type=int, default=None,
                   help="samples held out to judge --max-drop (default: the split the checkpoint "
                        "was trained without, else 5000); for --data PATH they also give the "
                        "accuracy reported (default: a tenth of the file, at most 5000)")
    p.add_argument("--gamma", type=float, default=None, help="Net-Trim's cascade inflation (default 1.1)")
    p.add_argument("--kappa", type=float, default=None, help="Net-Trim's risk factor on the logits layer")
    p.add_argument("--reweight", type=int, default=None, help="rounds of reweighted l1 (default 2)")
    p.add_argument("--paper", action="store_true",
                   help="the papers' program: l1 alone, no reweighting, no refit")
    p.add_argument("--structure", default=None, choices=["weights", "units"],
                   help="units: remove whole neurons and channels (group l1, then a smaller dense "
                        "network; docs/structured.md); default weights")
    p.add_argument("--samples", type=int, default=2000, help="calibration samples (default 2000)")
    p.add_argument("--max-rows", type=int, default=None,
                   help="patch rows sampled per Conv2d layer (default max(5000, 30 N'))")
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0)


def _method(args):
    """The method object the flags describe."""
    from ..methods import METHODS, NetTrim

    if args.sparsity is not None:
        require(math.isfinite(args.sparsity) and 0 < args.sparsity < 1,
                f"--sparsity must lie in (0, 1) (the fraction of zeros), got {args.sparsity}")
    if args.method != "nettrim":
        used = next((f for f in NETTRIM_FLAGS if getattr(args, f) not in (None, False)), None)
        require(used is None, f"--{used} is a Net-Trim option: drop it, or use --method nettrim")
        require(args.sparsity is not None or args.max_drop is not None,
                f"--method {args.method} prunes to a count: pass --sparsity S (the fraction of zeros "
                "per layer, e.g. 0.9), or --max-drop POINTS to search it")
        return METHODS[args.method]()
    numbers = {k: v for k, v in (("epsilon", args.epsilon), ("gamma", args.gamma),
                                 ("kappa", args.kappa)) if v is not None}
    structure = {} if args.structure is None else {"structure": args.structure}
    if args.paper:
        require(args.reweight is None, "--paper has no reweighting: drop --reweight")
        return NetTrim.paper(**numbers).replace(**structure)
    return NetTrim(**numbers, **({} if args.reweight is None else {"reweight": args.reweight}), **structure)


@dataclass
class Source:
    """The model a command works on: from a nettrim checkpoint (``path``, ``arch``,
    ``arch_kwargs``, ``meta``) or from ``--model``/``--weights`` (``user``)."""

    model: object
    path: Path
    arch: str | None = None
    arch_kwargs: dict | None = None
    meta: dict = field(default_factory=dict)
    user: object = None

    @property
    def label(self) -> str:
        return str(self.path) if self.user is None else f"{self.user.factory} with {self.path}"


def _source(args) -> Source:
    """Exactly one of CHECKPOINT and --model (with --weights), loaded."""
    given = args.checkpoint is not None
    require(given != (args.model is not None),
            "give a CHECKPOINT or --model MODULE:FACTORY --weights W, not both" if given
            else "give the model: a nettrim CHECKPOINT, or --model MODULE:FACTORY --weights W")
    if given:
        from ..models import load_checkpoint

        require(args.weights is None, "--weights goes with --model: a nettrim checkpoint holds its own")
        model, info = load_checkpoint(args.checkpoint)
        return Source(model, args.checkpoint, info["arch"], info["arch_kwargs"], info["meta"])
    from ..models.user import load_user_model

    require(args.weights is not None, f"--model {args.model} needs --weights W: its trained state dict "
                                      "(.pt or .safetensors)")
    user = load_user_model(args.model, args.weights)
    return Source(user.model, args.weights, user=user)


def _data(args):
    """(the --data value as Calibration takes it: a name or an absolute path, the user's data
    read from it or None)."""
    from ..data.user import read_user_data

    if args.data in NAMES:
        return args.data, None
    path = Path(args.data).expanduser()
    require(path.exists(), f"--data {args.data}: no such file or directory, and not a dataset name "
                           f"({', '.join(NAMES)})")
    require(args.data_dir is None, "--data-dir is for the named datasets; --data PATH names the data "
                                   "itself: drop --data-dir")
    data = read_user_data(path)
    return data.path, data


def _check_runs(model, x, y, where: str) -> None:
    """One line, before any work, when the model does not run on the data or has fewer
    outputs than the data has classes."""
    from ..data.registry import one_line
    from ..models import predict

    try:
        out = predict(model, x[:2])
    except NettrimError:
        raise
    except Exception as exc:
        raise NettrimError(f"the model does not run on {where}'s inputs of shape "
                           f"{list(x.shape[1:])}: {one_line(exc)}") from None
    require(out.ndim == 2, f"the model's output on {where} has shape {list(out.shape)}; nettrim "
                           "judges accuracy on logits of shape (n, classes)")
    require(int(y.max()) < out.shape[1], f"{where} has labels up to {int(y.max())} but the model has "
                                         f"{out.shape[1]} outputs")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: ``error: ...`` on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nettrim", description="Net-Trim: convex pruning of trained networks")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a reference model and save a checkpoint")
    p.add_argument("--model", default="lenet-300-100", help="a nettrim architecture")
    _add_data(p, paths=False)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validation-size", type=int, default=5000,
                   help="training images held out (and recorded) for --max-drop; 0 for none")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")

    p = sub.add_parser("prune", help="prune a model with Net-Trim or a rival",
                       description="Prune a nettrim checkpoint, or your own model (--model, --weights), "
                                   "on calibration data drawn from --data; with --max-drop, the "
                                   "sparsest model within that budget of validation accuracy.")
    _add_model(p, "prune")
    _add_data(p, what="the calibration and validation data")
    _add_prune_options(p)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--backend", default="local",
                   help="local (default) or ray: independent solves as Ray tasks (docs/distributed.md)")
    p.add_argument("--address", default=None, help="with --backend ray: the Ray cluster to join "
                                                   "(default: start a local Ray)")
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="bound what is held for one layer's rows, e.g. 2GiB: a layer with more rows "
                        "is solved and certified on a seeded sample of them (docs/distributed.md)")
    p.add_argument("--restart", action="store_true",
                   help="discard an unfinished run kept in OUT/.nettrim-run instead of resuming it")

    p = sub.add_parser("verify", help="recompute a pruned checkpoint's certificate on its calibration data")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", default=None, choices=["mnist", "fashion-mnist", "cifar10", "svhn"],
                   help="the dataset it was pruned on (checked against the report)")
    p.add_argument("--data-dir", default=None, help="directory with the dataset files")
    p.add_argument("--original", type=Path, default=None,
                   help="the checkpoint it was pruned from (default: the path in its report)")

    p = sub.add_parser("eval", help="accuracy and non-zeros of a model: a named dataset's test "
                                    "split, or every sample of --data PATH")
    _add_model(p, "evaluate")
    _add_data(p, what="the data to evaluate on (a name: its test split)")

    p = sub.add_parser("compare", help="every method on the same network, data and sparsities")
    p.add_argument("--model", default="lenet-300-100", help="a nettrim architecture (cached reference model)")
    _add_data(p, paths=False)
    p.add_argument("--checkpoint", type=Path, default=None, help="use this model instead of a cached one")
    p.add_argument("--methods", default="nettrim,threshold,dc,lobs")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--sparsity", default=None, help="comma-separated, e.g. 0.5,0.7,0.8,0.9,0.95")
    target.add_argument("--epsilon", default=None, metavar="EPS,...",
                        help="Net-Trim at each relative eps, the other methods at its per-layer "
                             "counts (the Net-Trim papers' protocol), e.g. 0.1,0.25")
    p.add_argument("--retrain-epochs", type=int, default=None)
    p.add_argument("--retrain-lr", type=float, default=1e-3, help="Adam learning rate of the masked retraining")
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--mode", default="cascade", choices=["cascade", "parallel"])
    p.add_argument("--hidden-only", action="store_true", help="leave the logits layer dense")
    p.add_argument("--quick", action="store_true", help="small preset for CI-sized checks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/compare"))
    p.add_argument("--restart", action="store_true",
                   help="discard an unfinished run kept in OUT/.nettrim-run instead of resuming it")

    p = sub.add_parser("experiment", help="the experiments that check the theory")
    p.add_argument("name", help="sample-complexity, bounds, cascade-vs-parallel, depth, "
                                "depth-conv, dimensionality, robustness")
    p.add_argument("--preset", default="quick", choices=["quick", "full"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)

    p = sub.add_parser("export", help="write a model as a sparse or dense safetensors file, or ONNX")
    _add_model(p, "export")
    p.add_argument("--format", default="sparse", help="sparse (default), dense or onnx")
    p.add_argument("--out", type=Path, required=True, help="file to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    _add_data(p, default=None, what="with --format onnx: 16 of its inputs check the graph (needed "
                                    "for --model; a name gives its test split)")

    p = sub.add_parser("demo", help="LeNet-300-100 on MNIST (trained once, cached): the sparsest "
                                     "model within half a point of validation accuracy")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--max-drop", type=float, default=None, metavar="POINTS", help="default 0.5")
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=1)
    return parser


def run(args: argparse.Namespace) -> int:
    from . import workflows as wf

    progress = not args.no_progress
    if args.command == "train":
        require(args.validation_size >= 0, f"--validation-size must be >= 0, got {args.validation_size}")
        wf.train_model(args.model, args.data, args.out, data_dir=args.data_dir,
                       epochs=args.epochs, seed=args.seed, validation_size=args.validation_size or None,
                       progress=progress)
    elif args.command == "prune":
        return _prune(args, progress)
    elif args.command == "verify":
        return wf.verify_checkpoint(args.checkpoint, dataset=args.data, data_dir=args.data_dir,
                                    original=args.original)
    elif args.command == "eval":
        _eval(args)
    elif args.command == "compare":
        _compare(args, progress)
    elif args.command == "experiment":
        from ..experiments.registry import EXPERIMENTS

        if args.name not in EXPERIMENTS:
            raise NettrimError(f"unknown experiment {args.name!r}; choose from {', '.join(EXPERIMENTS)}")
        EXPERIMENTS[args.name](args.out or Path("runs") / args.name, args.preset, args.seed)
    elif args.command == "export":
        _export(args)
    elif args.command == "demo":
        wf.demo(args.out, max_drop=args.max_drop, samples=args.samples,
                finetune_epochs=args.finetune_epochs, progress=progress)
    return 0


def _eval(args) -> None:
    """``nettrim eval``: a named dataset's test split, or every sample of a user's file."""
    from ..data import load_dataset
    from ..models import count_nonzero, evaluate

    src = _source(args)
    dataset, data = _data(args)
    if data is None:
        x, y = load_dataset(dataset, "test", args.data_dir)
        on = "test accuracy"
    else:
        x, y = data.x, data.y
        on = f"accuracy on the {len(y):,} samples of {data.path}"
    _check_runs(src.model, x, y, dataset)
    nz = count_nonzero(src.model)
    what = src.arch if src.user is None else src.user.factory
    print(f"{src.path}: {what}, {on} {evaluate(src.model, x, y):.2f} %, "
          f"{nz['nonzero']} / {nz['total']} non-zero weights and biases")


def _export(args) -> None:
    """``nettrim export``: a checkpoint's or a --model's weights as sparse, dense or ONNX."""
    from ..export import FORMATS, export

    require(args.format in FORMATS, f"unknown export format {args.format!r}; choose one of: {', '.join(FORMATS)}")
    from ..export import files

    files.check(args.out, force=args.force, directory=args.format == "compressed-tensors")
    require(args.data is None or args.format == "onnx",
            "--data is for --format onnx (its inputs check the graph): drop it")
    require(args.format != "onnx" or args.data is not None or args.model is None,
            "--format onnx of a --model needs --data: 16 of its inputs check the exported graph")
    src = _source(args)
    sample = None
    if args.data is not None:
        from ..data import load_dataset

        dataset, data = _data(args)
        x, y = (load_dataset(dataset, "test", args.data_dir) if data is None else (data.x, data.y))
        _check_runs(src.model, x, y, dataset)
        sample = x[:16]
    arch = {} if src.arch is None else {"arch": src.arch, "arch_kwargs": src.arch_kwargs}
    info = export(src.model, args.out, args.format, force=args.force,
                  **arch, **({} if sample is None else {"sample": sample}))
    check = ("" if info.onnx_max_abs_diff is None
             else f"; onnxruntime max abs difference {info.onnx_max_abs_diff:.3g}")
    print(f"wrote {info.path} ({info.format}, {info.bytes} bytes, "
          f"{info.arch or 'the state dict by its names'}){check}")


def _prune(args, progress: bool) -> int:
    """``nettrim prune``: at a tolerance or a sparsity, or the sparsest model within --max-drop
    points; exit 3 (nothing written) when no trial keeps the model within the budget."""
    import torch

    from ..api import RunOptions
    from ..data import DATASETS
    from ..pruners.backend import make_backend
    from ..pruners.resume import RunStore
    from . import workflows as wf

    method = _method(args)
    src = _source(args)
    dataset, data = _data(args)
    if data is None:  # the shape and the classes the dataset declares are what the probe needs
        size, seed = wf.held_out(src.meta)
        info = DATASETS[dataset]
        x, y = torch.zeros(2, *info.shape), torch.tensor([0, info.n_classes - 1])
    else:
        size, seed = wf.user_validation_size(len(data.y)), wf.VALIDATION_SEED
        x, y = data.x, data.y
    if args.validation_size is not None:
        require(args.validation_size >= 1, f"--validation-size must be >= 1, got {args.validation_size}")
        require(data is None or args.validation_size < len(y),
                f"--validation-size must lie in 1..{len(y) - 1} ({dataset} holds {len(y)} samples)")
        size = args.validation_size
    require(args.samples >= 1, f"--samples must be >= 1, got {args.samples}")
    require(args.max_rows is None or args.max_rows >= 1, f"--max-rows must be >= 1, got {args.max_rows}")
    require(src.user is None or args.structure != "units",
            f"--structure units changes the widths, so the pruned weights would no longer fit "
            f"--model {args.model}: prune weights (the default), or a nettrim checkpoint")
    if args.max_drop is not None:
        require(0 <= args.max_drop < 100, f"--max-drop must lie in [0, 100) points, got {args.max_drop}")
    _check_runs(src.model, x, y, dataset)
    if args.max_drop is not None and data is None and "validation" not in src.meta:
        print(f"note: {src.label} records no held-out split; the {size} validation images "
              "come from its training split and may have been seen in training")
    backend = make_backend(args.backend, args.address)  # before any output: a bad one writes nothing
    run = RunOptions(max_rows="auto" if args.max_rows is None else args.max_rows, max_memory=args.max_memory,
                     seed=args.seed, progress=progress, backend=backend)
    calibration = wf.Calibration(dataset, args.samples, args.seed, size, seed,
                                 args.data_dir if data is None else None)
    # finished layers and trials are kept in OUT/.nettrim-run until the outputs are written
    with RunStore.in_output(args.out, restart=args.restart) as store:
        out = wf.prune_model(src.model, calibration, method=method, mode=args.mode,
                             max_drop=args.max_drop, sparsity=args.sparsity,
                             finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                             run=run, store=store, data=data)
        if "result" not in out:
            search = out["summary"]["search"]
            knob = "eps" if search["knob"] == "epsilon" else "sparsity"
            print(f"error: budget_unreachable: even {knob} {search['search'][-1]['knob']:.4g} "
                  f"loses more than {args.max_drop} points of validation accuracy; nothing written",
                  file=sys.stderr)
            return 3
        stem = f"{src.path.stem}-{method.name}-{args.mode}"
        paths = wf.write_outputs(out, args.out, stem, src.path, src.arch, src.arch_kwargs, user=src.user)
        wf.print_summary(out["summary"], out["result"])
        print(wf.size_line(wf.file_sizes(out["result"].model, paths["sparse"])))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _parse_floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise NettrimError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _compare(args, progress: bool) -> None:
    from ..experiments import compare as cmp
    from ..models import load_checkpoint
    from ..pruners.resume import RunStore
    from . import workflows as wf

    preset = cmp.QUICK if args.quick else cmp.FULL
    if args.checkpoint is not None:
        model, _ = load_checkpoint(args.checkpoint)
    else:
        model, _ = wf.load_or_train(args.model, args.data, progress=progress,
                                    epochs=preset["train_epochs"], data_dir=args.data_dir)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    epsilons = _parse_floats(args.epsilon, "--epsilon") if args.epsilon else None
    sparsities = None
    if epsilons is None:
        sparsities = _parse_floats(args.sparsity, "--sparsity") if args.sparsity else list(preset["sparsities"])
    layers = None
    if args.hidden_only:
        from ..capture import trace_layers
        from ..data import DATASETS
        import torch

        specs = trace_layers(model, torch.zeros(2, *DATASETS[args.data].shape))
        layers = [s.name for s in specs[:-1]]
    with RunStore.in_output(args.out, restart=args.restart) as store:  # finished cells kept there
        result = cmp.compare(model, args.data, methods, sparsities, epsilons=epsilons,
                             samples=args.samples or preset["samples"],
                             retrain_epochs=preset["retrain_epochs"] if args.retrain_epochs is None else args.retrain_epochs,
                             mode=args.mode, layers=layers, seed=args.seed, data_dir=args.data_dir,
                             retrain_subset=preset["retrain_subset"], retrain_lr=args.retrain_lr,
                             options=preset.get("options") or {},
                             progress=progress, store=store)
        paths = cmp.write(result, args.out)
    print(cmp.table(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except NettrimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
