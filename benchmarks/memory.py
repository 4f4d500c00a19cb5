"""Benchmark: bounded-memory capture, and what one VGG fc6 layer would cost on a cluster.

1. ``lenet5``: the LeNet-5 of ``budget.py`` (MNIST, 8 epochs, training seed 0, the 5,000
   validation images held out) pruned with ``NetTrim()`` in cascade on all 55,000 other
   training images, each prune in a subprocess of its own (ru_maxrss only grows within a
   process; the three side by side): unbounded, ``max_memory="1GiB"`` and ``"64MiB"``
   (``RunOptions``). Per run: seconds, peak resident memory (ru_maxrss) and the peak before
   the prune (model and data loaded), each layer's rows kept of its rows, weights kept,
   certified layers, validation and test accuracy.
2. ``fc6``: the pieces of one Net-Trim solve of a 25,088 x 4,096 ReLU layer (VGG-16's fc6),
   timed at that shape on this machine with random inputs (the solver's cost does not depend
   on the values): the Gram matrix A^T A (float64) on 400 rows, the Cholesky inverse of the
   (N+1) x (N+1) system (timed at N/2 = 12,544: the full one needs ~25 GB, more than this
   machine gives a benchmark; scaled by N^3), and one ADMM iteration of a 512-neuron block
   (the products G^T R1, Kinv R2, A W3 in float32 for a 128-neuron block, G on 400 rows;
   scaled by rows and width). One real layer solve (``NetTrim(per_neuron=True).at_tolerance``
   on the layer's job: ``NetTrim()``'s settings, one ball per neuron) on a reduced layer of
   the same kind, 3,136 inputs x 64 neurons on 6,250 rows (fc6's ratio of rows to inputs,
   50,000 / 25,089: a ReLU program iterates on every row it holds; ReLU targets of a random
   layer on random ReLU inputs), gives the iteration count and checks the per-iteration
   model. The estimate for 50,000 rows on n nodes of 2 cores and 24 GiB combines them
   (``estimate``).

The committed benchmarks/results/memory.json predates the current core: it was made with the
earlier ``nettrim.prune`` (``nettrim.pruners``) and its layer solver
``nettrim.layer.trim_layer``, whose ADMM solves used at most 8,000 rows (``solve_rows``;
hence its reduced run on 1,000 rows and S = 8,000 in its estimate) and whose Ray backend split
fc6 into blocks of at least N / 8 neurons. A run of this script measures the current core.

Writes benchmarks/results/memory.json (each part its own key). Run:
`.venv/bin/python benchmarks/memory.py [--part lenet5|fc6|all]`
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from common import CORE, child_result, earlier, machine, run, start_child
from nettrim.report import write_json_atomic
from nettrim.scheme import peak_memory_mb
from nettrim.stream import bytes_per_row, row_limit

OUT = Path(__file__).parent / "results" / "memory.json"
NET = dict(arch="lenet5", dataset="mnist", epochs=8, dropout=0.0)
VALIDATION = 5000
BUDGETS = (None, "1GiB", "64MiB")
FC6 = dict(n_inputs=25088, n_outputs=4096, rows=50000, node_cores=2, node_gib=24)
SOLVE_ROWS = FC6["rows"]  # the rows a ReLU program's ADMM solves iterate on: all it holds
SOLVES = 3  # NetTrim(): one l1 solve and 2 reweighted ones, each forms its own Gram and inverse
NODES = (1, 4, 16, 64)


# -- part 1: LeNet-5 on 55,000 images ------------------------------------------------------------
def lenet5_child(budget: str | None) -> dict:
    """One prune of LeNet-5 on the 55,000 images in this process (``--child``)."""
    from nettrim import NetTrim, RunOptions, prune
    from nettrim.data import validation_split
    from nettrim.experiments import zoo
    from nettrim.models import evaluate

    model, _ = zoo.get_model(**NET, seed=0, validation=VALIDATION, progress=False)
    data = zoo.load_data("mnist")
    keep, val = validation_split(len(data.x_train), VALIDATION)
    xs = data.x_train[keep].contiguous()
    before = peak_memory_mb()
    t0 = time.perf_counter()
    options = RunOptions(max_memory=budget, progress=True)
    res = prune(model, xs, NetTrim(), mode="cascade", run=options)
    seconds = time.perf_counter() - t0
    rep = res.report
    return dict(max_memory=budget, samples=int(len(xs)), seconds=seconds, load_average=os.getloadavg(),
                peak_memory_mb=rep.peak_memory_mb, peak_before_prune_mb=before,
                kept=1 - rep.sparsity, certified=sum(r.certified for r in rep.layers),
                layers=[dict(name=r.name, kind=r.kind, rows_kept=r.rows, rows_total=r.rows_total,
                             rows_limit=rows_limit(options, r), certified=r.certified, kept=r.kept_fraction)
                        for r in rep.layers],
                dense_validation=evaluate(model, data.x_train[val], data.y_train[val]),
                validation=evaluate(res.model, data.x_train[val], data.y_train[val]),
                dense_test=evaluate(model, data.x_test, data.y_test),
                test=evaluate(res.model, data.x_test, data.y_test))


def rows_limit(run, layer) -> int | None:
    """The most rows ``run.max_memory`` lets the layer's program hold (a ReLU layer's; a
    linear program streams every row): ``nettrim.stream.row_limit`` at its N' and M."""
    if not layer.relu:
        return None
    n_in = math.prod(layer.shape[1:]) + int(layer.total > math.prod(layer.shape))  # the bias row
    return row_limit(run.row_plan(), n_in, layer.shape[0])


