"""Net-Trim (Aghasi, Abdi, Nguyen, Romberg 2017; Aghasi, Abdi, Romberg 2020) as a method.

Each layer gets the Net-Trim program with a tolerance set by the scheme:

* parallel, and the first layer in cascade: eps_l = epsilon ||Y_l||_F (relative ``epsilon``;
  a layer's own ``layer_epsilon`` replaces it);
* cascade, later layers: eps_l = sqrt(gamma) ||(W_l^T Xhat - Y_l)_Omega||_F, the discrepancy
  of the original weights on the pruned network's inputs inflated by gamma >= 1 (so the
  original weights stay feasible), with ``layer_epsilon`` as a floor;
* the logits layer: eps_L times the risk factor ``kappa`` in (0, 1].

With ``per_neuron`` a layer has one ball per neuron: eps_m = eps ||Y_m|| / ||Y|| (same layer
total), or in cascade the rule neuron by neuron. A ReLU layer keeps its inactive entries below
V = relu(Z) + theta min(Z, 0), Z = W^T X (``margin`` = theta; ``None`` is the papers' V:
0 for parallel and the first layer, W^T Xhat later in cascade).

How the support is chosen (``support``):

* "obs": OBS passes (SparseGPT's blocked OBS over the layer's Gram matrix) under the
  tolerance, ReLU-aware by rounds (``nettrim.solvers.obs_search``); always refit;
* "l1": the convex program itself, by ADMM, with ``reweight`` rounds of reweighted l1
  (``nettrim.solvers.l1``); ``refit`` sets the values on the support afterwards.

With ``refit`` (and always with "obs") a ReLU layer's claim is the hinge ball
sqrt(d^2 + h^2) <= eps; without it the exact program's d <= eps and h ~ 0. Either way the
claim is measured on the returned weights (``nettrim.program.constraint``).

At a count (``sparsity`` or ``counts``) there is no tolerance: "obs" prunes to the count with
SparseGPT's per-block rule, ReLU-aware by rounds, refit; "l1" searches the relative eps whose
l1 support has just more than the count, thresholds to it and refits. The layer's claim is
then its measured value: the bound it certifies is the one it reached.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..errors import NettrimError
from ..options import Flag, FlagOrNames, Instance, Integer, NameMap, OneOf, Real, options
from ..program import Constraint
from ..solvers import obs_search
from ..solvers.admm import ADMMSettings, SolverInfo
from ..solvers.l1 import group_penalty, l1_support
from ..solvers.refit import refit
from ..solvers.threshold import threshold_U
from ..status import Status
from .base import LayerJob, LayerOutcome, Method

STRUCTURES = ("weights", "units")


@options
class NetTrim(Method):
    """Net-Trim (module docstring for the rules).

    Options:
        epsilon: relative tolerance, eps_l = epsilon ||Y_l||_F (parallel; the first layer in
            cascade). gamma: cascade inflation >= 1 of the later layers' eps. kappa: risk
            factor in (0, 1] on the logits layer's eps.
        support: "obs" or "l1" (module docstring).
        reweight: rounds of reweighted l1 after the first solve ("l1").
        refit: refit the values on the chosen support ("l1"; "obs" always refits).
        margin: theta in [0, 1] of every ReLU layer's V; None: the papers' V.
        per_neuron: one ball per neuron, in every layer (True) or in the layers named.
        layer_epsilon: relative eps per layer name (a floor for later cascade layers).
        damp: relative damping of the Gram matrix in the OBS passes ("obs").
        rounds: ReLU-aware rounds of the OBS search ("obs").
        settings: the ADMM settings ("l1"). max_solves: solves of the eps search at a count ("l1").
        structure: "weights", or "units" (group l1 per input unit, unread units then removed;
            docs/structured.md; "l1" only).
    """

    epsilon: float = 0.4
    gamma: float = 1.1
    kappa: float = 1.0
    support: str = "l1"
    reweight: int = 2
    refit: bool = True
    margin: float | None = 1.0
    per_neuron: bool | tuple = False
    layer_epsilon: dict | None = None
    damp: float = 0.01
    rounds: int = 2
    settings: ADMMSettings = ADMMSettings()
    max_solves: int = 8
    structure: str = "weights"

    name: ClassVar[str] = "nettrim"
    needs_target: ClassVar[bool] = False
    CHECKS: ClassVar = dict(
        epsilon=Real(gt=0), gamma=Real(ge=1), kappa=Real(gt=0, le=1), support=OneOf("obs", "l1"),
        reweight=Integer(ge=0), refit=Flag(), margin=Real(ge=0, le=1, none=True),
        per_neuron=FlagOrNames(), layer_epsilon=NameMap(Real(gt=0)), damp=Real(gt=0),
        rounds=Integer(ge=1), settings=Instance(ADMMSettings), max_solves=Integer(ge=1),
        structure=OneOf(*STRUCTURES))

    def validate(self) -> None:
        if self.structure == "units" and self.support != "l1":
            raise NettrimError("NetTrim(structure='units') needs the group-l1 program: "
                               "pass support='l1'")

    @classmethod
    def paper(cls, epsilon: float = 0.05, gamma: float = 1.1, kappa: float = 1.0,
              settings: ADMMSettings | None = None) -> "NetTrim":
        """The seeds' program exactly: min ||U||_1 within eps by ADMM, V by the scheme, one
        ball per layer, no reweighting, no refit."""
        return cls(epsilon=epsilon, gamma=gamma, kappa=kappa, support="l1", reweight=0,
                   refit=False, margin=None, settings=settings or ADMMSettings())

    def layer_names(self) -> set[str]:
        names = set(self.layer_epsilon or ())
        return names | set(self.per_neuron) if not isinstance(self.per_neuron, bool) else names

    # -- the scheme's rules ---------------------------------------------------------------
    def per_neuron_in(self, job: LayerJob) -> bool:
        return self.per_neuron if isinstance(self.per_neuron, bool) else job.name in self.per_neuron

    def theta(self, job: LayerJob) -> float | None:
        """theta of V = relu(W^T X) + theta min(W^T X, 0); None for V = 0."""
        if not job.relu:
            return None
        if self.margin is not None:
            return self.margin
        return None if job.mode == "parallel" or job.first else 1.0

    def inactive(self, job: LayerJob) -> str:
        if not job.relu:
            return "none"
        return "hinge" if self.refit or self.support == "obs" else "halfspace"

    def radii(self, job: LayerJob) -> torch.Tensor:
        """The absolute ball radii of the layer: (1,) or, per neuron, (M,) (module docstring)."""
        norms = job.stats.target_sq.sqrt()
        own = (self.layer_epsilon or {}).get(job.name)
        later = job.mode == "cascade" and not job.first
        if not self.per_neuron_in(job):
            total = float(norms.norm())
            if later:
                eps = max(math.sqrt(self.gamma) * float(job.gap.norm()), (own or 0.0) * total, 1e-6 * total)
            else:
                eps = (self.epsilon if own is None else own) * total
            return torch.tensor([eps * (self.kappa if job.last else 1.0)], dtype=torch.float64)
        if later:
            r = torch.maximum(math.sqrt(self.gamma) * job.gap, (own or 0.0) * norms)
            r = r.clamp_min(1e-6 * float(norms.norm()) / math.sqrt(len(norms)))
        else:
            r = (self.epsilon if own is None else own) * norms
        return (r * (self.kappa if job.last else 1.0)).double().cpu()

    def constraint(self, job: LayerJob, eps: torch.Tensor | None = None, inactive: str | None = None) -> Constraint:
        """The layer's claim: its radii (or ``eps``) and inactive side (or ``inactive``)."""
        radii = self.radii(job) if eps is None else eps
        return Constraint(radii, self.per_neuron_in(job), inactive or self.inactive(job),
                          self.settings.feasibility_tol)

    # -- the two entry points --------------------------------------------------------------
    def at_tolerance(self, job: LayerJob) -> LayerOutcome:
        problem = job.problem(self.constraint(job), self.theta(job))
        if self.support == "obs":
            found = obs_search.at_tolerance(problem, damp=self.damp, rounds=self.rounds)
            if not found.holds:
                raise NettrimError(self._infeasible(job, problem, found.U))
            status = Status.SOLVED
            return LayerOutcome(found.U, status, problem.constraint, self.theta(job),
                                info={"passes": found.passes})
        penalty = (group_penalty(self.groups(job).to(job.weight.device), job.bias)
                   if self.structure == "units" else None)
        exact = job.problem(self.constraint(job, inactive="halfspace" if job.relu else "none"), self.theta(job))
        out = l1_support(exact, self.settings, rounds=self.reweight, refit_on=problem if self.refit else None,
                         start=self._start(job), **({} if penalty is None else {"penalty": penalty}))
        if out.info.status == Status.INFEASIBLE:
            raise NettrimError(self._infeasible(job, problem, out.U))
        return LayerOutcome(out.U, out.info.status, problem.constraint, self.theta(job), out.info)

    def at_count(self, job: LayerJob, keep: int) -> LayerOutcome:
        if self.structure != "weights":
            raise NettrimError(f"structure={self.structure!r} applies to Net-Trim's tolerance, not to a "
                               "sparsity or counts target: drop sparsity/counts and set epsilon")
        if self.layer_epsilon:
            raise NettrimError("layer_epsilon applies to Net-Trim's tolerance, not to a sparsity or counts target")
        theta = self.theta(job)
        probe = job.problem(self.constraint(job), theta)
        info = {}
        if keep == 0:
            U = torch.zeros_like(job.weight)
        elif self.support == "obs":
            U, info = obs_search.at_count(probe, keep, damp=self.damp)
        else:
            exact = job.problem(self.constraint(job, inactive="halfspace" if job.relu else "none"), theta)
            U = self._l1_at_count(job, exact, probe, keep)
        measured = probe.constraint.bounded(probe.measure(U)) * (1 + 1e-6)
        claim = self.constraint(job, measured.double().cpu())
        return LayerOutcome(U, Status.SOLVED, claim, theta, measured_claim=True, info=info)

    # -- helpers ---------------------------------------------------------------------------
    def _start(self, job: LayerJob):
        """Cascade layers after the first start from the original weights (measured: 3x fewer
        ADMM iterations); elsewhere the ridge solution starts better."""
        return job.weight if job.mode == "cascade" and not job.first else None

    def groups(self, job: LayerJob) -> torch.Tensor:
        """The layer's input-unit groups: those of the model's unit plan (``job.groups``: a
        Linear behind a Flatten, H x W features per channel), else a Conv2d's input channels,
        a Linear's features."""
        if job.groups is not None:
            return job.groups
        dev = job.weight.device
        if job.kind == "conv2d" and len(job.shape) == 4:
            _, c_in, kh, kw = job.shape
            return torch.arange(c_in, device=dev).repeat_interleave(kh * kw)
        return torch.arange(job.weight.shape[0] - int(job.bias), device=dev)

    def _l1_at_count(self, job: LayerJob, exact, probe, keep: int) -> torch.Tensor:
        """The relative eps whose l1 support holds just more than ``keep`` (log-log
        interpolation between the nearest solves either side, at most ``max_solves``), then
        the support thresholded to ``keep`` (or grown by the largest original weights) and refit."""
        norm = job.target_norm
        tried: list[tuple[float, int, torch.Tensor]] = []
        g, start = 0.1, None
        while len(tried) < self.max_solves:
            p = exact.with_eps(torch.tensor([g * norm], dtype=torch.float64))
            out = l1_support(p, self.settings, rounds=self.reweight, start=start)
            nnz = int((out.U != 0).sum())
            tried.append((g, nnz, out.U))
            start = out.U
            if keep <= nnz <= 1.15 * keep:
                break
            g = _next_eps(tried, keep)
        above = [t for t in tried if t[1] >= keep]
        _, _, U = min(above, key=lambda t: t[1]) if above else max(tried, key=lambda t: t[1])
        U = threshold_U(U, keep, bias=job.bias) if above else _fill(U, job.weight, keep)
        return refit(probe, U)

    def _infeasible(self, job: LayerJob, problem, U) -> str:
        """The one-line error for a linear layer whose least-squares fit misses its ball(s)."""
        m = problem.measure(U)
        if not problem.constraint.per_neuron:
            need = m.d / (problem.constraint.radius / self.kappa) if job.last else math.nan
            return (f"layer '{job.name}' is infeasible: eps = {problem.constraint.radius:.4g} but the best "
                    f"least-squares fit misses by {m.d:.4g}; raise kappa to at least {need:.3f} (or epsilon)")
        ratio = m.discrepancy / problem.constraint.eps.to(m.discrepancy).clamp_min(1e-30)
        k = int(ratio.argmax())
        return (f"layer '{job.name}' is infeasible with one ball per neuron: the best least-squares fit "
                f"of neuron {k} misses by {float(ratio[k]):.3g} times its radius; raise this layer's eps "
                f"by that factor (epsilon, kappa or its layer_epsilon floor) or drop per_neuron")


