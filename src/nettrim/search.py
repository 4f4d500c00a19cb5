"""``shrink``: name an accuracy budget, get the sparsest model within it, for any method.

The budget is judged on a validation split the caller holds out (never the test set): a trial
model passes when its validation accuracy is at most ``max_drop`` below the original's,
counted in samples (``floor(max_drop n)`` more errors at most, so a budget of 25 images of
5,000 is exactly 0.5 points).

Two knobs, one search. A method with a tolerance (Net-Trim) is searched over its relative
tolerance eps; a method at a count (SparseGPT, Wanda, L-OBS, DC, thresholding) over the one
sparsity s shared by every layer, through x = -log(1 - s) (so that kept = e^-x). Either knob
grows with the sparsity and the validation drop, roughly monotonically; the search works in
log knob.

It starts at the method's eps (or s = 0.5) and takes the proportional step k * 0.9 max_drop /
drop: up by 1.25x to 2x after a passing first trial, down by 1.25x to 8x after a failing one.
Once two trials exist it follows the secant of the validation drop against log k, aimed at 90 %
of the budget and kept inside the bracket. It stops when a passing trial uses at least 80 % of
the budget (a further step changes the accuracy by about the noise of the validation split),
when the bracket is narrower than ``resolution``, or after ``max_trials`` trials (3 for a
tolerance, whose first guess is good; 8 for a sparsity). The answer is the sparsest passing
trial. When no trial passed, one more is aimed at half the budget, then one at the smallest
knob; when the last misses the budget, the result is the original model with status
``budget_unreachable``.

Resume. With ``RunOptions(store=...)`` every trial is a prune with its own scope in the store
(its finished layers are kept and restored), and every finished trial is kept as a record of
the search's scope (fingerprinted by the model, the calibration and validation data, the
budget, the method, the mode and the options): an interrupted search started again takes its
finished trials as they were (marked ``resumed``), follows the same path and ends with the
same model, bit for bit; the chosen trial's model is rebuilt from its restored layers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .api import RunOptions, checked_batches, prune
from .errors import NettrimError, require
from .methods import Method, NetTrim, resolve_method
from .models import predict
from .options import Function, Integer, Options, Real, options
from .report.types import PruneReport
from .status import Status


@options
class SearchOptions(Options):
    """How ``shrink`` searches.

    Attributes:
        max_trials: prunes at most before the last-resort trials (None: 3 for a tolerance,
            8 for a sparsity).
        min_epsilon, max_epsilon: the range of Net-Trim's relative eps.
        min_sparsity, max_sparsity: the range of the shared sparsity of a count method.
        resolution: stop once the bracket (smallest failing knob / largest passing one) is narrower than this ratio.
        log: called with one line per trial (the CLI prints them); None: silent.
    """

    max_trials: int | None = None
    min_epsilon: float = 0.005
    max_epsilon: float = 1.0
    min_sparsity: float = 0.05
    max_sparsity: float = 0.999
    resolution: float = 1.25
    log: object = None

    CHECKS: ClassVar = dict(
        max_trials=Integer(ge=1, none=True), min_epsilon=Real(gt=0), max_epsilon=Real(gt=0),
        min_sparsity=Real(gt=0, lt=1), max_sparsity=Real(gt=0, lt=1), resolution=Real(gt=1),
        log=Function())

    def validate(self) -> None:
        """A range may be one value (the knob held fixed), never upside down."""
        require(self.min_epsilon <= self.max_epsilon,
                f"SearchOptions.min_epsilon ({self.min_epsilon}) must not be above max_epsilon ({self.max_epsilon})")
        require(self.min_sparsity <= self.max_sparsity,
                f"SearchOptions.min_sparsity ({self.min_sparsity}) must not be above max_sparsity ({self.max_sparsity})")


@dataclass
class Trial:
    """One pruned model of the search, judged on the validation split. ``knob``: the
    relative eps (a tolerance method) or the shared sparsity (a count method)."""

    knob: float
    kept: float  # fraction of the prunable weights and biases kept
    validation_accuracy: float  # percent
    drop: float  # points below the original's validation accuracy
    within_budget: bool
    certified: bool  # every layer certified
    seconds: float
    resumed: bool = False  # taken from the run store, finished by an earlier run


@dataclass
class ShrinkResult:
    """``model``: the chosen pruned model (or the original, unchanged, when the budget is
    unreachable); ``report``: its prune report (None then); ``search``: every trial in order;
    ``knob``: "epsilon" or "sparsity"."""

    model: nn.Module
    report: PruneReport | None
    search: list[Trial]
    status: Status
    original_accuracy: float
    max_drop: float
    seconds: float
    knob: str = "epsilon"
    method: dict = field(default_factory=dict)

    @property
    def chosen(self) -> Trial | None:
        passing = [t for t in self.search if t.within_budget]
        return min(passing, key=lambda t: t.kept) if passing else None

    def to_dict(self) -> dict:
        chosen = self.chosen
        return {"status": str(self.status), "max_drop": self.max_drop, "seconds": self.seconds,
                "method": self.method, "knob": self.knob,
                "original_validation_accuracy": self.original_accuracy,
                "chosen": None if chosen is None else chosen.knob,
                "search": [t.__dict__ for t in self.search],
                "report": None if self.report is None else self.report.to_dict()}


def shrink(model: nn.Module, inputs, validation: tuple[torch.Tensor, torch.Tensor],
           max_drop: float = 0.005, method: Method | str = NetTrim(), *, mode: str = "cascade",
           search: SearchOptions = SearchOptions(), run: RunOptions = RunOptions()) -> ShrinkResult:
    """The sparsest model ``method`` gives whose validation accuracy is within ``max_drop``
    of the original's (module docstring for the search).

    Args:
        model: the trained network (not modified). inputs: calibration inputs.
        validation: (x_val, y_val), held out from the training data; labels class indices.
        max_drop: the budget as a fraction (0.005 is half a point), in [0, 1).
        method: any registered method or its name: Net-Trim is searched over its eps (from
            its own), the others over one sparsity shared by every layer.
        mode: "cascade" or "parallel". search: a :class:`SearchOptions`. run: a RunOptions.
    """
    method = resolve_method(method)
    require(isinstance(search, SearchOptions), f"search must be a nettrim.SearchOptions, got {type(search).__name__}")
    require(isinstance(run, RunOptions), f"run must be a nettrim.RunOptions, got {type(run).__name__}")
    checked_batches(model, inputs, mode, run.batch_size)
    _check_validation(model, validation, max_drop)
    x_val, y_val = validation
    start = time.perf_counter()
    base = _correct(model, x_val, y_val, run.batch_size)
    allowed = math.floor(max_drop * len(y_val) + 1e-9)
    tolerance = not method.needs_target
    scope = _search_scope(model, inputs, validation, max_drop, method, mode, search, run)
    trials: list[Trial] = []
    results: dict[float, object] = {}

    def pruned(knob: float):
        if tolerance:
            return prune(model, inputs, method.replace(epsilon=knob), mode=mode, run=run)
        return prune(model, inputs, method, mode=mode, sparsity=knob, run=run)

    def trial(knob: float) -> Trial:
        from .pruners import resume

        t = resume.load_trial(scope, len(trials), knob, Trial, key="knob")
        if t is None:
            t0 = time.perf_counter()
            res = results[knob] = pruned(knob)
            correct = _correct(res.model, x_val, y_val, run.batch_size)
            n = len(y_val)
            t = Trial(knob=knob, kept=1 - res.report.sparsity, validation_accuracy=100 * correct / n,
                      drop=100 * (base - correct) / n, within_budget=base - correct <= allowed,
                      certified=not res.report.uncertified, seconds=time.perf_counter() - t0)
            resume.save_trial(scope, len(trials), t)
        trials.append(t)
        if search.log is not None:
            search.log(f"trial {len(trials)}: {'eps' if tolerance else 'sparsity'} {knob:.4g}, "
                       f"{100 * t.kept:.2f} % kept, validation {t.validation_accuracy:.2f} % "
                       f"({-t.drop:+.2f}), {'within' if t.within_budget else 'over'} budget, {t.seconds:.1f} s"
                       + (" (resumed)" if t.resumed else ""))
        return t

    if tolerance:
        _search(trial, method.epsilon, search.max_trials or 3, search.min_epsilon, search.max_epsilon,
                search.resolution, max_drop)
    else:  # the knob x = -log(1 - s), searched as eps is; trials take s back
        to_s = lambda x: 1 - math.exp(-x)
        knob = lambda s: -math.log(1 - s)
        _search(lambda x: trial(to_s(x)), knob(0.5), search.max_trials or 8, knob(search.min_sparsity),
                knob(search.max_sparsity), search.resolution, max_drop)
    original_accuracy = 100 * base / len(y_val)
    passing = [t for t in trials if t.within_budget]
    common = dict(search=trials, original_accuracy=original_accuracy, max_drop=max_drop,
                  seconds=time.perf_counter() - start, knob="epsilon" if tolerance else "sparsity",
                  method=method.record())
    if not passing:
        return ShrinkResult(model, None, status=Status.BUDGET_UNREACHABLE, **common)
    chosen = min(passing, key=lambda t: t.kept).knob
    best = results[chosen] if chosen in results else pruned(chosen)  # a resumed trial: its layers restored
    return ShrinkResult(best.model, best.report, status=Status.SOLVED, **common)


def _search_scope(model, inputs, validation, max_drop, method: Method, mode: str, search: SearchOptions,
                  run: RunOptions):
    """The run store's scope of this search (None without a store): its fingerprint covers
    what the trials depend on (the log, progress, backend and store left out)."""
    if run.store is None:
        return None
    from .pruners import resume

    require(isinstance(inputs, torch.Tensor), "a run store needs the calibration inputs as one tensor "
                                              "(their hash keys the finished trials)")
    options = {k: v for k, v in search.record().items() if k != "log"}
    rows = {k: v for k, v in run.record().items() if k not in ("progress", "backend", "store")}
    return resume.search_scope(run.store, model, inputs, validation[0], validation[1], float(max_drop),
                               method.record(), mode, options, rows)


def _search(run, k: float, max_trials: int, k_min: float, k_max: float, resolution: float,
            max_drop: float, close: float = 0.8) -> None:
    """Trials in log k until a passing trial is close to the budget (drop at least ``close``
    max_drop), the bracket between the largest passing and smallest failing k is narrower
    than ``resolution``, or ``max_trials`` ran (module docstring); then, if nothing passed,
    a trial aimed at half the budget and one at ``k_min``."""
    k = min(max(k, k_min), k_max)
    tried: list[tuple[float, float, bool]] = []  # (k, drop, within budget)
    for _ in range(max_trials):
        trial = run(k)
        tried.append((k, trial.drop, trial.within_budget))
        passed = [e for e, _, ok in tried if ok]
        failed = [e for e, _, ok in tried if not ok]
        if trial.within_budget and trial.drop >= close * 100 * max_drop:
            return
        lo, hi = max(passed, default=0.0), min(failed, default=math.inf)
        if hi == math.inf and lo >= k_max or lo == 0.0 and hi <= k_min:
            return
        if lo and hi < math.inf and hi / lo < resolution:
            return
        k = _next_k(tried, lo, hi, 90 * max_drop, k_min, k_max)
    smallest = lambda: min(e for e, _, _ in tried)
    half = _next_k(tried, 0.0, smallest(), 50 * max_drop, k_min, k_max)
    for k in (half, k_min):
        if any(ok for _, _, ok in tried) or smallest() <= k_min:
            return
        trial = run(k)
        tried.append((k, trial.drop, trial.within_budget))


def _next_k(tried, lo: float, hi: float, target: float, k_min: float, k_max: float) -> float:
    """Secant of drop against log k through the two trials nearest ``target`` (points), kept
    inside (lo, hi) by at least a sixth of the bracket in log k (at most 8x below hi while
    nothing passed); after one trial, the proportional step k target / drop, up by 1.25x to 2x
    when it passed, down by 1.25x to 8x when it failed."""
    if len(tried) < 2:
        k, drop, passed = tried[0]
        factor = target / drop if drop > 0 else math.inf
        step = min(max(factor, 1.25), 2.0) if passed else min(max(factor, 1 / 8), 1 / 1.25)
        return min(max(k * step, k_min), k_max)
    (e1, d1, _), (e2, d2, _) = sorted(tried, key=lambda t: abs(t[1] - target))[:2]
    guess = None
    if d1 != d2 and e1 != e2:
        t = (target - d1) / (d2 - d1)
        guess = math.exp(math.log(e1) + t * (math.log(e2) - math.log(e1)))
    low = math.log(max(lo, k_min / 2)) if lo else math.log(max(hi / 8, k_min))
    high = math.log(min(hi, 2 * k_max)) if hi < math.inf else math.log(min(4 * lo, k_max))
    margin = (high - low) / 6
    if guess is None or not guess > 0:
        return math.exp((low + high) / 2)
    return min(math.exp(min(max(math.log(guess), low + margin), high - margin)), k_max)


def _correct(model, x, y, batch_size) -> int:
    return int((predict(model, x, batch_size).argmax(1) == y).sum())


def _check_validation(model, validation, max_drop) -> None:
    require(isinstance(max_drop, (int, float)) and not isinstance(max_drop, bool)
            and math.isfinite(max_drop) and 0 <= max_drop < 1,
            f"max_drop must be a fraction in [0, 1) (0.005 is half a point), got {max_drop!r}")
    require(isinstance(validation, (tuple, list)) and len(validation) == 2,
            "validation must be a pair (inputs, labels)")
    x_val, y_val = validation
    require(isinstance(x_val, torch.Tensor) and isinstance(y_val, torch.Tensor),
            "validation inputs and labels must be tensors")
    require("meta" not in (x_val.device.type, y_val.device.type),
            "validation is on the meta device (no values): pass real tensors")
    require(y_val.ndim == 1 and not y_val.is_floating_point() and not y_val.is_complex()
            and y_val.dtype != torch.bool, "validation labels must be a 1-D tensor of class indices")
    require(x_val.ndim >= 1, "validation inputs must be a tensor of samples, shape (n, ...)")
    require(len(y_val) > 0, "validation is empty: hold out some labelled inputs from the training data")
    require(len(x_val) == len(y_val), f"validation has {len(x_val)} inputs but {len(y_val)} labels: pass them in pairs")
    require(not x_val.is_floating_point() or bool(torch.isfinite(x_val).all()), "validation inputs contain NaN or Inf")
    try:
        logits = predict(model, x_val[:2])
    except NettrimError:
        raise
    except Exception as exc:  # the model's own error: shapes, dtypes
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise NettrimError(f"validation inputs of shape {tuple(x_val.shape)} do not run through the model: "
                           f"{type(exc).__name__}: {detail}") from None
    require(logits.ndim == 2, f"the model gives outputs of shape {tuple(logits.shape)} on the validation "
                              "inputs: shrink needs class scores (n, classes)")
    n_classes = logits.shape[1]
    require(int(y_val.min()) >= 0 and int(y_val.max()) < n_classes,
            f"validation labels must lie in 0..{n_classes - 1} (the model's {n_classes} classes), "
            f"got {int(y_val.min())}..{int(y_val.max())}")