def lenet5() -> dict:
    """Each budget of ``BUDGETS`` in a subprocess of its own (its own ru_maxrss), side by side."""
    print(f"lenet5: pruning on 55,000 images with max_memory in {BUDGETS}, one process each ...", flush=True)
    procs = [start_child(__file__, budget or "none") for budget in BUDGETS]
    runs = []
    for budget, proc in zip(BUDGETS, procs):
        runs.append(child_result(proc, f"the LeNet-5 prune at max_memory={budget}"))
        r = runs[-1]
        print(f"  max_memory={r['max_memory']}: {r['seconds']:.0f} s, peak {r['peak_memory_mb']:.0f} MiB, "
              f"validation {r['validation']:.2f} %, test {r['test']:.2f} %", flush=True)
    return dict(net=NET, seed=0, validation_images=VALIDATION, mode="cascade", runs=runs)


# -- part 2: VGG fc6 -----------------------------------------------------------------------------
def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``fn()`` over ``repeat`` calls."""
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def fc6_pieces(rows: int = 400, block: int = 128) -> dict:
    """The solver's pieces at fc6's shape (module doc), seconds, with the sizes they ran at."""
    g = torch.Generator().manual_seed(0)
    n = FC6["n_inputs"] + 1
    A = torch.rand(rows, n, generator=g)
    gram = timed(lambda: A.double().T @ A.double())
    half = n // 2
    B = torch.rand(rows + half, half, generator=g, dtype=torch.float64)
    K = B.T @ B / (rows + half)
    K.diagonal().add_(1.0)
    del B
    inverse = timed(lambda: torch.cholesky_inverse(torch.linalg.cholesky(K)))
    del K
    Kinv = torch.rand(n, n, generator=g)
    G, R1 = torch.rand(rows, n, generator=g), torch.rand(rows, block, generator=g)
    R2 = torch.rand(n, block, generator=g)
    iteration = timed(lambda: A @ (G.T @ R1 + Kinv @ R2), repeat=2)
    return dict(gram_seconds=gram, gram_rows=rows, gram_n=n, inverse_seconds=inverse, inverse_n=half,
                iteration_seconds=iteration, iteration_rows=rows, iteration_block=block, iteration_n=n)


def reduced_run(n_inputs: int = 3136, n_outputs: int = 64, rows: int = 6250) -> dict:
    """A real layer solve (``NetTrim(per_neuron=True).at_tolerance``: ``NetTrim()``'s settings,
    one ball per neuron) on a random ReLU layer: fc6 / 8 inputs, rows / inputs as fc6 has
    (50,000 / 25,089)."""
    from nettrim import NetTrim
    from nettrim.methods import LayerJob
    from nettrim.program.stats import stats_of_rows
    from nettrim.scheme import certificate

    g = torch.Generator().manual_seed(0)
    X = torch.relu(torch.randn(rows, n_inputs, generator=g))
    W = torch.randn(n_outputs, n_inputs, generator=g) / math.sqrt(n_inputs)
    Y = torch.relu(X @ W.T)  # V = the pre-activation: NetTrim()'s margin 1
    job = LayerJob("fc6/8", "linear", True, stats_of_rows(X, Y, bias=False), W.T.contiguous(), False,
                   "parallel", True, False, (n_outputs, n_inputs))
    t0 = time.perf_counter()
    out = NetTrim(per_neuron=True).at_tolerance(job)
    seconds = time.perf_counter() - t0
    return dict(n_inputs=n_inputs, n_outputs=n_outputs, rows=rows, seconds=seconds,
                solver="Net-Trim layer solve", iterations=int(out.solver.iterations),
                certified=bool(certificate(job, out).holds), kept=float((out.U != 0).float().mean()),
                solver_seconds=out.solver.seconds)


def estimate(pieces: dict, reduced: dict) -> dict:
    """Wall time of fc6 (N' = 25,089 unknowns a neuron, M = 4,096 neurons, P = 50,000 rows)
    on n nodes, from the pieces timed at its shape.

    A block of w neurons costs, per solve (``SOLVES`` of them), its setup: A^T A and
    G = A Kinv, each t_gram S / s (S = ``SOLVE_ROWS`` rows the solves use, s the rows timed),
    and the inverse t_inv (N' / N_h)^3; then I iterations of c (2 S N' + N'^2) w seconds,
    c the seconds per multiply-add measured on one iteration at fc6's shape and I the
    reduced run's iterations per solve (its slowest neuron: every neuron is counted in every
    iteration, an upper bound, since converged neurons are frozen). Blocks run side by side,
    one a node: ceil(k / n) rounds of a block's time plus Ray's per-task overhead. k = 1 is
    what the current core does (a layer is one task); k = min(n, 16) what splitting a
    layer's neurons into blocks over the nodes would give. Not counted: the capture, the
    refit and the certificate (the reduced run's measured / predicted ratio shows how much
    the model leaves out at its size)."""
    n, M = FC6["n_inputs"] + 1, FC6["n_outputs"]
    S, s = SOLVE_ROWS, pieces["iteration_rows"]
    gram = pieces["gram_seconds"] * S / pieces["gram_rows"]
    inverse = pieces["inverse_seconds"] * (n / pieces["inverse_n"]) ** 3
    per_mac = pieces["iteration_seconds"] / ((2 * s * n + n * n) * pieces["iteration_block"])
    iterations = reduced["iterations"] / SOLVES
    overhead = ray_overhead()

    def block_seconds(n_, rows, w, scale_gram=1.0):
        setup = 2 * gram * scale_gram + pieces["inverse_seconds"] * (n_ / pieces["inverse_n"]) ** 3
        return SOLVES * (setup + iterations * per_mac * (2 * rows * n_ + n_ * n_) * w)

    nr = reduced["n_inputs"] + 1  # the reduced run, predicted the same way
    predicted = block_seconds(nr, reduced["rows"], reduced["n_outputs"],
                              scale_gram=(reduced["rows"] / S) * (nr / n) ** 2)
    table = []
    for nodes in NODES:
        for blocks in sorted({1, min(nodes, 16)}):
            w = math.ceil(M / blocks)
            rounds = math.ceil(blocks / nodes)
            table.append(dict(nodes=nodes, blocks=blocks, block_neurons=w,
                              hours=rounds * (block_seconds(n, S, w) + overhead) / 3600))
    per_row = bytes_per_row(n, M)
    return dict(solve_rows=S, solves=SOLVES, gram_seconds=gram, inverse_seconds=inverse,
                seconds_per_mac=per_mac, iterations_per_solve=iterations,
                ray_task_overhead_seconds=overhead,
                reduced_predicted_seconds=predicted, reduced_measured_seconds=reduced["seconds"],
                rows_gb=FC6["rows"] * per_row / 1e9, rows_in_2gib=2 ** 31 // per_row,
                system_gb=5 * n * n * 8 / 1e9, table=table)


def ray_overhead() -> float:
    """An upper bound on Ray's per-task overhead from distributed.json: the Ray run's seconds
    minus the one-thread local run's divided by the CPUs (a perfect split), per task (its
    ``ray_tasks``; the committed file's earlier core ran 3 layers and 2 blocks: 5 tasks).
    Uneven tasks count as overhead too, hence a bound."""
    d = json.loads((OUT.parent / "distributed.json").read_text())
    sec = {r["run"]: r["seconds"] for r in d["runs"]}
    ideal = sec["local, 1 thread"] / d["ray_cpus"]
    return max(0.0, (sec["ray, 2 workers x 1 thread"] - ideal) / d.get("ray_tasks", 5))


def fc6() -> dict:
    print("fc6: the solver's pieces at 25,088 x 4,096 ...", flush=True)
    torch.set_num_threads(FC6["node_cores"])
    pieces = fc6_pieces()
    print(f"  {pieces}", flush=True)
    print("fc6: a real layer solve on 3,136 x 64, 6,250 rows ...", flush=True)
    reduced = reduced_run()
    print(f"  {reduced}", flush=True)
    return dict(layer=FC6, pieces=pieces, reduced=reduced, peak_memory_mb=peak_memory_mb(), load_average=os.getloadavg(),
                estimate=estimate(pieces, reduced))


def lenet5_table(data: dict) -> str:
    """Markdown: each LeNet-5 prune on 55,000 images, its budget, rows kept, peak and accuracy."""
    d = data["lenet5"]
    names = [layer["name"] for layer in d["runs"][0]["layers"]]
    rows = [f"| max_memory | rows kept, layers {', '.join(names)} | peak memory (before the prune) | "
            "seconds | weights kept | layers certified | validation | test |",
            "|---|---|---|---|---|---|---|---|"]
    for r in d["runs"]:
        kept = " / ".join(f"{layer['rows_kept']:,}" for layer in r["layers"])
        rows.append(f"| {r['max_memory'] or 'none'} | {kept} | {r['peak_memory_mb'] / 1024:.2f} GiB "
                    f"({r['peak_before_prune_mb'] / 1024:.2f} GiB) | {r['seconds']:.0f} | "
                    f"{100 * r['kept']:.2f} % | {r['certified']} of {len(r['layers'])} | "
                    f"{r['validation']:.2f} % | {r['test']:.2f} % |")
    dense = d["runs"][0]
    rows.append(f"| dense | | | | 100 % | | {dense['dense_validation']:.2f} % | {dense['dense_test']:.2f} % |")
    return "\n".join(rows)


def fc6_table(data: dict) -> str:
    """Markdown: the pieces measured at fc6's shape, the reduced run, and the estimate by nodes."""
    d = data["fc6"]
    p, e, r = d["pieces"], d["estimate"], d["reduced"]
    ratio = e["reduced_measured_seconds"] / e["reduced_predicted_seconds"]
    rows = [f"| measured on this machine (2 threads; 5-minute load average {d['load_average'][1]:.0f} on its "
            "2 cores: other jobs and the LeNet-5 runs) | seconds |", "|---|---|",
            f"| A^T A, {p['gram_rows']} rows x {p['gram_n']:,} (float64) | {p['gram_seconds']:.2f} |",
            f"| Cholesky inverse, {p['inverse_n']:,} x {p['inverse_n']:,} (float64) | {p['inverse_seconds']:.1f} |",
            f"| one ADMM iteration, {p['iteration_block']} neurons, {p['iteration_rows']} rows x "
            f"{p['iteration_n']:,} (float32) | {p['iteration_seconds']:.2f} |",
            f"| real {r.get('solver', 'trim_layer')}, {r['n_inputs']:,} x {r['n_outputs']} on {r['rows']:,} rows: "
            f"{r['iterations']} iterations, {'certified' if r['certified'] else 'not certified'}, "
            f"{100 * r['kept']:.1f} % kept | {r['seconds']:.1f} (model: {e['reduced_predicted_seconds']:.1f}) |",
            f"| Ray's overhead per task, at most (distributed.json) | {e['ray_task_overhead_seconds']:.2f} |",
            "", "| memory of fc6 (a node has 24 GiB) | GB |", "|---|---|",
            f"| {d['layer']['rows']:,} rows at 16 N + 33 M + 12 bytes a row | {e['rows_gb']:.1f} |",
            f"| the N' x N' system while it is inverted (5 float64 copies) | {e['system_gb']:.1f} |",
            f"| rows that max_memory=2GiB keeps | {e['rows_in_2gib']:,} rows |",
            "", f"| nodes | blocks | neurons a block | hours, model | hours, model x {ratio:.1f} (the reduced "
            "run's measured / modelled seconds) |", "|---|---|---|---|---|"]
    for t in e["table"]:
        rows.append(f"| {t['nodes']} | {t['blocks']} | {t['block_neurons']:,} | {t['hours']:.1f} | "
                    f"{t['hours'] * ratio:.0f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", choices=["lenet5", "fc6", "all"])
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=OUT, help=f"result file (default {OUT}); parts it "
                                                          "already holds from this core and this run "
                                                          "does not make are kept")
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(lenet5_child(None if args.child == "none" else args.child)))
        return
    data = earlier(args.out)  # parts of this core that this run does not make are kept
    data.update(machine=machine(), core=CORE)
    if args.part in ("lenet5", "all"):
        data["lenet5"] = lenet5()
        write_json_atomic(args.out, data)
    if args.part in ("fc6", "all"):
        data["fc6"] = fc6()
        write_json_atomic(args.out, data)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run(main)
