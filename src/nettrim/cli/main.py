"""``nettrim`` command line: train, prune, eval, export, demo, experiment, compare.

Every failure the user can fix prints one line ``error: ...`` and exits with status 2.
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
    p.add_argument("--epsilon", type=float, default=0.1, help="relative tolerance (default 0.1)")
    p.add_argument("--gamma", type=float, default=1.1, help="cascade inflation (default 1.1)")
    p.add_argument("--kappa", type=float, default=1.0, help="risk factor on the logits layer")
    p.add_argument("--samples", type=int, default=2000, help="training samples used (default 2000)")
    p.add_argument("--per-neuron", nargs="?", const="all", default=None, metavar="NAME,...",
                   help="one tolerance ball per neuron: in every layer, or in the layers named")
    p.add_argument("--reweight", type=int, default=0, help="rounds of reweighted l1")
    p.add_argument("--reweight-rel-tol", type=float, default=None,
                   help="ADMM rel_tol of the reweighting rounds before the last, e.g. 1e-2 (faster)")
    p.add_argument("--polish", action="store_true", help="debias every layer on its support (stays feasible)")
    p.add_argument("--relax-slack", action="store_true", help="cascade V = relu(W^T Xhat)")
    p.add_argument("--margin", type=float, default=None, metavar="THETA",
                   help="keep inactive units below THETA x their original pre-activation, in [0, 1]")
    p.add_argument("--hinge", action="store_true",
                   help="hinge program: inactive entries' excess shares the eps ball (sparser)")
    p.add_argument("--layer-epsilon", default=None, metavar="NAME=EPS,...",
                   help="relative eps per layer (a floor for later cascade layers), e.g. 3=0.2,6=0.15")
    p.add_argument("--max-rows", type=int, default=None,
                   help="patch rows sampled per Conv2d layer (default max(5000, 30 N'))")
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0)


def _settings(args):
    """ADMM settings from the flags, or None for the defaults."""
    if args.reweight_rel_tol is None:
        return None
    from ..layer import ADMMSettings

    require(args.reweight_rel_tol > 0, f"--reweight-rel-tol must be > 0, got {args.reweight_rel_tol}")
    return ADMMSettings(reweight_rel_tol=args.reweight_rel_tol)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nettrim", description="Net-Trim: convex pruning of trained networks")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a reference model and save a checkpoint")
    p.add_argument("--model", default="lenet-300-100")
    _add_data(p)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")

    p = sub.add_parser("prune", help="prune a checkpoint with Net-Trim")
    p.add_argument("checkpoint", type=Path)
    _add_data(p)
    _add_prune_options(p)
    p.add_argument("--out", type=Path, required=True, help="output directory")

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
    p.add_argument("--per-neuron", action="store_true",
                   help="Net-Trim: one ball per neuron in every pruned layer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/compare"))

    p = sub.add_parser("experiment", help="the experiments that check the theory")
    p.add_argument("name", help="sample-complexity, bounds, cascade-vs-parallel, depth, "
                                "dimensionality, robustness")
    p.add_argument("--preset", default="quick", choices=["quick", "full"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)

    p = sub.add_parser("export", help="write a checkpoint as a sparse or dense safetensors file, or ONNX")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--format", default="sparse", help="sparse (default), dense or onnx")
    p.add_argument("--out", type=Path, required=True, help="file to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")

    p = sub.add_parser("demo", help="train LeNet-300-100 on MNIST (cached), prune it, report")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--epsilon", type=float, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=1)
    return parser


def run(args: argparse.Namespace) -> int:
    from . import workflows as wf

    progress = not args.no_progress
    if args.command == "train":
        wf.train_model(args.model, args.dataset, args.out, data_dir=args.data_dir,
                       epochs=args.epochs, seed=args.seed, progress=progress)
    elif args.command == "prune":
        from ..models import load_checkpoint

        model, info = load_checkpoint(args.checkpoint)
        out = wf.prune_model(
            model, args.dataset, data_dir=args.data_dir, samples=args.samples, seed=args.seed,
            finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr, progress=progress,
            method="nettrim", mode=args.mode, epsilon=args.epsilon, gamma=args.gamma,
            kappa=args.kappa, per_neuron=_parse_per_neuron(args.per_neuron), reweight=args.reweight,
            polish=args.polish, relax_slack=args.relax_slack, margin=args.margin, hinge=args.hinge,
            layer_epsilon=_parse_layer_eps(args.layer_epsilon),
            capture=None if args.max_rows is None else {"max_rows": args.max_rows},
            settings=_settings(args))
        wf.print_summary(out["summary"], out["result"])
        stem = f"{args.checkpoint.stem}-nettrim-{args.mode}"
        paths = wf.write_outputs(out, args.out, stem, args.checkpoint, info["arch"], info["arch_kwargs"])
        print("wrote " + ", ".join(str(p) for p in paths.values()))
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
        wf.demo(args.out, epsilon=args.epsilon, samples=args.samples,
                finetune_epochs=args.finetune_epochs, progress=progress)
    return 0


def _parse_layer_eps(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            out[""] = None
        if not name.strip() or out.get("") is None and "" in out:
            raise NettrimError(f"--layer-epsilon wants NAME=EPS pairs separated by commas, got {item!r}")
    return out


def _parse_per_neuron(text: str | None) -> bool | list[str]:
    """--per-neuron: absent (False), bare (every layer) or a comma-separated list of names."""
    if text is None:
        return False
    if text == "all":
        return True
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise NettrimError(f"--per-neuron wants layer names separated by commas, got {text!r}")
    return names


def _parse_floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise NettrimError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _compare(args, progress: bool) -> None:
    from ..experiments import compare as cmp
    from ..models import load_checkpoint
    from . import workflows as wf

    preset = cmp.QUICK if args.quick else cmp.FULL
    if args.checkpoint is not None:
        model, _ = load_checkpoint(args.checkpoint)
    else:
        cache = Path("runs/cache") / f"{args.model}-{args.dataset}{'-quick' if args.quick else ''}.pt"
        model, _ = wf.load_or_train(cache, args.model, args.dataset, progress=progress,
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
    result = cmp.compare(model, args.dataset, methods, sparsities, epsilons=epsilons,
                         samples=args.samples or preset["samples"],
                         retrain_epochs=preset["retrain_epochs"] if args.retrain_epochs is None else args.retrain_epochs,
                         mode=args.mode, layers=layers, seed=args.seed, data_dir=args.data_dir,
                         retrain_subset=preset["retrain_subset"], retrain_lr=args.retrain_lr,
                         options=_compare_options(preset, args.per_neuron),
                         progress=progress)
    paths = cmp.write(result, args.out)
    print(cmp.table(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def _compare_options(preset: dict, per_neuron: bool) -> dict | None:
    """The preset's per-method options, with Net-Trim's ``per_neuron`` switched on if asked."""
    from ..experiments.compare import DEFAULT_OPTIONS

    options = preset.get("options")
    if not per_neuron:
        return options
    options = dict(DEFAULT_OPTIONS if options is None else options)
    options["nettrim"] = dict(options.get("nettrim", {}), per_neuron=True)
    return options


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
