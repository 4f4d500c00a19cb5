"""Do the Net-Trim guarantees hold on real networks, and how tight are they?

Trained MLPs (LeNet-300-100 and the deeper 784-300-300-300-10) are pruned with Net-Trim in
both schemes at a few relative tolerances g (eps_1 = g ||Y_1||_F). On the pruning (training)
samples and on as many held-out test samples, the pruned network's response at every layer is
compared with the original's, e_l = ||Yhat_l - Y_l||_F (layer outputs after the ReLU, logits
for the last layer, both networks fed the same images), against:

Parallel (every layer solved on the original network's inputs, V = 0):
* Proposition 1: ||relu(U_l^T X_l) - Y_l||_F <= eps_l on the layer's own (original) inputs.
* Theorem 1, general form: e_l <= eps_l + ||U_l||_2 e_(l-1) (recursively, e_0 = 0).
* Theorem 1 as printed, for link-normalized nets: e_L <= sum_l eps_l (not a theorem here).

Cascade (layer l solved on the pruned inputs Xhat_l, V = W_l^T Xhat_l,
eps_l^2 = gamma ||(W_l^T Xhat_l - Y_l)_Omega||^2):
* per-layer certificate: e_l <= sqrt(((1 + t) eps_l)^2 + (b_l + t eps_l)^2) with
  b_l = ||relu(W_l^T Xhat_l)_(Omega^c)||_F (measured), t the solver's feasibility tolerance.
* Theorem 2, general form: e_L <= eps_1 prod_(l>=2) sqrt(gamma) ||W_l||_2.
* Theorem 2 as printed, for link-normalized nets: e_L <= eps_1 sqrt(gamma^(L-1)); the
  experiment reports whether it holds on these (not normalized) networks.

Every "theorem" bound is applied to the returned weights with the solver's tolerance: a solve
is accepted when discrepancy <= eps (1 + t) and ||violations||_F <= t eps (t = 1e-3, plus a
1e-6 ||Y||_F floor), so eps_l is inflated to eps_l (1 + 2 t) + 1e-6 ||Y_l|| (and each cascade
factor by (1 + 2 t)); see ``nettrim.pruners.bounds`` for the derivations. On the training
samples these bounds must hold whenever every layer's status is "solved"; on test samples
nothing is guaranteed, and the ratio measured / bound shows how far they carry over.

The first layer's program is identical in both schemes, so it is solved once and shared.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..capture import capture_layer, trace_layers
from ..data import subset
from ..layer import ADMMSettings
from ..pruners import PruneResult, run_scheme
from ..pruners.base import LayerJob, LayerOutcome
from ..pruners.bounds import spectral_norm
from ..pruners.nettrim import NetTrimMethod
from . import zoo
from .common import SPREAD, AdmmPreset, begin_run, count_true, pm, seed_list, stack, write_run

JSON_NAME = "bounds.json"
PNG_NAME = "bounds.png"
FLOOR = 1e-6  # the solver's absolute slack, relative to ||Y_l||_F (layer.api._within)

# which checks are theorems for these networks (must hold on the pruning samples)
THEOREMS = {"parallel": ("prop1", "recursive"), "cascade": ("certificate", "general")}
PAPER_FORMS = {"parallel": "sum_eps", "cascade": "normalized"}


@dataclass(frozen=True)
class Preset(AdmmPreset):
    name: str
    nets: tuple[dict, ...]  # keyword arguments of zoo.get_model
    epsilons: tuple[float, ...]
    samples: int  # pruning (training) samples
    test_samples: int  # held-out samples for the out-of-sample comparison
    gamma: float = 1.1
    seeds: int = 1
    admm: tuple[tuple[str, float], ...] = ()  # ADMMSettings overrides
    description: str = ""


QUICK = Preset(
    name="quick",
    nets=(dict(arch="lenet-300-100", dataset="mnist", epochs=3, train_samples=10000),
          dict(arch="mlp-300-300-300", dataset="mnist", epochs=3, train_samples=10000)),
    epsilons=(0.05, 0.2), samples=256, test_samples=256, admm=(("rel_tol", 1e-2),),
    description="LeNet-300-100 and 784-300-300-300-10 trained 3 epochs on 10k MNIST images; "
                "pruned on 256 samples at g = 0.05, 0.2; ADMM rel_tol 1e-2.")

FULL = Preset(
    name="full",
    nets=(dict(arch="lenet-300-100", dataset="mnist", epochs=6, train_samples=None),
          dict(arch="mlp-300-300-300", dataset="mnist", epochs=6, train_samples=None)),
    epsilons=(0.02, 0.1, 0.2), samples=1000, test_samples=1000, admm=(("rel_tol", 1e-2),),
    seeds=3,
    description="LeNet-300-100 and 784-300-300-300-10 trained 6 epochs on all 60k MNIST images; "
                "pruned on 1,000 samples at g = 0.02, 0.1, 0.2; ADMM rel_tol 1e-2; 3 seeds "
                "(network and calibration draw; the grid was shrunk from four g to three to fit "
                "three seeds).")

PRESETS = {"quick": QUICK, "full": FULL}


# --------------------------------------------------------------------------------------------
# pruning both schemes, first layer shared


class _SharedFirstLayer:
    """Layer method wrapper: the first layer's outcome is computed once and reused (its program
    is the same in parallel and cascade: original inputs, V = 0, eps = g ||Y_1||)."""

    def __init__(self):
        self.outcome: LayerOutcome | None = None
        self.seconds = 0.0  # the one real solve
        self.call_seconds = 0.0  # the latest call (the solve, or a copy)

    def wrap(self, method: NetTrimMethod):
        def call(job: LayerJob) -> LayerOutcome:
            if not job.first:
                return method(job)
            t0 = time.perf_counter()
            if self.outcome is None:
                self.outcome = method(job)
                self.seconds = time.perf_counter() - t0
            self.call_seconds = time.perf_counter() - t0
            o = self.outcome
            return LayerOutcome(o.weight.clone(), None if o.bias is None else o.bias.clone(),
                                status=o.status, iterations=o.iterations, epsilon=o.epsilon,
                                info=dict(o.info, shared_first_layer=True))
        return call


def _settings_record(settings: ADMMSettings, epsilon, gamma, kappa, samples) -> dict:
    return dict(epsilon=epsilon, gamma=gamma, kappa=kappa, per_neuron=False, reweight=0,
                samples=int(samples), feasibility_tol=settings.feasibility_tol,
                admm={k: str(v) if isinstance(v, torch.dtype) else v
                      for k, v in asdict(settings).items()})


def nettrim_modes(model: nn.Module, inputs: torch.Tensor, *, epsilon: float, gamma: float = 1.1,
                  kappa: float = 1.0, settings: ADMMSettings | None = None,
                  modes: Sequence[str] = ("parallel", "cascade"), cleanup: bool = True,
                  progress: bool = False) -> dict[str, PruneResult]:
    """Net-Trim in each of ``modes`` (as the earlier core's ``nettrim.pruners.prune`` would), the first layer solved once.

    Each result's first-layer ``seconds`` is the shared solve's time (so per-mode timings stay
    comparable with separate runs), and ``report.seconds`` is corrected the same way: each
    mode's wall time is what it would have taken alone.
    """
    settings = settings or ADMMSettings()
    shared = _SharedFirstLayer()
    out = {}
    for mode in modes:
        method = NetTrimMethod(mode=mode, epsilon=epsilon, gamma=gamma, kappa=kappa,
                               settings=settings)
        res = run_scheme(model, inputs, shared.wrap(method), mode=mode, method_name="nettrim",
                         settings=_settings_record(settings, epsilon, gamma, kappa, len(inputs)),
                         cleanup=cleanup, progress=progress)
        res.report.seconds += shared.seconds - shared.call_seconds
        res.report.layers[0].seconds = shared.seconds
        out[mode] = res
    return out


# --------------------------------------------------------------------------------------------
# measurement


def layer_responses(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Every prunable layer's response on ``inputs``: ReLU output, or the raw output (logits)."""
    specs = trace_layers(model, inputs[:2])
    out = []
    for spec in specs:
        _, Z = capture_layer(model, spec.name, inputs)
        out.append(torch.relu(Z) if spec.relu else Z)
    return out


def layer_errors(original: nn.Module, pruned: nn.Module, inputs: torch.Tensor
                 ) -> tuple[list[float], list[float]]:
    """(e_l = ||Yhat_l - Y_l||_F, ||Y_l||_F) for every layer, both networks fed ``inputs``."""
    ref = layer_responses(original, inputs)
    new = layer_responses(pruned, inputs)
    return ([float((a.double() - b.double()).norm()) for a, b in zip(new, ref)],
            [float(b.double().norm()) for b in ref])


def _inactive_mass(original: nn.Module, pruned: nn.Module, name: str, relu: bool,
                   inputs: torch.Tensor) -> float:
    """b_l = ||relu(W_l^T Xhat_l)_(Omega^c)||_F: the original weights on the pruned network's
    inputs of layer ``name``, off the original active set (0 for the logits layer)."""
    if not relu:
        return 0.0
    _, Z = capture_layer(original, name, inputs)
    Xhat, _ = capture_layer(pruned, name, inputs)
    layer = original.get_submodule(name)
    V = Xhat @ layer.weight.detach().T + (0 if layer.bias is None else layer.bias.detach())
    off = Z <= 0  # Omega^c: the original response is 0
    return float((torch.relu(V.double()) * off).norm())


def analyse(original: nn.Module, result: PruneResult, mode: str, x_train: torch.Tensor,
            x_test: torch.Tensor, *, gamma: float, kappa: float = 1.0) -> dict:
    """Per-layer bounds of ``mode`` against the measured e_l on train and test samples."""
    specs = trace_layers(original, x_train[:2])
    reps = result.report.layers
    assert [r.name for r in reps] == [s.name for s in specs], "every layer must be pruned"
    tol = float(result.report.settings.get("feasibility_tol", 0.0))
    e_tr, n_tr = layer_errors(original, result.model, x_train)
    e_te, n_te = layer_errors(original, result.model, x_test)
    L = len(specs)
    rows = []
    rec = s = general = 0.0
    eps1 = None
    for l, (spec, rep) in enumerate(zip(specs, reps)):
        eps = rep.epsilon
        eps_eff = eps * (1 + 2 * tol) + FLOOR * rep.target_norm
        last = l == L - 1
        k = kappa if last else 1.0
        b: dict[str, float] = {}
        if mode == "parallel":
            U_norm = spectral_norm(result.model.get_submodule(spec.name).weight)
            rec = eps_eff + U_norm * rec
            s += eps
            b = dict(prop1=eps_eff, recursive=rec, sum_eps=s)
            norm_used = U_norm
        else:
            W_norm = spectral_norm(original.get_submodule(spec.name).weight)
            if l == 0:
                eps1 = eps
                general = eps_eff
            else:
                general *= math.sqrt(gamma) * (1 + 2 * tol) * W_norm * k
            bl = _inactive_mass(original, result.model, spec.name, spec.relu, x_train)
            e_on = (1 + tol) * eps + FLOOR * rep.target_norm
            cert = math.sqrt(e_on ** 2 + (bl + tol * eps + FLOOR * rep.target_norm) ** 2)
            b = dict(certificate=cert, general=general,
                     normalized=eps1 * math.sqrt(gamma ** l) * k)
            norm_used = W_norm
        # measured quantity each bound is compared with: Prop. 1 is about the layer on its own
        # (original) inputs; the others about the network response at layer l
        meas_train = {name: (rep.response_error if name == "prop1" else e_tr[l]) for name in b}
        row = dict(
            layer=spec.name, shape=rep.shape, relu=spec.relu, status=rep.status,
            iterations=rep.iterations, seconds=rep.seconds, nnz_before=rep.nnz_before,
            nnz_after=rep.nnz_after, kept=rep.nnz_after / max(rep.total, 1), epsilon=eps,
            epsilon_rel=eps / max(rep.target_norm, 1e-300), spectral_norm=norm_used,
            response_error=rep.response_error, target_norm=rep.target_norm,
            e_train=e_tr[l], e_test=e_te[l], norm_train=n_tr[l], norm_test=n_te[l],
            bounds=b,
            holds_train={name: bool(meas_train[name] <= v) for name, v in b.items()},
            tightness_train={name: meas_train[name] / v if v > 0 else None
                             for name, v in b.items()},
            holds_test={name: bool(e_te[l] <= v) for name, v in b.items() if name != "prop1"},
            tightness_test={name: e_te[l] / v if v > 0 else None for name, v in b.items()
                            if name != "prop1"})
        rows.append(row)
    out_row = rows[-1]
    theorems = THEOREMS[mode]
    solved = all(r["status"] == "solved" for r in rows)
    return dict(
        mode=mode, solved=solved, layers=rows, sparsity=result.report.sparsity,
        nnz_after=result.report.nnz_after, total=result.report.total,
        output_error_train=out_row["e_train"], output_norm_train=out_row["norm_train"],
        output_error_test=out_row["e_test"], output_norm_test=out_row["norm_test"],
        rel_error_train=out_row["e_train"] / out_row["norm_train"],
        rel_error_test=out_row["e_test"] / out_row["norm_test"],
        output_bounds={k: v for k, v in out_row["bounds"].items() if k != "prop1"},
        report_bound=result.report.bound,
        theorems=list(theorems), paper_form=PAPER_FORMS[mode],
        theorems_hold_train=all(r["holds_train"][t] for r in rows for t in theorems
                                if t in r["holds_train"]),
        paper_form_holds_train=out_row["holds_train"][PAPER_FORMS[mode]],
        paper_form_holds_test=out_row["holds_test"][PAPER_FORMS[mode]],
        general_holds_test=out_row["holds_test"]["recursive" if mode == "parallel" else "general"],
        seconds=result.report.seconds)


# --------------------------------------------------------------------------------------------
# run


def run_net(net: dict, epsilons: Sequence[float], *, samples: int, test_samples: int,
            gamma: float, seed: int, progress: bool = True, settings: ADMMSettings | None = None
            ) -> dict:
    """Train-or-load one network and check the bounds at every epsilon in both modes."""
    from tqdm.auto import tqdm

    model, info = zoo.get_model(**net, seed=seed, progress=progress)
    data = zoo.load_data(net["dataset"])
    x_tr, _ = subset(data.x_train, data.y_train, samples, seed=seed + 1)
    x_te, _ = subset(data.x_test, data.y_test, test_samples, seed=seed + 1)
    runs = []
    for eps in tqdm(epsilons, desc=f"bounds {net['arch']}", disable=not progress, unit="eps"):
        t0 = time.perf_counter()
        results = nettrim_modes(model, x_tr, epsilon=eps, gamma=gamma, settings=settings,
                                cleanup=False)
        entry = dict(epsilon=eps, seconds=time.perf_counter() - t0, modes={})
        for mode, res in results.items():
            entry["modes"][mode] = analyse(model, res, mode, x_tr, x_te, gamma=gamma)
        runs.append(entry)
    return dict(model=zoo.describe(info), arch=net["arch"], samples=samples,
                test_samples=test_samples, runs=runs)


def summarize(nets: list[dict]) -> dict:
    """The table of the docs, plus every failed check with the solver status of its layer (a
    theorem bound is guaranteed only when every layer up to it reached "solved")."""
    rows, all_hold, solved_hold, violations = [], True, True, []
    for net in nets:
        for r in net["runs"]:
            for mode, a in r["modes"].items():
                ob = a["output_bounds"]
                general = ob["recursive" if mode == "parallel" else "general"]
                paper = ob[a["paper_form"]]
                all_hold &= a["theorems_hold_train"]
                solved_hold &= a["theorems_hold_train"] or not a["solved"]
                for layer in a["layers"]:
                    violations += [dict(arch=net["arch"], epsilon=r["epsilon"], mode=mode,
                                        layer=layer["layer"], check=name,
                                        status=layer["status"], bound=layer["bounds"][name],
                                        measured=layer["response_error"] if name == "prop1"
                                        else layer["e_train"])
                                   for name in a["theorems"] if not layer["holds_train"][name]]
                rows.append(dict(
                    arch=net["arch"], epsilon=r["epsilon"], mode=mode, solved=a["solved"],
                    status=[layer["status"] for layer in a["layers"]],
                    sparsity=a["sparsity"], rel_error_train=a["rel_error_train"],
                    rel_error_test=a["rel_error_test"],
                    bound_general_rel=general / a["output_norm_train"],
                    bound_paper_rel=paper / a["output_norm_train"],
                    tightness_general_train=a["output_error_train"] / general,
                    tightness_general_test=(a["output_error_test"] / a["output_norm_test"])
                    / (general / a["output_norm_train"]),
                    theorems_hold_train=a["theorems_hold_train"],
                    general_holds_test=a["general_holds_test"],
                    paper_form_holds_train=a["paper_form_holds_train"],
                    paper_form_holds_test=a["paper_form_holds_test"]))
    return dict(all_theorems_hold_train=bool(all_hold),
                theorems_hold_where_solved=bool(solved_hold), violations=violations,
                unsolved=[dict(arch=r["arch"], epsilon=r["epsilon"], mode=r["mode"])
                          for r in rows if not r["solved"]],
                table=rows,
                paper_cascade_form_holds_train=[r["paper_form_holds_train"] for r in rows
                                                if r["mode"] == "cascade"],
                min_tightness=min(r["tightness_general_train"] for r in rows),
                max_tightness=max(r["tightness_general_train"] for r in rows))


def plot(payload: dict):
    """Per network and scheme: measured output discrepancy (train, test) and the bounds against
    g, relative to ||Y_L||; lines are means over seeds, bands the min-max over seeds."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    nets = stack(payload["runs"])["nets"]
    fig, axes = plt.subplots(len(nets), 2, figsize=(12, 4.2 * len(nets)), squeeze=False,
                             layout="constrained")
    styles = {"recursive": ("r-", "Thm 1 general: eps_l + ||U_l|| e_(l-1)"),
              "sum_eps": ("m:", "Thm 1 normalized: sum eps_l"),
              "general": ("r-", "Thm 2 general: eps_1 prod sqrt(g)||W_l||"),
              "normalized": ("m:", "Thm 2 normalized: eps_1 sqrt(g^(L-1))"),
              "certificate": ("g--", "per-layer certificate")}

    def band(ax, eps, values, style, label):
        v = np.asarray(values, float)
        line, = ax.plot(eps, v.mean(1), style, label=label)
        if v.shape[1] > 1:
            ax.fill_between(eps, v.min(1), v.max(1), color=line.get_color(), alpha=0.15)

    for (ax_p, ax_c), net in zip(axes, nets):
        eps = [r["epsilon"][0] for r in net["runs"]]
        for ax, mode in ((ax_p, "parallel"), (ax_c, "cascade")):
            A = [r["modes"][mode] for r in net["runs"]]
            band(ax, eps, [a["rel_error_train"] for a in A], "k-o", "measured, train")
            band(ax, eps, [a["rel_error_test"] for a in A], "b--s", "measured, test")
            for name in A[0]["output_bounds"]:
                style, label = styles[name]
                band(ax, eps, [np.divide(a["output_bounds"][name], a["output_norm_train"])
                               for a in A], style, label)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(FixedLocator(eps))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("relative eps g (first layer)")
            ax.set_ylabel("||Yhat_L - Y_L||_F / ||Y_L||_F")
            ax.set_title(f"{net['arch']}: {mode}")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    return fig


def main(out_dir: Path, preset: str | Preset = "quick", seed: int = 0, *,
         progress: bool = True) -> dict:
    """Run a preset ("quick", "full", or a :class:`Preset`; ``p.seeds`` seeds from ``seed`` on)
    and write ``bounds.json`` and ``bounds.png`` into ``out_dir`` (atomically)."""
    p, out_dir, start = begin_run(out_dir, preset, PRESETS)
    runs = []
    for s in seed_list(seed, p.seeds):
        nets = [run_net(net, p.epsilons, samples=p.samples, test_samples=p.test_samples,
                        gamma=p.gamma, seed=s, progress=progress, settings=p.settings())
                for net in p.nets]
        runs.append(dict(seed=s, nets=nets, summary=summarize(nets)))
    payload = dict(experiment="bounds", preset=p.name, seed=seed, seeds=seed_list(seed, p.seeds),
                   description=p.description, gamma=p.gamma, admm=dict(p.admm), samples=p.samples,
                   test_samples=p.test_samples, epsilons=list(p.epsilons), theorems=THEOREMS,
                   paper_forms=PAPER_FORMS, runs=runs)
    return write_run(out_dir, payload, plot(payload), start, PNG_NAME, JSON_NAME)


def _yes(flags) -> str:
    """"yes" when every seed says so, "NO" when none does, else "k of n"."""
    flags = [bool(f) for f in flags]
    return "yes" if all(flags) else "NO" if not any(flags) else count_true(flags)


def markdown_section(payload: dict) -> str:
    """The docs section: one table row per (net, g, scheme), mean over seeds ± half-range."""
    st = stack(payload["runs"])
    n = len(payload["runs"])
    lines = ["## Bounds: Proposition 1, Theorems 1 and 2 against the measured discrepancy", "",
             "```", f"nettrim experiment bounds --preset {payload['preset']} --out runs/bounds",
             "```", "", payload["description"], "",
             "Relative output discrepancy ||Yhat_L - Y_L||_F / ||Y_L||_F; the general bound is "
             "Theorem 1's recursion (parallel) or Theorem 2's eps_1 prod sqrt(gamma)||W_l||_2 "
             "(cascade); the paper form is sum eps_l (parallel) or eps_1 sqrt(gamma^(L-1)) "
             "(cascade), theorems only for link-normalized nets. Every number: "
             f"{SPREAD} ({n} seed{'s' if n > 1 else ''}); 'holds' says in how many seeds.", "",
             "| net | g | mode | removed % | measured train | measured test | general bound | "
             "train/bound | paper form | paper form holds (train / test) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in st["summary"]["table"]:
        lines.append(
            f"| {r['arch']} | {r['epsilon'][0]:g} | {r['mode']}{'' if all(r['solved']) else ' (*)'} | "
            f"{pm(r['sparsity'], '.1f', 100)} | {pm(r['rel_error_train'], '.4f')} | "
            f"{pm(r['rel_error_test'], '.4f')} | {pm(r['bound_general_rel'], '.3f')} | "
            f"{pm(r['tightness_general_train'], '.3f')} | {pm(r['bound_paper_rel'], '.4f')} | "
            f"{_yes(r['paper_form_holds_train'])} / {_yes(r['paper_form_holds_test'])} |")
    s = st["summary"]
    lines += ["", f"- every theorem bound holds on the pruning samples: "
                  f"{count_true(s['all_theorems_hold_train'])} seeds; where every layer was "
                  f"solved: {count_true(s['theorems_hold_where_solved'])} seeds"]
    for run in payload["runs"]:
        for v in run["summary"]["violations"]:
            lines.append(f"- failed check (seed {run['seed']}): {v['arch']}, g = {v['epsilon']:g}, "
                         f"{v['mode']}, layer {v['layer']} ({v['status']}): {v['check']} bound "
                         f"{v['bound']:.4g}, measured {v['measured']:.4g}")
    t = [r["summary"]["min_tightness"] for r in payload["runs"]]
    u = [r["summary"]["max_tightness"] for r in payload["runs"]]
    lines.append(f"- tightness (measured / general bound) ranges {min(t):.2g} - {max(u):.2g} "
                 "over all rows and seeds")
    if not all(all(r["solved"]) for r in st["summary"]["table"]):
        lines.append("- (*) a layer stopped at the iteration cap in at least one seed: its "
                     "bounds are not guaranteed there")
    return "\n".join(lines) + "\n"
