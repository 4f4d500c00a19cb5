"""Sample complexity of exact recovery by the Net-Trim program (Aghasi et al., Theorem on
Gaussian inputs): how many samples P does the eps = 0 program need to recover an s-sparse neuron?

One neuron, Gaussian inputs X (P x N, i.i.d. N(0, 1)), an s-sparse w0 (uniform random support,
N(0, 1) values) and y = relu(X w0). The exact layer program

    minimize ||w||_1  s.t.  x_p^T w = y_p  (y_p > 0, the active set Omega),
                            x_p^T w <= 0   (y_p = 0)

is a linear program (w = w+ - w-, w+/- >= 0), solved here with HiGHS. Recovery means
||w - w0|| / ||w0|| < 1e-4. Theory says P = O(s log(N/s)) samples suffice, so recovery curves
plotted against P / (s log(N/s)) should collapse onto one curve; the 50 % crossing of that
curve, c, is fitted per s and summarised by its median.

On a few cells the same instances are also given to our ADMM solver (``trim_layer`` with a tiny
eps) to check that it finds the LP solution.

The NIPS version of the theorem states the sufficient count as (11 s + 7) mu log N (mu >= 1;
drawn at mu = 1, its smallest value). Both scales are compared with the measured 50 % points
P50(N, s) over four N: each form's constant c_form = median over (N, s) of P50 / form, and how
well the form collapses the data, max / min of P50 / form over (N, s) (1 = a perfect collapse).

Seeds: the full preset repeats the grid for 3 seeds (independent instances, 8 trials per cell
each; 24 in all per cell); tables give the mean over seeds ± half-range. It was changed from
N = 200, 500 with s up to 30 and 20 trials to N = 50, 100, 200, 400 with s = 2 and 5 and
P / (s log(N/s)) in 1.5..5 (where the success rate moves): the LPs near the transition take
1-20 s each on this shared machine for N >= 400 and s >= 10.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.optimize import linprog

from .common import SPREAD, begin_run, pm, seed_list, seeded_generator, stack, write_run

SUCCESS_TOL = 1e-4  # recovery: ||w - w0|| / ||w0|| < SUCCESS_TOL
DEFAULT_RATIOS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)
ADMM_EPS_REL = 1e-6  # ADMM's eps = ADMM_EPS_REL * ||y|| (trim_layer needs eps > 0)
AGREE_TOL = 1e-2  # ADMM "finds the LP solution": ||w_admm - w_lp|| / ||w_lp|| < AGREE_TOL

JSON_NAME = "sample_complexity.json"
PNG_NAME = "sample_complexity.png"


@dataclass(frozen=True)
class Preset:
    """A named experiment: one ``run`` per entry of ``runs`` (keyword arguments), then a plot."""

    name: str
    runs: tuple[dict, ...]
    workers: int = 1
    seeds: int = 1
    description: str = ""


QUICK_RATIOS = (0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)
QUICK = Preset(
    name="quick",
    runs=(dict(N=100, s_values=(3, 8), p_ratios=QUICK_RATIOS, trials=10),
          dict(N=50, s_values=(3, 8), p_ratios=QUICK_RATIOS, trials=6, check_admm=False)),
    workers=1,
    description="N = 100 and 50, s in {3, 8}, 10 and 6 trials per cell; one seed; a smoke run.",
)

FULL_RATIOS = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)
FULL = Preset(
    name="full",
    runs=tuple(dict(N=N, s_values=(2, 5), p_ratios=FULL_RATIOS, trials=8, admm_instances=1)
               for N in (50, 100, 200, 400)),
    workers=2, seeds=3,
    description="N = 50, 100, 200, 400, s = 2 and 5, P / (s log(N/s)) in 1.5..5; 3 seeds of 8 "
                "trials per cell (24 in all); ADMM check on 1 instance per cell and seed.",
)

PRESETS = {"quick": QUICK, "full": FULL}


# --------------------------------------------------------------------------------------------
# one instance


def s_log_n_over_s(N: int, s: int) -> float:
    """The theory's scale s log(N/s)."""
    return s * math.log(N / s)


