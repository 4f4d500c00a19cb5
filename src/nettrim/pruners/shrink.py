"""``nettrim.shrink``: name an accuracy budget, get the sparsest model within it.

The budget is judged on a validation split the caller holds out (never the test set): a trial
model passes when its validation accuracy is at most ``max_drop`` below the original's,
counted in samples (``floor(max_drop n)`` more errors at most, so a budget of 25 images of
5,000 is exactly 0.5 points).

Search. Net-Trim's relative tolerance eps (the method's other options fixed) sets the size;
fewer weights survive as eps grows, and the validation accuracy falls, roughly monotonically
and, at small eps, about in proportion to eps. The search starts at the method's eps and
takes the proportional step eps * 0.9 max_drop / drop: up by 1.25x to 2x after a passing first
trial, down by 1.25x to 8x after a failing one. Once two trials exist it follows the
secant of the validation drop against log eps, aimed at 90 % of the budget and kept inside
the bracket. It stops when a passing trial uses at least 80 % of the budget (a further step
changes the accuracy by about the noise of the validation split), when the bracket is
narrower than ``resolution``, or after ``max_trials`` trials (3 by default: a trial costs
about one prune, and the whole search is meant to cost at most three). The answer is the
sparsest passing trial. When no trial passed, one more is aimed at half the budget (the
secant again, at most 8x below the smallest eps tried), then, if that misses too, one at
``min_epsilon``; when the last misses the budget, the result is the original model with
status ``budget_unreachable``.

Reuse between trials: the original network's captures (every layer's targets, and the inputs
of the layers that see the original network) are taken once. Each trial's ADMM starts as a
single prune does (the original weights in cascade layers after the first): starting from the
nearest earlier trial's solution gave the same model in 10-25 % more time on LeNet-300-100
(eps 0.4 -> 0.5) and on the Fashion-MNIST MLP (0.4 -> 0.095), more iterations in every
hidden layer.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..errors import require
from ..models import predict
from ..status import Status
from .api import validate_inputs
from .backend import make_backend
from .network import PruneResult, run_scheme
from . import resume
from .nettrim import NetTrim
from .report import PruneReport


@dataclass
class Trial:
    """One pruned model of the search, judged on the validation split."""

    epsilon: float
    kept: float  # fraction of the prunable weights and biases kept
    validation_accuracy: float  # percent
    drop: float  # points below the original's validation accuracy
    within_budget: bool
    certified: bool  # every layer certified (the report's network bound is given)
    seconds: float
    resumed: bool = False  # taken from an earlier, interrupted run's store


@dataclass
class ShrinkResult:
    """``model``: the chosen pruned model (or the original, unchanged, when the budget is
    unreachable); ``report``: its prune report (None then); ``search``: every trial in order."""

    model: nn.Module
    report: PruneReport | None
    search: list[Trial]
    status: Status
    original_accuracy: float
    max_drop: float
    seconds: float

    @property
    def chosen(self) -> Trial | None:
        passing = [t for t in self.search if t.within_budget]
        return min(passing, key=lambda t: t.kept) if passing else None

    def to_dict(self) -> dict:
        chosen = self.chosen
        return {"status": self.status, "max_drop": self.max_drop, "seconds": self.seconds,
                "original_validation_accuracy": self.original_accuracy,
                "chosen_epsilon": None if chosen is None else chosen.epsilon,
                "search": [t.__dict__ for t in self.search],
                "report": None if self.report is None else self.report.to_dict()}


def shrink(model: nn.Module, inputs: torch.Tensor, validation: tuple[torch.Tensor, torch.Tensor],
           max_drop: float = 0.005, method: NetTrim | None = None, mode: str = "cascade", *,
           max_trials: int = 3, min_epsilon: float = 0.005, max_epsilon: float = 1.0,
           resolution: float = 1.25, batch_size: int = 1024, capture: dict | None = None,
           progress: bool = True, log=None, store=None, backend=None) -> ShrinkResult:
    """The sparsest Net-Trim model whose validation accuracy is within ``max_drop`` of the
    original's (module docstring for the search).

    Args:
        model: the trained network (not modified). inputs: calibration samples (P, ...).
        validation: (x_val, y_val), held out from training data; labels are class indices.
        max_drop: the budget as a fraction (0.005 is half a point), in [0, 1).
        method: a ``NetTrim`` object (default ``NetTrim()``); its eps is where the search starts.
        mode: "cascade" or "parallel".
        log: called with one line per trial (the CLI prints them).
        store: a ``nettrim.pruners.resume.RunStore`` keeping every finished layer and trial,
            so that an interrupted search resumes where it stopped (same answer, same bits).
        backend: where each trial's independent solves run: "local" (default), "ray", or a
            backend object (``nettrim.pruners.backend``; docs/distributed.md).
    """
    method = NetTrim() if method is None else method
    _validate(model, inputs, validation, max_drop, method, mode, max_trials)
    require(isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1,
            f"batch_size must be an integer >= 1, got {batch_size!r}")
    backend = make_backend(backend or "local")
    x_val, y_val = validation
    start = time.perf_counter()
    base_correct = _correct(model, x_val, y_val, batch_size)
    allowed = math.floor(max_drop * len(y_val) + 1e-9)
    originals: dict = {}
    trials: list[Trial] = []
    results: dict[float, PruneResult] = {}
    scope = resume.search_scope(store, model, inputs, validation, max_drop, method, mode,
                                max_trials, min_epsilon, max_epsilon, resolution, batch_size, capture)

    def run(eps: float) -> Trial:
        t0 = time.perf_counter()
        layer_method = replace(method, epsilon=eps).layer_method(mode, None)
        res = run_scheme(model, inputs, layer_method, mode=mode, method_name=method.name,
                         settings=dict(method=replace(method, epsilon=eps).record(),
                                       samples=int(inputs.shape[0]), capture=dict(capture or {})),
                         batch_size=batch_size, progress=progress, capture=capture,
                         originals=originals, store=store, backend=backend)
        trial = resume.load_trial(scope, len(trials), eps, Trial)
        if trial is None:
            correct = _correct(res.model, x_val, y_val, batch_size)
            n = len(y_val)
            trial = Trial(epsilon=eps, kept=1 - res.report.sparsity,
                          validation_accuracy=100 * correct / n, drop=100 * (base_correct - correct) / n,
                          within_budget=base_correct - correct <= allowed,
                          certified=not res.report.uncertified, seconds=time.perf_counter() - t0)
            resume.save_trial(scope, len(trials), trial)
        results[eps] = res
        trials.append(trial)
        if log is not None:
            log(f"trial {len(trials)}: eps {eps:.4g}, {100 * trial.kept:.2f} % kept, validation "
                f"{trial.validation_accuracy:.2f} % ({-trial.drop:+.2f}), "
                f"{'within' if trial.within_budget else 'over'} budget, {trial.seconds:.1f} s"
                + (" (resumed)" if trial.resumed else ""))
        return trial

    _search(run, method.epsilon, max_trials, min_epsilon, max_epsilon, resolution, max_drop)
    passing = [t for t in trials if t.within_budget]
    original_accuracy = 100 * base_correct / len(y_val)
    seconds = time.perf_counter() - start
    if not passing:
        return ShrinkResult(model, None, trials, Status.BUDGET_UNREACHABLE, original_accuracy,
                            max_drop, seconds)
    best = results[min(passing, key=lambda t: t.kept).epsilon]
    return ShrinkResult(best.model, best.report, trials, Status.SOLVED, original_accuracy,
                        max_drop, seconds)


def _search(run, eps: float, max_trials: int, min_eps: float, max_eps: float, resolution: float,
            max_drop: float, close: float = 0.8) -> None:
    """Trials in log eps until a passing trial is close to the budget (its drop at least
    ``close`` max_drop: a further step changes the accuracy by about the validation split's
    noise), the bracket between the largest passing and smallest failing eps is narrower than
    ``resolution``, or ``max_trials`` ran. The next eps is the secant of drop against log eps
    through the two trials nearest the budget, aimed at 0.9 max_drop and kept strictly inside
    the bracket; without a second trial, a factor of 2."""
    eps = min(max(eps, min_eps), max_eps)
    tried: list[tuple[float, float, bool]] = []  # (eps, drop, within budget)
    for _ in range(max_trials):
        trial = run(eps)
        tried.append((eps, trial.drop, trial.within_budget))
        passed = [e for e, _, ok in tried if ok]
        failed = [e for e, _, ok in tried if not ok]
        if trial.within_budget and trial.drop >= close * 100 * max_drop:
            return
        lo, hi = max(passed, default=0.0), min(failed, default=math.inf)
        if hi == math.inf and lo >= max_eps or lo == 0.0 and hi <= min_eps:
            return
        if lo and hi < math.inf and hi / lo < resolution:
            return
        eps = _next_eps(tried, lo, hi, 90 * max_drop, min_eps, max_eps)
    # nothing passed: a trial aimed at half the budget, then one at min_eps (the budget is
    # unreachable only when the smallest tolerance misses it too)
    smallest = lambda: min(e for e, _, _ in tried)
    half = _next_eps(tried, 0.0, smallest(), 50 * max_drop, min_eps, max_eps)
    for eps in (half, min_eps):
        if any(ok for _, _, ok in tried) or smallest() <= min_eps:
            return
        trial = run(eps)
        tried.append((eps, trial.drop, trial.within_budget))


def _next_eps(tried, lo: float, hi: float, target: float, min_eps: float, max_eps: float) -> float:
    """Secant of drop against log eps through the two trials nearest ``target`` (points),
    kept inside (lo, hi) by at least a sixth of the bracket in log eps (at most 8x below hi
    while nothing passed); after one trial, the proportional step eps * target / drop, up by
    1.25x to 2x when it passed, down by 1.25x to 8x when it failed."""
    if len(tried) < 2:
        eps, drop, passed = tried[0]
        factor = target / drop if drop > 0 else math.inf
        step = min(max(factor, 1.25), 2.0) if passed else min(max(factor, 1 / 8), 1 / 1.25)
        return min(max(eps * step, min_eps), max_eps)
    (e1, d1, _), (e2, d2, _) = sorted(tried, key=lambda t: abs(t[1] - target))[:2]
    guess = None
    if d1 != d2 and e1 != e2:
        t = (target - d1) / (d2 - d1)
        guess = math.exp(math.log(e1) + t * (math.log(e2) - math.log(e1)))
    low = math.log(max(lo, min_eps / 2)) if lo else math.log(max(hi / 8, min_eps))
    high = math.log(min(hi, 2 * max_eps)) if hi < math.inf else math.log(min(4 * lo, max_eps))
    margin = (high - low) / 6
    if guess is None or not guess > 0:
        return math.exp((low + high) / 2)
    return math.exp(min(max(math.log(guess), low + margin), high - margin))


def _correct(model, x, y, batch_size) -> int:
    return int((predict(model, x, batch_size).argmax(1) == y).sum())


def _validate(model, inputs, validation, max_drop, method, mode, max_trials) -> None:
    validate_inputs(model, inputs, mode)
    require(isinstance(method, NetTrim),
            f"shrink searches Net-Trim's tolerance: method must be a nettrim.NetTrim, got {type(method).__name__}")
    require(isinstance(max_drop, (int, float)) and math.isfinite(max_drop) and 0 <= max_drop < 1,
            f"max_drop must be a fraction in [0, 1) (0.005 is half a point), got {max_drop!r}")
    require(isinstance(max_trials, int) and max_trials >= 1, f"max_trials must be >= 1, got {max_trials!r}")
    require(isinstance(validation, (tuple, list)) and len(validation) == 2,
            "validation must be a pair (inputs, labels)")
    x_val, y_val = validation
    require(isinstance(x_val, torch.Tensor) and isinstance(y_val, torch.Tensor),
            "validation inputs and labels must be tensors")
    require(len(x_val) == len(y_val) and len(y_val) > 0,
            f"validation has {len(x_val)} inputs but {len(y_val)} labels: pass them in pairs")
    require(not y_val.is_floating_point() and y_val.ndim == 1,
            "validation labels must be a 1-D tensor of class indices")
    require(bool(torch.isfinite(x_val).all()), "validation inputs contain NaN or Inf")
    n_classes = predict(model, x_val[:2]).shape[1]
    require(int(y_val.min()) >= 0 and int(y_val.max()) < n_classes,
            f"validation labels must lie in 0..{n_classes - 1} (the model's {n_classes} classes), "
            f"got {int(y_val.min())}..{int(y_val.max())}")
