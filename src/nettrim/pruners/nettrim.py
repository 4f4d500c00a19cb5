"""Net-Trim as a layer method: the tolerance of each scheme, then the convex solve.

* parallel (Theorem 1): X and Y from the original network, eps_l = epsilon ||Y_l||_F.
* cascade (Theorem 2): X = Xhat from the pruned layers before, and
  eps_l^2 = gamma ||(W_l^T Xhat - Y_l)_Omega||_F^2 (the original W_l stays feasible); the
  first layer is solved as in parallel.
* the logits layer's eps is multiplied by the risk factor kappa in (0, 1].
* V, the bound on the inactive entries: the papers' program (``margin=None``) uses V = 0 in
  parallel and for the first layer, V = W_l^T Xhat for later cascade layers. With ``margin``
  theta in [0, 1] every ReLU layer, the first included, uses V = relu(W_l^T X) + theta
  min(W_l^T X, 0) (X the layer's inputs, Xhat in cascade): an inactive entry stays below theta
  times its original negative pre-activation. theta = 1 in cascade is the papers' V, extended
  to the first layer. The original weights stay feasible for every theta, and relu(V) is the
  scheme's, so Proposition 1 and Theorems 1-2 hold as before. Why: an inactive unit pushed
  only to just below zero on the calibration images turns on for some unseen images; keeping
  its margin costs weights but buys validation accuracy (docs/results.md#choosing-the-default).
* ``per_neuron`` (True, or the names of the layers it applies to): one ball per neuron. In
  parallel and for the first layer eps_m = eps_l ||y_m|| / ||Y_l||_F; for a later cascade
  layer the cascade rule neuron by neuron, eps_m = sqrt(gamma) gap_m, so the original weights
  stay feasible neuron by neuron (``NetTrimMethod.radii``). A layer wide enough for more than
  one block of output neurons (``backend.neuron_blocks``: max(128, N / 8) neurons or more) is
  solved block by block, each block a program of its own (its own ADMM start, reweighting and
  certificate check), in this process or as Ray tasks (docs/distributed.md).
* ``layer_epsilon`` (relative, per layer name): in parallel, and for the first layer, it
  replaces ``epsilon``; for a later cascade layer it is a floor,
  eps_l = max(sqrt(gamma) gap_l, layer_epsilon[l] ||Y_l||_F), so that a layer whose pruned
  input is almost exact can still be pruned (structured pruning needs it to remove units in
  cascade); the bound then follows the measured recursion of ``bounds.cascade_bound_measured``.
* ``refit``: the values refit on the support the l1 solves chose (``nettrim.layer.refit``);
  each layer is then certified by the hinge ball, and later cascade layers follow the hinge
  recursion of ``bounds.cascade_bound_measured``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..errors import NettrimError, require
from ..layer import ADMMSettings, trim_layer
from ..layer.problem import split_budget
from ..layer.result import INFEASIBLE, LayerResult
from .backend import LocalBackend, neuron_blocks, solve_neuron_blocks
from .base import LayerJob, LayerOutcome, PruningMethod, Target, method_options, slack
from .structured import STRUCTURES


@method_options
class NetTrim(PruningMethod):
    """Net-Trim: per layer, the sparsest weights (least l1 norm) whose response stays within a
    tolerance of the original on the calibration inputs (module docstring for the schemes).

    Options:
        epsilon: relative tolerance, eps_l = epsilon ||Y_l||_F (parallel; the first layer in
            cascade). gamma: cascade inflation >= 1 of the later layers' eps. kappa: risk
            factor in (0, 1] on the logits layer's eps.
        reweight: rounds of reweighted l1 after the first solve (sparser at the same eps).
        refit: refit the values on the chosen support (``nettrim.layer.refit``): same support,
            the layer's ReLU-aware fit; the certificate becomes the hinge ball.
        margin: theta in [0, 1] of every ReLU layer's V (module docstring); None: the papers' V.
        per_neuron: one ball per neuron, in every layer (True) or in the layers named.
        layer_epsilon: relative eps per layer name (a floor for later cascade layers).
        solve_rows: with ``refit``, each layer's support is chosen on at most this many of
            its calibration rows (a seeded draw); the values are refit and the certificate
            measured on all of them, with a full solve from the refit for a layer that does not
            certify (``trim_layer(solve_rows=...)``). None: all rows. The default, 8,000, leaves
            every calibration set up to that size as it is and keeps an ADMM iteration's cost
            bounded when a user passes a whole training set (docs/results.md#speed).
        settings: the ADMM settings. max_solves: solves of the eps search at a sparsity.
        structure: "weights" (default): the l1 program, single weights removed. "units": the
            group-l1 program, one group per input unit of each layer (a neuron of the layer
            below, or an input channel of a Conv2d: all its kernel weights), the bias in no
            group; a unit that no layer above reads is then removed from a plain chain, which
            becomes a smaller dense network of the same classes, each layer's certificate
            measured again on it (``nettrim.pruners.structured``, docs/structured.md). The
            widths before and after are in ``report.settings["widths"]``. For the tolerance
            control only (no sparsity or counts target).

    The defaults are the configuration with the best frontier measured on three LeNet-300-100
    networks, judged on their validation split (docs/results.md#choosing-the-default): two
    rounds of reweighted l1, every ReLU layer keeping its inactive units' margins, the values
    refit on the support. ``NetTrim.paper()`` is the papers' program: the l1 program alone, one
    ball per layer, the schemes' V.
    """

    epsilon: float = 0.4
    gamma: float = 1.1
    kappa: float = 1.0
    reweight: int = 2
    refit: bool = True
    margin: float | None = 1.0
    per_neuron: bool | tuple[str, ...] = False
    layer_epsilon: dict | None = None
    solve_rows: int | None = 8000
    settings: ADMMSettings = field(default_factory=ADMMSettings)
    max_solves: int = 8
    structure: str = "weights"
    name: ClassVar[str] = "nettrim"
    needs_target: ClassVar[bool] = False

    def __post_init__(self):
        positive = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        require(positive(self.epsilon) and self.epsilon > 0,
                f"epsilon must be a positive number (relative tolerance), got {self.epsilon!r}")
        require(positive(self.gamma) and self.gamma >= 1, f"gamma must be >= 1, got {self.gamma!r}")
        require(positive(self.kappa) and 0 < self.kappa <= 1, f"kappa must lie in (0, 1], got {self.kappa!r}")
        require(isinstance(self.reweight, int) and not isinstance(self.reweight, bool) and self.reweight >= 0,
                f"reweight must be an integer >= 0, got {self.reweight!r}")
        require(isinstance(self.refit, bool), f"refit must be True or False, got {self.refit!r}")
        if self.margin is not None:
            require(positive(self.margin) and 0 <= self.margin <= 1,
                    f"margin must lie in [0, 1] (a fraction of the original negative pre-activation), got {self.margin!r}")
        if self.solve_rows is not None:
            require(isinstance(self.solve_rows, int) and not isinstance(self.solve_rows, bool)
                    and self.solve_rows >= 1, f"solve_rows must be an integer >= 1, got {self.solve_rows!r}")
            require(self.refit, "solve_rows chooses the support on a sample of the rows and needs "
                                "refit=True to set the values on all of them")
        if not isinstance(self.per_neuron, bool):
            names = self.per_neuron
            require(not isinstance(names, str) and all(isinstance(n, str) for n in names),
                    f"per_neuron must be True/False or a list of layer names, got {names!r}")
            object.__setattr__(self, "per_neuron", tuple(names))
        for name, value in (self.layer_epsilon or {}).items():
            require(positive(value) and value > 0, f"layer_epsilon[{name!r}] must be a positive number, got {value!r}")
        require(isinstance(self.settings, ADMMSettings), f"settings must be an ADMMSettings, got {type(self.settings).__name__}")
        require(isinstance(self.max_solves, int) and self.max_solves >= 1, f"max_solves must be an integer >= 1, got {self.max_solves!r}")
        require(isinstance(self.structure, str) and self.structure in STRUCTURES,
                f"structure must be one of {', '.join(map(repr, STRUCTURES))}, got {self.structure!r}")

    @classmethod
    def paper(cls, epsilon: float = 0.05, gamma: float = 1.1, kappa: float = 1.0,
              settings: ADMMSettings | None = None) -> "NetTrim":
        """The seeds' program exactly: min ||U||_1 within eps, V by the scheme, one ball per
        layer, no reweighting, no refit."""
        return cls(epsilon=epsilon, gamma=gamma, kappa=kappa, reweight=0, refit=False, margin=None,
                   per_neuron=False, layer_epsilon=None, solve_rows=None,
                   settings=settings or ADMMSettings())

    def layer_names(self) -> set[str]:
        """The layer names the options refer to (checked against the model by ``prune``)."""
        names = set(self.layer_epsilon or ())
        return names | set(self.per_neuron) if not isinstance(self.per_neuron, bool) else names

    def layer_method(self, mode: str, target: Target | None):
        per_neuron = self.per_neuron if isinstance(self.per_neuron, bool) else frozenset(self.per_neuron)
        if target is None:
            return NetTrimMethod(mode=mode, epsilon=self.epsilon, gamma=self.gamma, kappa=self.kappa,
                                 per_neuron=per_neuron, reweight=self.reweight, refit=self.refit,
                                 margin=self.margin, layer_epsilon=self.layer_epsilon,
                                 solve_rows=self.solve_rows,
                                 settings=self.settings, structure=self.structure)
        require(self.structure == "weights",
                f"structure={self.structure!r} applies to Net-Trim's tolerance control, not to a "
                f"sparsity or counts target: drop sparsity/counts and set epsilon")
        require(not self.layer_epsilon,
                "layer_epsilon applies to Net-Trim's tolerance control, not to a sparsity or counts target")
        from .nettrim_count import NetTrimAtSparsity

        return NetTrimAtSparsity(sparsity=target.sparsity, counts=target.counts,
                                 tolerance=self.layer_method(mode, None), max_solves=self.max_solves)


@dataclass
class NetTrimMethod:
    """Callable layer method; see the module docstring for the tolerances."""

    mode: str = "cascade"
    epsilon: float = 0.05
    gamma: float = 1.1
    kappa: float = 1.0
    per_neuron: bool | frozenset[str] = False  # True: every layer; names: those layers
    reweight: int = 0
    margin: float | None = None
    layer_epsilon: dict[str, float] | None = None
    refit: bool = False
    solve_rows: int | None = None
    settings: ADMMSettings = ADMMSettings()
    progress: object = None
    structure: str = "weights"  # "units": group l1 per input unit, then unread units removed
    groups: dict | None = None  # layer name -> (N,) input unit of each feature (set by prepare)
    backend: object = None  # where the blocks of a per-neuron layer run (None: in this process)

    def prepare(self, model, specs, example) -> None:
        """Called by ``run_scheme`` before the first layer: with ``structure="units"``, the
        groups of every layer (``structured.input_groups``)."""
        if self.structure == "units":
            from .structured import input_groups, plain_chain

            self.groups = input_groups(model, specs, plain_chain(model, specs, example))

    def finish(self, pruned, report, **run):
        """Called by ``run_scheme`` at the end: with ``structure="units"``, the unread units
        removed and the certificates measured again (``structured.finish_units``)."""
        if self.structure != "units":
            return pruned
        from .structured import finish_units

        return finish_units(pruned, report, **run)

    def tolerance(self, job: LayerJob) -> tuple[float, torch.Tensor | None, float]:
        """(absolute eps, V, gap) for this layer under the scheme; gap = ||(W^T Xhat - Y)_Omega||."""
        target = float(job.Y.norm())
        own = (self.layer_epsilon or {}).get(job.spec.name)
        gap = float(((job.Z - job.Y) * job.active).norm())
        if self.mode == "parallel" or job.first:
            eps = (self.epsilon if own is None else own) * target
        else:  # a floor, if any; a pruned input identical to the original still gets eps > 0
            eps = max(math.sqrt(self.gamma) * gap, (own or 0.0) * target, 1e-6 * target)
        if job.last:
            eps *= self.kappa
        return eps, slack(job.Z, self.slack_margin(job)), gap

    def slack_margin(self, job: LayerJob) -> float | None:
        """theta of V = relu(W^T X) + theta min(W^T X, 0), None for V = 0 (``base.slack``)."""
        if not job.spec.relu:
            return None
        if self.margin is not None:
            return self.margin
        if self.mode == "parallel" or job.first:
            return None
        return 1.0

    def radii(self, job: LayerJob) -> torch.Tensor:
        """Per-neuron radii (M,) for a later cascade layer split per neuron: the cascade rule
        neuron by neuron, eps_m = kappa max(sqrt(gamma) gap_m, layer_epsilon[l] ||y_m||_Omega),
        so that the original W_l stays feasible for every neuron (a split in proportion to
        ||y_m|| would not). Their root sum of squares is the eps the report and bounds use."""
        Y, active = job.Y.double(), job.active
        own = (self.layer_epsilon or {}).get(job.spec.name) or 0.0
        gaps = ((job.Z.double() - Y) * active).norm(dim=0)
        r = torch.maximum(math.sqrt(self.gamma) * gaps, own * (Y * active).norm(dim=0))
        r = r.clamp_min(1e-6 * float(Y.norm()) / math.sqrt(Y.shape[1]))
        return r * (self.kappa if job.last else 1.0)

    def __call__(self, job: LayerJob) -> LayerOutcome:
        eps, V, gap = self.tolerance(job)
        per = job.in_layers(self.per_neuron)
        ball = self.radii(job) if per and self.mode == "cascade" and not job.first else eps
        # cascade layers after the first: the original weights are feasible and a good start
        # (measured: 3x fewer ADMM iterations); elsewhere the ridge solution starts better
        warm = (job.weight, job.bias) if self.mode == "cascade" and not job.first else None
        res = self._solve(job, ball, V, per, warm)
        if res.status == INFEASIBLE:
            raise NettrimError(self._infeasible(job, ball, res))
        info = {"gap": gap, "slack_margin": self.slack_margin(job),
                "solver_discrepancy": res.discrepancy, "max_violation": res.max_violation,
                "hinge": self.refit and job.spec.relu, "hinge_residual": res.hinge_residual,
                "tolerance": res.tolerance, "solver_seconds": res.seconds,
                "primal_residual": res.primal_residual, "dual_residual": res.dual_residual,
                "rho": res.rho}
        return LayerOutcome(res.weight.to(job.weight), None if res.bias is None else res.bias.to(job.weight),
                            status=res.status, iterations=res.iterations, epsilon=res.epsilon,
                            certified=res.within, info=info)

    def _solve(self, job: LayerJob, ball, V, per: bool, warm) -> LayerResult:
        """``trim_layer`` on the job; with one ball per neuron (l1 program) and more than one
        block of output neurons (``backend.neuron_blocks``), block by block on ``self.backend``."""
        groups = self._groups(job)
        options = dict(bias=job.bias is not None, settings=self.settings, reweight=self.reweight,
                       refit=self.refit, solve_rows=self.solve_rows)
        if per and groups is None and len(neuron_blocks(job.Y.shape[1], job.X.shape[1])) > 1:
            return solve_neuron_blocks(self.backend or LocalBackend(), job.X, job.Y, ball, V=V,
                                       relu=job.spec.relu, warm_start=warm, **options)
        return trim_layer(job.X, job.Y, ball, V=V, relu=job.spec.relu, per_neuron=per,
                          warm_start=warm, progress=self.progress, groups=groups, **options)

    def _groups(self, job: LayerJob) -> torch.Tensor | None:
        """The layer's groups with ``structure="units"`` (from ``prepare``, else the layer's own
        input channels or features), None for the l1 program."""
        if self.structure != "units":
            return None
        from .structured import layer_groups

        groups = (self.groups or {}).get(job.spec.name)
        return layer_groups(job) if groups is None else groups

    def _infeasible(self, job: LayerJob, ball, res) -> str:
        """The one-line error for a logits layer whose least-squares fit misses its ball(s)."""
        name = job.spec.name
        if not job.in_layers(self.per_neuron):
            need = res.discrepancy / (ball / self.kappa) if job.last else float("nan")
            return (f"layer '{name}' is infeasible: eps = {ball:.4g} but the best least-squares "
                    f"fit misses by {res.discrepancy:.4g}; raise kappa to at least {need:.3f} "
                    f"(or epsilon)")
        radii = ball if isinstance(ball, torch.Tensor) else split_budget(ball, job.Y.double(), job.active)
        ratio = res.per_neuron_discrepancy.double() / radii.double().clamp_min(1e-30)
        m = int(ratio.argmax())
        return (f"layer '{name}' is infeasible with one ball per neuron: the best least-squares "
                f"fit of neuron {m} misses by {float(ratio[m]):.3g} times its radius; raise this "
                f"layer's eps by that factor (epsilon, kappa or its layer_epsilon floor) or drop "
                f"per_neuron")
