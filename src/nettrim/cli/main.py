"""``nettrim`` command line: train, prune, eval, demo, experiment, compare.

Every failure the user can fix prints one line ``error: ...`` and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import NettrimError


def _add_data(p: argparse.ArgumentParser, default="mnist") -> None:
    p.add_argument("--dataset", default=default, choices=["mnist", "fashion-mnist", "cifar10", "svhn"])
    p.add_argument("--data-dir", default=None, help="directory with the dataset files")


def _add_prune_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default="cascade", choices=["cascade", "parallel"])
    p.add_argument("--epsilon", type=float, default=0.1, help="relative tolerance (default 0.1)")
    p.add_argument("--gamma", type=float, default=1.1, help="cascade inflation (default 1.1)")
    p.add_argument("--kappa", type=float, default=1.0, help="risk factor on the logits layer")
    p.add_argument("--samples", type=int, default=2000, help="training samples used (default 2000)")
    p.add_argument("--per-neuron", action="store_true", help="one tolerance ball per neuron")
    p.add_argument("--reweight", type=int, default=0, help="rounds of reweighted l1")
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)


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
            finetune_epochs=args.finetune_epochs, progress=progress, method="nettrim",
            mode=args.mode, epsilon=args.epsilon, gamma=args.gamma, kappa=args.kappa,
            per_neuron=args.per_neuron, reweight=args.reweight)
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
    elif args.command == "demo":
        wf.demo(args.out, epsilon=args.epsilon, samples=args.samples,
                finetune_epochs=args.finetune_epochs, progress=progress)
    return 0


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