def nips_count(N: int, s: int, mu: float = 1.0) -> float:
    """The NIPS paper's sufficient sample count (11 s + 7) mu log N."""
    return (11 * s + 7) * mu * math.log(N)


FORMS = {"s log(N/s)": s_log_n_over_s, "(11s+7) log N": nips_count}


def scaling(results: Sequence[dict]) -> dict:
    """The measured P50(N, s) of every run against both forms: per (N, s) the ratios
    P50 / form; per form the constant (median ratio) and the collapse max / min ratio.
    P50 outside the grid is NaN."""
    rows = []
    for r in results:
        for f in r["fit"]["per_s"]:
            p50 = float("nan") if f["P50"] is None else f["P50"]
            rows.append(dict(N=r["N"], s=f["s"], P50=p50,
                             **{name: p50 / form(r["N"], f["s"]) for name, form in FORMS.items()}))
    forms = {}
    for name in FORMS:
        v = np.array([row[name] for row in rows], float)
        v = v[np.isfinite(v)]
        forms[name] = dict(constant=float(np.median(v)) if len(v) else float("nan"),
                           collapse=float(v.max() / v.min()) if len(v) else float("nan"))
    return dict(rows=rows, forms=forms)


def make_instance(N: int, s: int, P: int, seed: int, trial: int):
    """(X (P, N), w0 (N,), y (P,)) for the key (seed, N, s, P, trial): reproducible in any order."""
    rng = seeded_generator((seed, N, s, P, trial))
    X = rng.standard_normal((P, N))
    w0 = np.zeros(N)
    w0[rng.choice(N, size=s, replace=False)] = rng.standard_normal(s)
    y = np.maximum(X @ w0, 0.0)
    return X, w0, y


def solve_exact_lp(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The eps = 0 Net-Trim program for one neuron, as a linear program solved by HiGHS.

        minimize 1^T (w+ + w-)  s.t.  X_Omega (w+ - w-) = y_Omega,  X_Omega^c (w+ - w-) <= 0,
                                     w+, w- >= 0,      Omega = {p : y_p > 0}.

    Args:
        X: (P, N) inputs, samples as rows.
        y: (P,) ReLU outputs (>= 0).
    Returns:
        w (N,). Raises RuntimeError when HiGHS does not report an optimum.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (P, N) and y (P,), got {X.shape} and {y.shape}")
    if (y < 0).any():
        raise ValueError("y must be a ReLU output (non-negative)")
    N = X.shape[1]
    A = np.hstack([X, -X])
    on = y > 0
    kw = {}
    if on.any():
        kw.update(A_eq=A[on], b_eq=y[on])
    if (~on).any():
        kw.update(A_ub=A[~on], b_ub=np.zeros(int((~on).sum())))
    res = linprog(np.ones(2 * N), bounds=(0, None), method="highs", **kw)
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"HiGHS did not solve the LP: {res.message}")
    return res.x[:N] - res.x[N:]


def relative_error(w: np.ndarray, w0: np.ndarray) -> float:
    return float(np.linalg.norm(w - w0) / np.linalg.norm(w0))


