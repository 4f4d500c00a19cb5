"""``nettrim`` command line: train, prune, verify, eval, export, demo, experiment, compare.

Every failure the user can fix prints one line ``error: ...`` and exits with status 2, with no
output file. ``prune --max-drop`` exits with 3 when no tolerance keeps the model within the
budget; ``verify`` exits with 1 when a claim or a number of the report does not hold, 4 when
the report makes no certified claim.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import NettrimError, require


def _add_data(p: argparse.ArgumentParser, default="mnist") -> None:
    p.add_argument("--dataset", default=default, choices=["mnist", "fashion-mnist", "cifar10", "svhn"])
    p.add_argument("--data-dir", default=None, help="directory with the dataset files")


def _add_prune_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default="cascade", choices=["cascade", "parallel"])
    target = p.add_mutually_exclusive_group()
    target.add_argument("--epsilon", type=float, default=None,
                        help="relative tolerance (default: that of nettrim.NetTrim())")
    target.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                        help="the sparsest model within this many points of validation accuracy")
    p.add_argument("--validation-size", type=int, default=None,
                   help="training images held out to judge --max-drop (default: the split the "
                        "checkpoint was trained without, else 5000)")
    p.add_argument("--gamma", type=float, default=None, help="cascade inflation (default 1.1)")
    p.add_argument("--kappa", type=float, default=None, help="risk factor on the logits layer")
    p.add_argument("--reweight", type=int, default=None, help="rounds of reweighted l1 (default 2)")
    p.add_argument("--paper", action="store_true",
                   help="the papers' program: l1 alone, no reweighting, no refit")
    p.add_argument("--structure", default=None, choices=["weights", "units"],
                   help="units: remove whole neurons and channels (group l1, then a smaller dense "
                        "network; docs/structured.md); default weights")
    p.add_argument("--samples", type=int, default=2000, help="calibration images (default 2000)")
    p.add_argument("--max-rows", type=int, default=None,
                   help="patch rows sampled per Conv2d layer (default max(5000, 30 N'))")
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0)


def _method(args):
    """The NetTrim object the flags describe."""
    from ..methods import NetTrim

    numbers = {k: v for k, v in (("epsilon", args.epsilon), ("gamma", args.gamma),
                                 ("kappa", args.kappa)) if v is not None}
    structure = {} if args.structure is None else {"structure": args.structure}
    if args.paper:
        require(args.reweight is None, "--paper has no reweighting: drop --reweight")
        return NetTrim.paper(**numbers).replace(**structure)
    return NetTrim(**numbers, **({} if args.reweight is None else {"reweight": args.reweight}), **structure)


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: ``error: ...`` on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nettrim", description="Net-Trim: convex pruning of trained networks")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a reference model and save a checkpoint")
    p.add_argument("--model", default="lenet-300-100")
    _add_data(p)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validation-size", type=int, default=5000,
                   help="training images held out (and recorded) for --max-drop; 0 for none")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")

    p = sub.add_parser("prune", help="prune a checkpoint with Net-Trim")
    p.add_argument("checkpoint", type=Path)
    _add_data(p)
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

    p = sub.add_parser("eval", help="test accuracy and non-zeros of a checkpoint")
    p.add_argument("checkpoint", type=Path)
    _add_data(p)

    p = sub.add_parser("compare", help="every method on the same network, data and sparsities")
    p.add_argument("--model", default="lenet-300-100")
    _add_data(p)
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

    p = sub.add_parser("export", help="write a checkpoint as a sparse or dense safetensors file, or ONNX")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--format", default="sparse", help="sparse (default), dense or onnx")
    p.add_argument("--out", type=Path, required=True, help="file to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")

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
        wf.train_model(args.model, args.dataset, args.out, data_dir=args.data_dir,
                       epochs=args.epochs, seed=args.seed, validation_size=args.validation_size or None,
                       progress=progress)
    elif args.command == "prune":
        return _prune(args, progress)
    elif args.command == "verify":
        return wf.verify_checkpoint(args.checkpoint, dataset=args.data, data_dir=args.data_dir,
                                    original=args.original)
    elif args.command == "eval":
        from ..data import load_dataset
        from ..models import count_nonzero, evaluate, load_checkpoint

        model, info = load_checkpoint(args.checkpoint)
        xt, yt = load_dataset(args.dataset, "test", args.data_dir)
        nz = count_nonzero(model)
        print(f"{args.checkpoint}: {info['arch']}, test accuracy {evaluate(model, xt, yt):.2f} %, "
              f"{nz['nonzero']} / {nz['total']} non-zero weights and biases")
    elif args.command == "compare":
        _compare(args, progress)
    elif args.command == "experiment":
        from ..experiments.registry import EXPERIMENTS

        if args.name not in EXPERIMENTS:
            raise NettrimError(f"unknown experiment {args.name!r}; choose from {', '.join(EXPERIMENTS)}")
        EXPERIMENTS[args.name](args.out or Path("runs") / args.name, args.preset, args.seed)
    elif args.command == "export":
        from ..export import export_checkpoint

        info = export_checkpoint(args.checkpoint, args.out, args.format, force=args.force)
        check = ("" if info.onnx_max_abs_diff is None
                 else f"; onnxruntime max abs difference {info.onnx_max_abs_diff:.3g}")
        print(f"wrote {info.path} ({info.format}, {info.bytes} bytes, {info.arch}){check}")
    elif args.command == "demo":
        wf.demo(args.out, max_drop=args.max_drop, samples=args.samples,
                finetune_epochs=args.finetune_epochs, progress=progress)
    return 0


def _prune(args, progress: bool) -> int:
    """``nettrim prune``: at a tolerance, or the sparsest model within --max-drop points; exit 3
    (nothing written) when no tolerance keeps the model within the budget."""
    from ..api import RunOptions
    from ..models import load_checkpoint
    from ..pruners.backend import make_backend
    from ..pruners.resume import RunStore
    from . import workflows as wf

    model, info = load_checkpoint(args.checkpoint)
    size, seed = wf.held_out(info["meta"])
    if args.validation_size is not None:
        require(args.validation_size >= 1, f"--validation-size must be >= 1, got {args.validation_size}")
        size = args.validation_size
    require(args.samples >= 1, f"--samples must be >= 1, got {args.samples}")
    require(args.max_rows is None or args.max_rows >= 1, f"--max-rows must be >= 1, got {args.max_rows}")
    if args.max_drop is not None:
        require(0 <= args.max_drop < 100, f"--max-drop must lie in [0, 100) points, got {args.max_drop}")
        if "validation" not in info["meta"]:
            print(f"note: {args.checkpoint} records no held-out split; the {size} validation images "
                  "come from its training split and may have been seen in training")
    backend = make_backend(args.backend, args.address)  # before any output: a bad one writes nothing
    run = RunOptions(max_rows="auto" if args.max_rows is None else args.max_rows, max_memory=args.max_memory,
                     seed=args.seed, progress=progress, backend=backend)
    calibration = wf.Calibration(args.dataset, args.samples, args.seed, size, seed, args.data_dir)
    # finished layers and trials are kept in OUT/.nettrim-run until the outputs are written
    with RunStore.in_output(args.out, restart=args.restart) as store:
        out = wf.prune_model(model, calibration, method=_method(args), mode=args.mode,
                             max_drop=args.max_drop, finetune_epochs=args.finetune_epochs,
                             finetune_lr=args.finetune_lr, run=run, store=store)
        if "result" not in out:
            print(f"error: budget_unreachable: even eps {out['summary']['search']['search'][-1]['knob']:.4g} "
                  f"loses more than {args.max_drop} points of validation accuracy; nothing written",
                  file=sys.stderr)
            return 3
        wf.print_summary(out["summary"], out["result"])
        stem = f"{args.checkpoint.stem}-nettrim-{args.mode}"
        paths = wf.write_outputs(out, args.out, stem, args.checkpoint, info["arch"], info["arch_kwargs"])
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
        model, _ = wf.load_or_train(args.model, args.dataset, progress=progress,
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

        specs = trace_layers(model, torch.zeros(2, *DATASETS[args.dataset].shape))
        layers = [s.name for s in specs[:-1]]
    with RunStore.in_output(args.out, restart=args.restart) as store:  # finished cells kept there
        result = cmp.compare(model, args.dataset, methods, sparsities, epsilons=epsilons,
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
