"""nettrim.shrink: the sparsest model within a validation budget, its trail, and bad input."""
import pytest
import torch
from torch import nn

import nettrim
from nettrim import NetTrim, NettrimError, shrink
from nettrim.layer import ADMMSettings
from nettrim.pruners.shrink import _search

F64 = ADMMSettings(dtype=torch.float64)


def teacher(seed=0):
    """A 20-30-3 ReLU network and its own labels on random inputs (a task it solves exactly)."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 3)).double()
    x = torch.randn(900, 20, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = net(x).argmax(1)
    return net, x[:300], (x[300:], y[300:])


def test_the_answer_is_the_sparsest_trial_within_the_budget():
    net, calib, val = teacher()
    res = shrink(net, calib, val, max_drop=0.05, method=NetTrim(settings=F64), progress=False)
    assert res.status == "solved" and len(res.search) >= 1
    passing = [t for t in res.search if t.within_budget]
    assert res.chosen is min(passing, key=lambda t: t.kept)
    assert res.report.sparsity == pytest.approx(1 - res.chosen.kept)
    with torch.no_grad():
        acc = 100 * float((res.model(val[0]).argmax(1) == val[1]).double().mean())
    assert acc == pytest.approx(res.chosen.validation_accuracy)
    assert res.original_accuracy - acc <= 5.0 + 1e-9
    assert all(t.seconds > 0 and 0 < t.kept <= 1 for t in res.search)


def test_an_unreachable_budget_returns_the_original_unchanged():
    """eps held at 0.9 (most weights go) with a zero-error budget on 600 inputs."""
    net, calib, val = teacher(1)
    res = shrink(net, calib, val, max_drop=0.0, method=NetTrim(settings=F64, epsilon=0.9),
                 min_epsilon=0.9, max_epsilon=0.9, progress=False)
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
    (dict(max_drop=-0.1), "max_drop must be a fraction in \\[0, 1\\)"),
    (dict(max_drop=float("nan")), "max_drop must be a fraction"),
    (dict(max_drop=1.0), "max_drop must be a fraction"),
    (dict(method=nettrim.LOBS()), "shrink searches Net-Trim's tolerance"),
    (dict(mode="serial"), "unknown mode"),
])
def test_bad_arguments_are_one_line(kwargs, match):
    net, calib, val = teacher()
    with pytest.raises(NettrimError, match=match):
        shrink(net, calib, val, progress=False, **{"max_drop": 0.01, **kwargs})


@pytest.mark.parametrize("make, match", [
    (lambda v: (v[0][:10], v[1][:11]), "10 inputs but 11 labels"),
    (lambda v: (v[0], v[1] + 5), "labels must lie in 0..2"),
    (lambda v: (v[0], v[1].double()), "class indices"),
    (lambda v: (v[0] * float("nan"), v[1]), "NaN"),
    (lambda v: v[0], "pair"),
])
def test_bad_validation_data_is_one_line(make, match):
    net, calib, val = teacher()
    with pytest.raises(NettrimError, match=match):
        shrink(net, calib, make(val), max_drop=0.01, progress=False)
