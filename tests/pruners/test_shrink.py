"""nettrim.shrink: the sparsest model within a validation budget, its trail, and bad input."""
import math

import pytest
import torch
from torch import nn

from nettrim import ADMMSettings, NetTrim, NettrimError, RunOptions, SearchOptions, shrink
from nettrim.search import _search

F64 = ADMMSettings(dtype="float64")
QUIET = RunOptions(progress=False)


def teacher(seed=0):
    """A 20-30-3 ReLU network and its own labels on random inputs (a task it solves exactly)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 3)).double()
    x = torch.randn(900, 20, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = net(x).argmax(1)
    return net, x[:300], (x[300:], y[300:])


def accuracy(model, val) -> float:
    with torch.no_grad():
        return 100 * float((model(val[0]).argmax(1) == val[1]).double().mean())


def test_the_answer_is_the_sparsest_trial_within_the_budget():
    net, calib, val = teacher()
    res = shrink(net, calib, val, max_drop=0.05, method=NetTrim(settings=F64), run=QUIET)
    assert res.status == "solved" and res.knob == "epsilon" and len(res.search) >= 1
    passing = [t for t in res.search if t.within_budget]
    assert res.chosen is min(passing, key=lambda t: t.kept)
    assert res.report.sparsity == pytest.approx(1 - res.chosen.kept)
    acc = accuracy(res.model, val)
    assert acc == pytest.approx(res.chosen.validation_accuracy)
    assert res.original_accuracy - acc <= 5.0 + 1e-9
    assert all(t.seconds > 0 and 0 < t.kept <= 1 and not t.resumed for t in res.search)
    assert [t.knob for t in res.search] == [r["knob"] for r in res.to_dict()["search"]]


def test_a_count_method_is_searched_over_one_shared_sparsity():
    """Thresholding has no tolerance: its knob is the sparsity every layer shares."""
    net, calib, val = teacher(2)
    res = shrink(net, calib, val, max_drop=0.05, method="threshold", search=SearchOptions(max_trials=4), run=QUIET)
    assert res.knob == "sparsity" and res.status == "solved"
    assert all(0 < t.knob < 1 for t in res.search) and len(res.search) <= 4 + 2
    for layer in res.report.layers:  # every layer at the chosen sparsity
        assert layer.nnz_after == round(layer.total * (1 - res.chosen.knob))
    assert res.original_accuracy - accuracy(res.model, val) <= 5.0 + 1e-9


def test_an_unreachable_budget_returns_the_original_unchanged():
    """eps held at 0.9 (most weights go) with a zero-error budget on 600 inputs."""
    net, calib, val = teacher(1)
    res = shrink(net, calib, val, max_drop=0.0, method=NetTrim(settings=F64, epsilon=0.9),
                 search=SearchOptions(min_epsilon=0.9, max_epsilon=0.9), run=QUIET)
    assert res.status == "budget_unreachable"
    assert res.model is net and res.report is None and res.chosen is None
    assert len(res.search) == 1 and not res.search[0].within_budget


@pytest.mark.parametrize("drop, expect", [(lambda e: 2.4 * e, 1), (lambda e: 0.1 * e, None)])
def test_the_search_stops_close_to_the_budget(drop, expect):
    calls = []

    class T:
        pass

    def run(eps):
        t = T()
        calls.append(eps)
        t.drop = drop(eps)
        t.within_budget = t.drop <= 0.5
        return t

    _search(run, 0.2, 5, 0.005, 1.0, 1.25, 0.005)
    if expect is not None:
        assert len(calls) == expect
    assert all(0.005 <= e <= 1.0 for e in calls) and len(calls) <= 5


def test_when_no_trial_passes_the_search_aims_lower_before_giving_up():
    """drop = 50 eps points: the budget of 0.5 needs eps <= 0.01, far below the start; three
    trials miss it, then a trial aimed at half the budget and, failing that, min_eps."""
    calls = []

    def run(eps):
        calls.append(eps)
        return type("T", (), dict(drop=50 * eps, within_budget=50 * eps <= 0.5))()

    _search(run, 0.2, 3, 0.005, 1.0, 1.25, 0.005)
    assert calls[1] == pytest.approx(0.2 / 8)  # the proportional step, at most 8x down
    assert 50 * calls[-1] <= 0.5 and 4 <= len(calls) <= 5 and min(calls) >= 0.005


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_drop=-0.1), r"max_drop must be a fraction in \[0, 1\)"),
    (dict(max_drop=math.nan), "max_drop must be a fraction"),
    (dict(max_drop=1.0), "max_drop must be a fraction"),
    (dict(max_drop="0.01"), "max_drop must be a fraction"),
    (dict(max_drop=True), "max_drop must be a fraction"),
    (dict(mode="serial"), "unknown mode 'serial'"),
    (dict(method="magic"), "unknown method 'magic'"),
    (dict(search=dict(max_trials=3)), "search must be a nettrim.SearchOptions"),
    (dict(run=dict(progress=False)), "run must be a nettrim.RunOptions"),
])
def test_bad_arguments_are_one_line(kwargs, match):
    net, calib, val = teacher()
    with pytest.raises(NettrimError, match=match) as err:
        shrink(net, calib, val, **{"max_drop": 0.01, "run": QUIET, **kwargs})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("make, match", [
    (lambda v: (v[0][:10], v[1][:11]), "10 inputs but 11 labels"),
    (lambda v: (v[0], v[1] + 5), "labels must lie in 0..2"),
    (lambda v: (v[0], v[1].double()), "class indices"),
    (lambda v: (v[0] * float("nan"), v[1]), "NaN"),
    (lambda v: (v[0][:0], v[1][:0]), "validation is empty"),
    (lambda v: v[0], "pair"),
])
def test_bad_validation_data_is_one_line(make, match):
    net, calib, val = teacher()
    with pytest.raises(NettrimError, match=match) as err:
        shrink(net, calib, make(val), max_drop=0.01, run=QUIET)
    assert "\n" not in str(err.value)