def _fill(U: torch.Tensor, original: torch.Tensor, keep: int) -> torch.Tensor:
    """U with its support grown to ``keep`` entries by the largest |original| outside it."""
    flat, orig = U.reshape(-1).clone(), original.reshape(-1)
    add = keep - int((flat != 0).sum())
    idx = torch.topk(orig.abs().masked_fill(flat != 0, -1.0), add).indices
    flat[idx] = orig[idx]
    return flat.reshape(U.shape)


def _next_eps(tried, k: int) -> float:
    """Next relative eps: log-log interpolation toward 1.05 k between the nearest solves either
    side of k; with one side only, a power-law step from the solve nearest k (the count taken
    to fall like 1 / eps, the step clamped to a factor of 8)."""
    over = [t for t in tried if t[1] > k]
    under = [t for t in tried if t[1] < k]
    if not under or not over:
        g, n, _ = min(tried, key=lambda t: abs(math.log(max(t[1], 1) / k)))
        return g * min(max(max(n, 1) / (1.05 * k), 1 / 8), 8)
    (g0, n0, _), (g1, n1, _) = max(over, key=lambda t: t[0]), min(under, key=lambda t: t[0])
    if n1 <= 0:
        return math.sqrt(g0 * g1)
    t = (math.log(1.05 * k) - math.log(n0)) / (math.log(n1) - math.log(n0))
    t = min(max(t, 0.15), 0.85)
    return math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0)))
