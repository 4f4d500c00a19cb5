"""Benchmark: Net-Trim against SparseGPT and Wanda on layers of the size users have, one run.

1. ``block``: a transformer MLP block nn.Sequential(Linear(768, 3072), act, Linear(3072, 768))
   with act ReLU (a ReLU program, then a linear one) or GELU (two linear programs), default
   init, 2,048 Gaussian calibration rows, the output error on 2,048 other rows. At sparsity
   0.5 (every method at the same count) and at Net-Trim's own tolerance (``NetTrim(
   support="obs")`` at its default epsilon), with SparseGPT and Wanda at the counts it kept.
2. ``conv``: a ResNet-18-sized 3x3 convolution, 256 -> 256 channels on 14 x 14 maps, 256
   calibration images: 50,176 patch rows of 2,305 columns. Its program is a linear one (no
   ReLU of its own), built from streamed Gram statistics: each method runs in its own process
   and reports its peak resident memory (``ru_maxrss``) beside the bytes the patch matrix
   would need. At sparsity 0.5, Net-Trim against SparseGPT; output error on 32 other images.
3. ``gpt2``: a 2-layer GPT-2 built from a transformers config (d = 768, nothing downloaded),
   its eight Conv1D layers pruned end to end at sparsity 0.5 in cascade; logits error on
   held-out sequences.

Every time is wall-clock seconds of ``nettrim.api.prune`` in this run at ``--threads``; each
ratio is to SparseGPT at the same target in the same run. ``--quick`` runs the same on small
shapes (a CI check). ``--doc`` writes docs/scale.md from the JSON (nothing is measured).
``--solver-compare SRC`` measures the tolerance search of the source tree SRC (an earlier
commit, e.g. ``git archive <commit> src | tar -x -C /tmp/old``) against this one on the ReLU
block and a 784-300-100-10 MLP, into benchmarks/results/scale_solver.json.

Writes benchmarks/results/scale.json. Run: `.venv/bin/python benchmarks/scale.py [--quick]`
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from common import child_result, machine, run, start_child

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "scale.json"
SOLVER_OUT = ROOT / "benchmarks" / "results" / "scale_solver.json"
DOC = ROOT / "docs" / "scale.md"

FULL = dict(d=768, hidden=3072, rows=2048, channels=256, side=14, images=256, held_images=32,
            gpt_embd=768, gpt_heads=12, gpt_seqs=32, gpt_len=64, gpt_vocab=2048)
QUICK = dict(d=48, hidden=192, rows=256, channels=16, side=8, images=16, held_images=8,
             gpt_embd=64, gpt_heads=4, gpt_seqs=8, gpt_len=16, gpt_vocab=128)
SPARSITY = 0.5


# -- measurement helpers -------------------------------------------------------------------
def methods():
    from nettrim.methods import NetTrim, SparseGPT, Wanda

    return {"sparsegpt": SparseGPT(), "wanda": Wanda(), "nettrim": NetTrim(support="obs")}


def prune_timed(model, x, method, *, sparsity=None, counts=None, layers=None, batch_size=1024,
                max_rows="auto"):
    """(result, seconds) of one ``nettrim.api.prune`` call (cascade)."""
    from nettrim.api import RunOptions, prune

    run_options = RunOptions(progress=False, batch_size=batch_size, layers=layers, max_rows=max_rows)
    sync()
    t0 = time.perf_counter()
    result = prune(model, x, method, sparsity=sparsity, counts=counts, run=run_options)
    sync()
    return result, time.perf_counter() - t0


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def relative_error(model, pruned, inputs, batch: int = 64) -> float:
    """||f_pruned(x) - f(x)|| / ||f(x)|| over ``inputs`` (a model output's logits)."""
    from nettrim.stream import output_tensor

    num = den = 0.0
    with torch.no_grad():
        for s in range(0, inputs.shape[0], batch):
            y = output_tensor(model(inputs[s:s + batch])).double()
            yh = output_tensor(pruned(inputs[s:s + batch])).double()
            num += float((yh - y).square().sum())
            den += float(y.square().sum())
    return (num / den) ** 0.5


def row(part: str, model: str, target: str, name: str, result, seconds: float, error: float, **extra) -> dict:
    report = result.report
    claims = [r.certificate is not None for r in report.layers]
    return dict(part=part, model=model, target=target, method=name, kept=1 - report.sparsity,
                layers_kept=[round(r.kept_fraction, 4) for r in report.layers], error=error,
                seconds=seconds, certified=all(r.certified for r in report.layers) if all(claims) else None, **extra)


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row's seconds over SparseGPT's at the same part, model and target."""
    base = {(r["part"], r["model"], r["target"]): r["seconds"] for r in rows if r["method"] == "sparsegpt"}
    for r in rows:
        b = base.get((r["part"], r["model"], r["target"]))
        r["ratio"] = r["seconds"] / b if b else None
    return rows


# -- (1) the transformer MLP block ---------------------------------------------------------
def mlp_block(d: int, hidden: int, act: str, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU() if act == "relu" else nn.GELU(), nn.Linear(hidden, d))


def block_part(shape: dict, device: str) -> list[dict]:
    rows = []
    for act in ("relu", "gelu"):
        model = mlp_block(shape["d"], shape["hidden"], act).to(device)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(shape["rows"], shape["d"], generator=g).to(device)
        held = torch.randn(shape["rows"], shape["d"], generator=g).to(device)
        label = f"{act} block {shape['d']}-{shape['hidden']}-{shape['d']}"
        for name, method in methods().items():
            result, seconds = prune_timed(model, x, method, sparsity=SPARSITY)
            rows.append(row("block", label, f"sparsity {SPARSITY}", name, result, seconds,
                            relative_error(model, result.model, held)))
            progress(rows[-1])
        nettrim = methods()["nettrim"]
        target = f"tolerance eps {nettrim.epsilon}"
        result, seconds = prune_timed(model, x, nettrim)
        rows.append(row("block", label, target, "nettrim", result, seconds, relative_error(model, result.model, held)))
        progress(rows[-1])
        counts = {r.name: r.nnz_after for r in result.report.layers}
        for name in ("sparsegpt", "wanda"):
            res, sec = prune_timed(model, x, methods()[name], counts=counts)
            rows.append(row("block", label, target, name, res, sec, relative_error(model, res.model, held)))
            progress(rows[-1])
    return rows


# -- (2) the ResNet-18-sized convolution, each method in its own process ----------------------
def conv_child(shape: dict, device: str, name: str, scale: int = 1) -> dict:
    """One method on the conv layer (``scale`` times the images), in a fresh process: the row
    plus peak RSS before/after."""
    c, side, n = shape["channels"], shape["side"], shape["images"] * scale
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(c, c, 3, padding=1)).to(device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, c, side, side, generator=g).to(device)
    held = torch.randn(shape["held_images"], c, side, side, generator=g).to(device)
    warm_up(device)
    before = peak_rss_mb()
    patch_rows, columns = n * side * side, c * 9 + 1
    result, seconds = prune_timed(model, x, methods()[name], sparsity=SPARSITY, batch_size=16, max_rows=patch_rows)
    cuda = torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else None
    return row("conv", f"conv 3x3 {c}->{c} on {side}x{side}, {n} images", f"sparsity {SPARSITY}", name,
               result, seconds, relative_error(model, result.model, held), rss_before_mb=before,
               peak_rss_mb=peak_rss_mb(), patch_rows=patch_rows, columns=columns,
               patch_matrix_mb=patch_rows * columns * 4 / 2 ** 20, cuda_peak_mb=cuda,
               rows_used=result.report.layers[0].rows)


def conv_part(shape: dict, device: str, threads: int, quick: bool) -> list[dict]:
    rows = []
    for name, scale in (("sparsegpt", 1), ("nettrim", 1), ("nettrim", 2)):
        payload = json.dumps(dict(part="conv", name=name, scale=scale, device=device, threads=threads, quick=quick))
        rows.append(child_result(start_child(__file__, payload), f"conv {name} x{scale}"))
        progress(rows[-1])
    return rows


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- (3) a transformers GPT-2 from a config ------------------------------------------------
def gpt2_part(shape: dict, device: str) -> list[dict]:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_embd=shape["gpt_embd"], n_head=shape["gpt_heads"],
                        vocab_size=shape["gpt_vocab"], n_positions=max(128, shape["gpt_len"]),
                        tie_word_embeddings=False, attn_implementation="eager")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).to(device).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (shape["gpt_seqs"], shape["gpt_len"]), generator=g).to(device)
    held = torch.randint(0, config.vocab_size, (max(4, shape["gpt_seqs"] // 2), shape["gpt_len"]),
                         generator=g).to(device)
    layers = [n for n, m in model.named_modules() if type(m).__name__ == "Conv1D"]
    label = f"gpt2 2 layers d={config.n_embd} ({len(layers)} Conv1D layers, {ids.numel()} tokens)"
    rows = []
    for name, method in methods().items():
        result, seconds = prune_timed(model, ids, method, sparsity=SPARSITY, layers=layers, batch_size=8)
        rows.append(row("gpt2", label, f"sparsity {SPARSITY}", name, result, seconds,
                        relative_error(model, result.model, held, batch=8)))
        progress(rows[-1])
    return rows


def progress(r: dict) -> None:
    print(f"{r['part']}: {r['model']}, {r['target']}, {r['method']}: kept {r['kept']:.3f}, "
          f"error {r['error']:.4f}, {r['seconds']:.1f} s", file=sys.stderr, flush=True)


# -- the solver before/after (tolerance search of another source tree against this one) -------
def solver_child(case: str, quick: bool, final_refit: bool) -> dict:
    """The tolerance search on one case, with whichever nettrim is on the path (with
    ``final_refit``, this one's answer refit in full after the search: what was tried)."""
    from nettrim.methods import NetTrim

    if final_refit:
        from nettrim.solvers import obs_search, refit

        obs_search.FINAL_EFFORT = refit.FULL
    shape = QUICK if quick else FULL
    g = torch.Generator().manual_seed(1)
    if case.startswith("block"):
        model, d, n = mlp_block(shape["d"], shape["hidden"], "relu"), shape["d"], shape["rows"]
    else:
        torch.manual_seed(0)
        model, d, n = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                                    nn.Linear(100, 10)), 784, 2000
    x, held = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    eps = float(case.split("@")[1])
    result, seconds = prune_timed(model, x, NetTrim(support="obs", epsilon=eps))
    return dict(case=case, kept=1 - result.report.sparsity,
                layers_kept=[round(r.kept_fraction, 4) for r in result.report.layers],
                error=relative_error(model, result.model, held), seconds=seconds,
                passes=[r.info.get("passes") for r in result.report.layers],
                certified=not result.report.uncertified)


SOLVER_CASES = ("block@0.25", "block@0.3", "block@0.4", "mlp@0.03", "mlp@0.05", "mlp@0.1", "mlp@0.2", "mlp@0.3")
SOLVER_CODES = ("before", "after", "after + full refit")


def solver_compare(baseline: str, threads: int, quick: bool) -> dict:
    rows = []
    for case in SOLVER_CASES:
        for code in SOLVER_CODES:
            src = baseline if code == "before" else str(ROOT / "src")
            payload = json.dumps(dict(part="solver", case=case, threads=threads, quick=quick,
                                      final_refit=code.endswith("refit")))
            env = {**os.environ, "PYTHONPATH": src, "OMP_WAIT_POLICY": "PASSIVE"}
            proc = subprocess.Popen([sys.executable, __file__, "--child", payload], env=env,
                                    stdout=subprocess.PIPE, text=True)
            r = child_result(proc, f"solver {case} {code}")
            rows.append({**r, "code": code})
            print(f"solver {case} {code}: kept {r['kept']:.4f} error {r['error']:.4f} {r['seconds']:.1f} s",
                  file=sys.stderr, flush=True)
    return {**machine(), "baseline": baseline_commit(baseline), "quick": quick, "rows": rows}


def baseline_commit(src: str) -> str:
    marker = Path(src) / "COMMIT"
    return marker.read_text().strip() if marker.is_file() else Path(src).name


# -- the doc -------------------------------------------------------------------------------
def render(data: dict, solver: dict | None) -> str:
    """docs/scale.md from the JSON (``--doc``)."""
    lines = ["# Net-Trim at the size of users' layers", "",
             "Generated by `benchmarks/scale.py --doc` from `benchmarks/results/scale.json`"
             + (" and `scale_solver.json`" if solver else "") + "; do not edit by hand.", "",
             f"Measured in one run on {data['machine']} ({data['device']}), {data['threads']} thread(s), "
             f"torch {data['torch']}. Seconds are wall-clock seconds of `nettrim.api.prune` (streaming "
             "the statistics included); *x SparseGPT* is the ratio to SparseGPT at the same target in "
             "the same run; *error* is the relative output error on rows not used for pruning; "
             "*certified* is every layer's measured claim holding (SparseGPT and Wanda make none).", ""]
    for part, title, note in PARTS:
        rows = [r for r in data["rows"] if r["part"] == part]
        if not rows:
            continue
        shape = data["shape"]
        inputs_mb = shape["images"] * shape["channels"] * shape["side"] ** 2 * 4 / 2 ** 20
        lines += [f"## {title}", "", note.format(inputs_mb=inputs_mb, outputs_mb=2 * inputs_mb, columns=f"{rows[0].get('columns', 0):,}"), ""]
        if part == "conv":
            lines += ["| model | method | kept | error | seconds | x SparseGPT | peak RSS MiB (before prune) "
                      "| patch matrix MiB | rows used |", "|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {r['model']} | {r['method']} | {r['kept']:.3f} | {r['error']:.4f} | "
                             f"{r['seconds']:.1f} | {_ratio(r)} | {r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f}) | "
                             f"{r['patch_matrix_mb']:.0f} ({r['patch_rows']:,} x {r['columns']:,}) | {r['rows_used']:,} |")
        else:
            lines += ["| model | target | method | kept (per layer) | error | seconds | x SparseGPT | certified |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in rows:
                per = ", ".join(f"{k:.3f}" for k in r["layers_kept"]) if len(r["layers_kept"]) <= 2 else "..."
                lines.append(f"| {r['model']} | {r['target']} | {r['method']} | {r['kept']:.3f} ({per}) | "
                             f"{r['error']:.4f} | {r['seconds']:.1f} | {_ratio(r)} | {_flag(r['certified'])} |")
        lines.append("")
    if solver:
        lines += _solver_section(solver)
    return "\n".join(lines).rstrip() + "\n"


PARTS = [
    ("block", "Transformer MLP block", "nn.Sequential(Linear, act, Linear), default init, Gaussian rows. "
     "At the tolerance, Net-Trim (`support=\"obs\"`, default epsilon) chooses each layer's count; "
     "SparseGPT and Wanda are then given the same counts."),
    ("conv", "A ResNet-18-sized convolution", "One Conv2d without a ReLU of its own: a linear program "
     "from streamed Gram statistics ({columns} x {columns} whatever the number of patches, every "
     "patch row used: `max_rows` set to all of them), batches of 16 images. Each method ran in its own process, started before any other measurement; peak RSS "
     "is that process's `ru_maxrss` (torch and the {inputs_mb:.0f} MiB of inputs, twice that in the last row, included), with the value just "
     "before `prune` in brackets; the patch matrix is what holding every patch row in float32 "
     "would take. The last row has twice the images: twice the patch rows, the same Gram "
     "matrix; what grows is the layer's outputs on every calibration image, which the report "
     "holds twice (original and pruned, {outputs_mb:.0f} MiB in the first rows) to measure the "
     "network's output error."),
    ("gpt2", "GPT-2 from a transformers config", "`GPT2LMHeadModel(GPT2Config(n_layer=2, ...))`, "
     "random init, random token ids; its Conv1D layers (attention c_attn, c_proj; MLP c_fc, c_proj) "
     "pruned end to end in cascade (embeddings untied; lm_head left dense); error on the logits."),
]


SOLVER_NOTE = (
    "What changed (`nettrim.solvers.obs_search`, `nettrim.solvers.refit`). Before, each round of "
    "the search bisected tau on unrefit passes, then refit the best and up to four more passes with "
    "the full refit (the exact per-neuron ReLU refit where its flop count looked small, else eight "
    "majorization steps of twelve conjugate-gradient steps, or 96 conjugate-gradient steps for a "
    "linear program), and refit the dense start as well; the full refits were most of the time. "
    "Now every trial is a pass, one short batched refit (one majorization step of at most eight "
    "conjugate-gradient steps in the Gram matrix; eight conjugate-gradient steps for a linear "
    "program, stopped once a step gains under 1 % of what the steps gained) and one measurement; the "
    "next tau is regula falsi on the measured log(error / eps) against log tau, so a round takes three "
    "to five passes; a linear program, whose target does not depend on the answer, is searched once, "
    "from the closer of its original weights and the least-squares fit; a later round starts at the "
    "tau of the round before; the exact refit's cost now counts each neuron's own steps. The answer "
    "is the trial that passed, as measured by `LayerProblem.measure`: the certificate is the same "
    "measurement as before. Refitting the answer in full after the search (the third code below) "
    "costs time and raises the error on the other rows at the same support.")


def _solver_section(solver: dict) -> list[str]:
    lines = ["## The tolerance search before and after", "", SOLVER_NOTE, "",
             f"`NetTrim(support=\"obs\", epsilon=...)` without a target, the code of {solver['baseline']} "
             "(before) against this one (after; and with its answer refit in full after the search, "
             "`obs_search.FINAL_EFFORT = refit.FULL`, what was tried), each in its own process of one run "
             f"({solver['threads']} thread(s)): the ReLU block above and a 784-300-100-10 MLP "
             "(default init, 2,000 Gaussian rows, 2,000 others for the error).", "",
             "| case | code | kept (per layer) | error | seconds | passes per layer | certified |",
             "|---|---|---|---|---|---|---|"]
    for r in solver["rows"]:
        per = ", ".join(f"{k:.3f}" for k in r["layers_kept"])
        passes = ", ".join(str(p) for p in r["passes"])
        lines.append(f"| {r['case']} | {r['code']} | {r['kept']:.4f} ({per}) | {r['error']:.4f} | "
                     f"{r['seconds']:.1f} | {passes} | {_flag(r['certified'])} |")
    lines += ["", "At the same kept fraction: each answer of the other codes against the error the code "
              "before reaches there (linear in the kept fraction between its two nearest answers on the "
              "same model; only inside the range it covers).", "",
              "| case | code | kept | error | before, same kept | seconds / before's |", "|---|---|---|---|---|---|"]
    for r in solver["rows"]:
        if r["code"] == "before":
            continue
        model = r["case"].split("@")[0]
        curve = sorted((b["kept"], b["error"], b["seconds"]) for b in solver["rows"]
                       if b["code"] == "before" and b["case"].split("@")[0] == model)
        same = next(b for b in solver["rows"] if b["code"] == "before" and b["case"] == r["case"])
        ref = _interpolate(curve, r["kept"])
        lines.append(f"| {r['case']} | {r['code']} | {r['kept']:.4f} | {r['error']:.4f} | "
                     f"{'-' if ref is None else f'{ref:.4f}'} | {r['seconds'] / same['seconds']:.2f} |")
    return lines + [""]


def _interpolate(curve: list[tuple], kept: float) -> float | None:
    """The error of ``curve`` (sorted (kept, error, ...)) at ``kept``, linear between the two
    nearest points around it; None outside."""
    for (k0, e0, *_), (k1, e1, *_) in zip(curve, curve[1:]):
        if k0 <= kept <= k1 and k1 > k0:
            return e0 + (kept - k0) / (k1 - k0) * (e1 - e0)
    return None


def _ratio(r: dict) -> str:
    return "-" if r.get("ratio") is None else f"{r['ratio']:.2f}"


def _flag(value) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def write_doc(out: Path = OUT, doc: Path = DOC) -> Path:
    from nettrim.errors import require

    require(out.is_file(), f"{out} does not exist: run benchmarks/scale.py first")
    solver = json.loads(SOLVER_OUT.read_text()) if SOLVER_OUT.is_file() else None
    doc.write_text(render(json.loads(out.read_text()), solver))
    return doc


# -- entry point -----------------------------------------------------------------------------
PART_NAMES = ("block", "conv", "gpt2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="small shapes: a CI-sized run")
    parser.add_argument("--parts", default=",".join(PART_NAMES), help="comma-separated: block,conv,gpt2")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default benchmarks/results/scale.json; scale_solver.json "
                             "with --solver-compare)")
    parser.add_argument("--doc", action="store_true", help="write docs/scale.md from the JSON, measure nothing")
    parser.add_argument("--solver-compare", metavar="SRC", default=None,
                        help="measure the tolerance search of source tree SRC against this one")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        payload = json.loads(args.child)
        torch.set_num_threads(payload["threads"])
        if payload["part"] == "conv":
            out = conv_child(QUICK if payload["quick"] else FULL, payload["device"], payload["name"], payload["scale"])
        else:
            out = solver_child(payload["case"], payload["quick"], payload["final_refit"])
        print(json.dumps(out))
        return
    if args.doc:
        print(write_doc(args.out or OUT))
        return
    from nettrim.errors import require

    require(args.device == "cpu" or torch.cuda.is_available(), "--device cuda but no CUDA device is visible")
    if args.solver_compare:
        require(Path(args.solver_compare, "nettrim").is_dir(), f"{args.solver_compare} holds no nettrim package")
        data = solver_compare(args.solver_compare, args.threads, args.quick)
        write_json(args.out or SOLVER_OUT, data)
        return
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PART_NAMES))
    require(not unknown, f"unknown part {', '.join(unknown)}; choose from {', '.join(PART_NAMES)}")
    shape = QUICK if args.quick else FULL
    warm_up(args.device)
    rows = []
    if "conv" in parts:  # first: a child's ru_maxrss counts this process's size when it started
        rows += conv_part(shape, args.device, args.threads, args.quick)
    if "block" in parts:
        rows += block_part(shape, args.device)
    if "gpt2" in parts:
        rows += gpt2_part(shape, args.device)
    data = {**machine(), "device": args.device, "quick": args.quick, "shape": shape, "rows": with_ratios(rows)}
    write_json(args.out or OUT, data)


def warm_up(device: str) -> None:
    """One small prune of each method first, so that no measured call pays torch's first-call costs."""
    model = mlp_block(16, 32, "relu").to(device)
    x = torch.randn(64, 16).to(device)
    for method in methods().values():
        prune_timed(model, x, method, sparsity=SPARSITY)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
    print(path)


if __name__ == "__main__":
    run(main)