def _solve_cell(task: tuple[int, int, int, int, int]) -> dict:
    """All trials of one (s, P) cell; runs in a worker process when workers > 1."""
    N, s, P, trials, seed = task
    start = time.perf_counter()
    errors, failures = [], 0
    for t in range(trials):
        X, w0, y = make_instance(N, s, P, seed, t)
        try:
            errors.append(relative_error(solve_exact_lp(X, y), w0))
        except RuntimeError:
            failures += 1
            errors.append(float("inf"))
    ok = sum(e < SUCCESS_TOL for e in errors)
    return dict(s=s, P=P, successes=int(ok), trials=trials, rate=ok / trials, errors=errors,
                lp_failures=failures, seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# the fit


def fit_p50(P: Sequence[float], rate: Sequence[float]) -> float | None:
    """P at which the success rate crosses 50 %, by linear interpolation.

    Uses the last upward crossing (the rate stays >= 0.5 from there on), which ignores a noisy
    early blip. None when the rate is already >= 0.5 at the smallest P or never reaches it
    (the crossing lies outside the grid)."""
    P, rate = np.asarray(P, float), np.asarray(rate, float)
    above = rate >= 0.5
    if not above[-1] or above.all():
        return None
    i = int(np.flatnonzero(~above)[-1])  # last point below 0.5; i + 1 is >= 0.5
    p0, p1, r0, r1 = P[i], P[i + 1], rate[i], rate[i + 1]
    return float(p0 + (0.5 - r0) * (p1 - p0) / (r1 - r0))


def _grid(N: int, s_values, p_ratios, P_values) -> list[tuple[int, int, float]]:
    """(s, P, nominal ratio) cells; P rounded from the ratios unless P_values is given."""
    cells = []
    for s in s_values:
        scale = s_log_n_over_s(N, s)
        if P_values is not None:
            pairs = [(int(P), P / scale) for P in P_values]
        else:
            pairs = [(max(1, int(round(r * scale))), float(r)) for r in p_ratios]
        seen = set()
        for P, r in sorted(pairs):
            if P not in seen:
                seen.add(P)
                cells.append((int(s), P, r))
    return cells


# --------------------------------------------------------------------------------------------
# ADMM agreement


def _admm_check(N: int, cells: list[tuple[int, int, float]], instances: int, seed: int,
                eps_rel: float = ADMM_EPS_REL, max_iterations: int = 5000) -> dict:
    """Solve the first ``instances`` trials of each cell with trim_layer and compare with the LP."""
    import torch

    from ..layer import ADMMSettings, trim_layer

    settings = ADMMSettings(dtype=torch.float64, rel_tol=1e-6, abs_tol=1e-10,
                            max_iterations=max_iterations)
    rows = []
    for s, P, ratio in cells:
        for t in range(instances):
            X, w0, y = make_instance(N, s, P, seed, t)
            w_lp = solve_exact_lp(X, y)
            eps = max(eps_rel * float(np.linalg.norm(y)), 1e-12)
            start = time.perf_counter()
            res = trim_layer(torch.from_numpy(X), torch.from_numpy(y).reshape(-1, 1), eps,
                             relu=True, bias=False, per_neuron=True, settings=settings)
            sec = time.perf_counter() - start
            w_admm = res.weight[0].double().numpy()
            lp_err, admm_err = relative_error(w_lp, w0), relative_error(w_admm, w0)
            lp_ok, admm_ok = lp_err < SUCCESS_TOL, admm_err < SUCCESS_TOL
            rows.append(dict(
                s=s, P=P, ratio=P / s_log_n_over_s(N, s), nominal_ratio=ratio, trial=t, eps=eps,
                lp_rel_error=lp_err, admm_rel_error=admm_err,
                admm_vs_lp=float(np.linalg.norm(w_admm - w_lp) / max(np.linalg.norm(w_lp), 1e-300)),
                lp_recovered=bool(lp_ok), admm_recovered=bool(admm_ok), agree=bool(lp_ok == admm_ok),
                admm_near_lp=bool(np.linalg.norm(w_admm - w_lp) < AGREE_TOL * np.linalg.norm(w_lp)),
                admm_status=res.status, admm_iterations=int(res.iterations), admm_seconds=sec,
                admm_nnz=int(res.nnz), lp_nnz=int((np.abs(w_lp) > 1e-9 * np.abs(w_lp).max()).sum())
                if np.abs(w_lp).max() > 0 else 0))
    recovered = [r for r in rows if r["lp_recovered"]]
    return dict(
        eps_rel=eps_rel, settings=dict(dtype="float64", rel_tol=settings.rel_tol,
                                       abs_tol=settings.abs_tol,
                                       max_iterations=settings.max_iterations),
        instances=rows,
        n_instances=len(rows),
        n_agree=sum(r["agree"] for r in rows),
        n_lp_recovered=len(recovered),
        n_both_recovered=sum(r["admm_recovered"] for r in recovered),
        agree_tol=AGREE_TOL,
        n_near_lp_where_recovered=sum(r["admm_near_lp"] for r in recovered),
        max_admm_vs_lp_where_recovered=max((r["admm_vs_lp"] for r in recovered), default=None),
        max_admm_vs_lp=max((r["admm_vs_lp"] for r in rows), default=None),
    )


def _default_admm_cells(cells, s_values) -> list[tuple[int, int, float]]:
    """Middle s; its largest P, the cell nearest ratio 3 (transition) and nearest ratio 1."""
    s_mid = sorted(s_values)[len(s_values) // 2]
    row = [c for c in cells if c[0] == s_mid]
    picks = [row[-1]]
    for target in (3.0, 1.0):
        c = min(row, key=lambda c: abs(c[2] - target))
        if c not in picks:
            picks.append(c)
    return picks


# --------------------------------------------------------------------------------------------
# run


def run(*, N: int = 200, s_values: Sequence[int] = (2, 5, 10, 20),
        p_ratios: Sequence[float] | None = DEFAULT_RATIOS, P_values: Sequence[int] | None = None,
        trials: int = 20, seed: int = 0, check_admm: bool = True, admm_instances: int = 3,
        admm_cells: Sequence[tuple[int, int]] | None = None, admm_max_iterations: int = 5000,
        progress: bool = True,
        workers: int = 1) -> dict:
    """Recovery probability of the exact (eps = 0) program on a grid of (s, P) cells.

    Args:
        N: input dimension.
        s_values: sparsity levels (each < N).
        p_ratios: P / (s log(N/s)) values; each s gets P = round(ratio s log(N/s)).
        P_values: alternatively one absolute P grid shared by every s (overrides p_ratios).
        trials: random instances per cell.
        seed: base seed; instance (s, P, trial) uses the key (seed, N, s, P, trial).
        check_admm: also solve a few instances with trim_layer and compare with the LP.
        admm_instances: instances per ADMM cell (the first trials of the cell).
        admm_cells: (s, P) cells for the ADMM check; default: middle s at its largest P, at the
            ratio nearest 3 and nearest 1.
        admm_max_iterations: ADMM iteration cap (float64, rel_tol 1e-6, eps = 1e-6 ||y||). Where
            the LP does not recover w0 ADMM converges slowly and usually stops at the cap.
        progress: tqdm bar over cells.
        workers: processes for the LPs (results do not depend on it).

    Returns a JSON-ready dict: the cells (s, P, ratio, successes, rate, per-trial errors), the
    per-s 50 % crossing P50 and c = P50 / (s log(N/s)), their median, and the ADMM check.
    """
    from tqdm.auto import tqdm

    s_values = [int(s) for s in s_values]
    if any(not 1 <= s < N for s in s_values):
        raise ValueError(f"every s must be in [1, N), got {s_values} with N={N}")
    if P_values is None and not p_ratios:
        raise ValueError("give p_ratios or P_values")
    start = time.perf_counter()
    cpu0 = time.process_time()
    cells = _grid(N, s_values, p_ratios, P_values)
    tasks = [(N, s, P, trials, seed) for s, P, _ in cells]
    results: dict[tuple[int, int], dict] = {}
    bar = tqdm(total=len(tasks), desc=f"sample complexity N={N}", disable=not progress, unit="cell")
    if workers > 1:
        # biggest cells first for load balance; spawn: safe whatever threads the parent holds
        order = sorted(tasks, key=lambda t: -t[2])
        with mp.get_context("spawn").Pool(workers) as pool:
            for r in pool.imap_unordered(_solve_cell, order):
                results[(r["s"], r["P"])] = r
                bar.update()
    else:
        for task in tasks:
            r = _solve_cell(task)
            results[(r["s"], r["P"])] = r
            bar.update()
    bar.close()
    lp_seconds = time.perf_counter() - start

    out_cells = []
    for s, P, nominal in cells:
        r = results[(s, P)]
        out_cells.append(dict(s=s, P=P, ratio=P / s_log_n_over_s(N, s), nominal_ratio=nominal,
                              successes=r["successes"], trials=r["trials"], rate=r["rate"],
                              median_error=float(np.median(r["errors"])), errors=r["errors"],
                              lp_failures=r["lp_failures"], seconds=r["seconds"]))
    per_s = []
    for s in s_values:
        row = [c for c in out_cells if c["s"] == s]
        p50 = fit_p50([c["P"] for c in row], [c["rate"] for c in row])
        scale = s_log_n_over_s(N, s)
        per_s.append(dict(s=s, s_log_N_over_s=scale, P50=p50,
                          c=None if p50 is None else p50 / scale))
    cs = [f["c"] for f in per_s if f["c"] is not None]
    fit = dict(per_s=per_s, c_median=float(np.median(cs)) if cs else None,
               c_mean=float(np.mean(cs)) if cs else None,
               c_min=min(cs) if cs else None, c_max=max(cs) if cs else None, n_fitted=len(cs))

    admm = None
    if check_admm:
        if admm_cells is None:
            chosen = _default_admm_cells(cells, s_values)
        else:
            lookup = {(s, P): r for s, P, r in cells}
            chosen = [(int(s), int(P), lookup.get((int(s), int(P)), P / s_log_n_over_s(N, s)))
                      for s, P in admm_cells]
        t0 = time.perf_counter()
        admm = _admm_check(N, chosen, admm_instances, seed, max_iterations=admm_max_iterations)
        admm["seconds"] = time.perf_counter() - t0

    return dict(
        N=N, s_values=s_values, p_ratios=None if P_values is not None else [float(r) for r in p_ratios],
        P_values=None if P_values is None else [int(p) for p in P_values], trials=trials, seed=seed,
        success_tol=SUCCESS_TOL, workers=workers, cells=out_cells, fit=fit, admm=admm,
        lp_seconds=lp_seconds, seconds=time.perf_counter() - start,
        cpu_seconds_main=time.process_time() - cpu0,
    )


def success_by_ratio(result: dict) -> dict[float, dict[int, float]]:
    """{nominal ratio: {s: rate}} for one run's result (ratio grid runs)."""
    table: dict[float, dict[int, float]] = {}
    for c in result["cells"]:
        table.setdefault(round(c["nominal_ratio"], 4), {})[c["s"]] = c["rate"]
    return dict(sorted(table.items()))


# --------------------------------------------------------------------------------------------
# figure


def pooled(runs: Sequence[dict]) -> dict:
    """:func:`scaling` of the seeds pooled: per (N, s, P) cell the successes and trials summed
    over the seeds, P50 refitted on those rates (less noisy than any one seed's)."""
    results = []
    for i, first in enumerate(runs[0]["results"]):
        per_s = []
        for s in first["s_values"]:
            cells = [[c for c in r["results"][i]["cells"] if c["s"] == s] for r in runs]
            P = [c["P"] for c in cells[0]]
            rate = [sum(seed[j]["successes"] for seed in cells) /
                    sum(seed[j]["trials"] for seed in cells) for j in range(len(P))]
            per_s.append(dict(s=s, P50=fit_p50(P, rate)))
        results.append(dict(N=first["N"], fit=dict(per_s=per_s)))
    return scaling(results)


def plot(payload: dict):
    """One panel per N: success rate against P / (s log(N/s)) per s (mean over seeds, band the
    min-max over seeds). Last row: P50 against N per s with both forms at their fitted
    constants, and P50 / form against N (a flat line = the form has the right shape)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    st = stack(payload["runs"])
    results = st["results"]
    ncol = 2
    nrow = (len(results) + ncol - 1) // ncol + 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(13, 4.2 * nrow), squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("plasma")
    for ax, res in zip(axes[:-1].ravel(), results):
        N, s_values = res["N"][0], [v[0] for v in res["s_values"]]
        for i, s in enumerate(s_values):
            row = [c for c in res["cells"] if c["s"][0] == s]
            x = [c["ratio"][0] for c in row]
            v = np.array([c["rate"] for c in row], float)
            color = cmap(i / max(1, len(s_values) - 1) * 0.9)
            ax.plot(x, v.mean(1), "-o", ms=3, color=color, label=f"s = {s}")
            ax.fill_between(x, v.min(1), v.max(1), color=color, alpha=0.15)
        c = np.nanmean(np.array(res["fit"]["c_median"], float))
        ax.axhline(0.5, color="gray", lw=0.8, ls=":")
        ax.axvline(c, color="r", lw=1.2, label=f"c = {c:.2f} (mean over seeds)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([0.25, 0.5, 1, 2, 3, 4, 6, 8]))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
        ax.set_xlabel("P / (s log(N/s))")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"N = {N}: exact recovery, {len(payload['runs'])} x {res['trials'][0]} "
                     "trials per cell")
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[:-1].ravel()[len(results):]:
        ax.set_visible(False)
    ax_p, ax_r = axes[-1]
    rows = st["scaling"]["rows"]
    s_all = sorted({r["s"][0] for r in rows})
    consts = {k: np.nanmean(np.array(v["constant"], float)) for k, v in st["scaling"]["forms"].items()}
    Ns = np.array(sorted({r["N"][0] for r in rows}), float)
    for i, s in enumerate(s_all):
        color = cmap(i / max(1, len(s_all) - 1) * 0.9)
        sel = [r for r in rows if r["s"][0] == s]
        v = np.array([r["P50"] for r in sel], float)
        m = np.nanmean(v, 1)
        ax_p.errorbar([r["N"][0] for r in sel], m, yerr=[m - np.nanmin(v, 1), np.nanmax(v, 1) - m],
                      fmt="o", color=color, capsize=3, label=f"measured P50, s = {s}")
        ax_p.plot(Ns, [consts["s log(N/s)"] * s_log_n_over_s(int(n), s) for n in Ns], "-",
                  color=color, lw=1)
        ax_p.plot(Ns, [nips_count(int(n), s) for n in Ns], "--", color=color, lw=1)
        for name, style in (("s log(N/s)", "-o"), ("(11s+7) log N", "--s")):
            w = np.array([r[name] for r in sel], float)
            ax_r.plot([r["N"][0] for r in sel], np.nanmean(w, 1), style, ms=4, color=color,
                      label=f"P50 / {name}, s = {s}")
    ax_p.set_xscale("log")
    ax_p.set_yscale("log")
    ax_p.set_xlabel("input dimension N")
    ax_p.set_ylabel("samples P")
    ax_p.set_title(f"P50 (points) vs {consts['s log(N/s)']:.2f} s log(N/s) (solid) and "
                   "(11s+7) log N (dashed)")
    ax_p.grid(alpha=0.3, which="both")
    ax_p.legend(fontsize=7)
    ax_r.set_xscale("log")
    ax_r.set_yscale("log")
    for ax in (ax_p, ax_r):
        ax.xaxis.set_major_locator(FixedLocator(list(Ns)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax_r.set_xlabel("input dimension N")
    ax_r.set_ylabel("P50 / form")
    ax_r.set_title("a flat line: the form grows with N and s as the data do")
    ax_r.grid(alpha=0.3, which="both")
    ax_r.legend(fontsize=6, ncol=2)
    return fig


# --------------------------------------------------------------------------------------------
# entry point


def summarize(results: Sequence[dict]) -> dict:
    """One seed's summary: the fitted c per N, the ADMM counts and the success tables."""
    ad = [r["admm"] for r in results if r["admm"]]
    return dict(
        c_median_by_N={str(r["N"]): r["fit"]["c_median"] for r in results},
        admm_instances=sum(a["n_instances"] for a in ad),
        admm_lp_recovered=sum(a["n_lp_recovered"] for a in ad),
        admm_both_recovered=sum(a["n_both_recovered"] for a in ad),
        admm_near_lp_where_recovered=sum(a["n_near_lp_where_recovered"] for a in ad),
        admm_max_rel_diff_where_recovered=max(
            (a["max_admm_vs_lp_where_recovered"] for a in ad
             if a["max_admm_vs_lp_where_recovered"] is not None), default=None),
        success_by_ratio={str(r["N"]): {str(k): v for k, v in success_by_ratio(r).items()}
                          for r in results if r["p_ratios"] is not None})


def main(out_dir: Path, preset: str | Preset = "quick", seed: int = 0, *,
         progress: bool = True) -> dict:
    """Run a preset ("quick", "full" or a :class:`Preset`; ``p.seeds`` seeds from ``seed`` on)
    and write ``sample_complexity.json`` and ``.png`` into ``out_dir`` (atomically)."""
    p, out_dir, start = begin_run(out_dir, preset, PRESETS)
    workers = max(1, min(p.workers, os.cpu_count() or 1))
    runs = []
    for s in seed_list(seed, p.seeds):
        results = [run(**kw, seed=s, progress=progress, workers=workers) for kw in p.runs]
        runs.append(dict(seed=s, results=results, summary=summarize(results),
                         scaling=scaling(results)))
    payload = dict(experiment="sample_complexity", preset=p.name, seed=seed,
                   seeds=seed_list(seed, p.seeds), description=p.description,
                   success_tol=SUCCESS_TOL, runs=runs)
    return write_run(out_dir, payload, plot(payload), start, PNG_NAME, JSON_NAME)


def markdown_section(payload: dict) -> str:
    """The docs section: success against P / (s log(N/s)), the fitted c, both forms against
    the measured P50, and the ADMM check; mean over seeds ± half-range."""
    st = stack(payload["runs"])
    n = len(payload["runs"])
    lines = ["## Sample complexity of exact recovery", "",
             "```", f"nettrim experiment sample-complexity --preset {payload['preset']} "
                    "--out runs/sample-complexity", "```", "", payload["description"], "",
             f"Every number: {SPREAD} ({n} seed{'s' if n > 1 else ''}). Success rate against "
             "P / (s log(N/s)), each seed's mean over s:", ""]
    tables = [r["summary"]["success_by_ratio"] for r in payload["runs"]]
    Ns = list(tables[0])
    lines += ["| P / (s log(N/s)) | " + " | ".join(f"N={N}" for N in Ns) + " |",
              "|---" * (len(Ns) + 1) + "|"]
    for ratio in tables[0][Ns[0]]:
        cols = [pm([np.mean(list(t[N][ratio].values())) for t in tables]) for N in Ns]
        lines.append(f"| {float(ratio):g} | " + " | ".join(cols) + " |")
    c = st["summary"]["c_median_by_N"]
    lines += ["", "Fitted c (P at 50 % success / s log(N/s), median over s): " + ", ".join(
        f"N = {N}: {pm(c[N])}" for N in Ns) + ".", "",
        "The measured 50 % point against both forms of the theorem (NIPS form at mu = 1):", "",
        "| N | s | P50 | P50 / s log(N/s) | P50 / (11s+7) log N |", "|---|---|---|---|---|"]
    for r in st["scaling"]["rows"]:
        lines.append(f"| {r['N'][0]} | {r['s'][0]} | {pm(r['P50'], '.1f')} | "
                     f"{pm(r['s log(N/s)'])} | {pm(r['(11s+7) log N'], '.3f')} |")
    lines.append("")
    pool = pooled(payload["runs"])
    for name, f in st["scaling"]["forms"].items():
        q = pool["forms"][name]
        lines.append(f"- {name}: constant (median P50 / form) {pm(f['constant'], '.3f')}, "
                     f"collapse (max / min of P50 / form over N, s) {pm(f['collapse'])}; "
                     f"seeds pooled ({n} x the trials): constant {q['constant']:.3f}, collapse "
                     f"{q['collapse']:.2f}")
    a = {k: sum(np.atleast_1d(v)) for k, v in st["summary"].items()
         if k.startswith("admm_") and k != "admm_max_rel_diff_where_recovered"}
    mx = [v for v in st["summary"]["admm_max_rel_diff_where_recovered"] if v is not None] \
        if isinstance(st["summary"]["admm_max_rel_diff_where_recovered"], list) else []
    lines.append(f"- ADMM check (all seeds): {a['admm_instances']} instances, LP recovered "
                 f"{a['admm_lp_recovered']}, ADMM recovered {a['admm_both_recovered']} of those "
                 f"(< 1e-4), within {AGREE_TOL:g} of the LP on {a['admm_near_lp_where_recovered']}"
                 f" (max rel. difference {f'{max(mx):.1e}' if mx else 'n/a'})")
    return "\n".join(lines) + "\n"
