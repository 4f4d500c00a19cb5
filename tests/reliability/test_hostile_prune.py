"""Hostile inputs for ``prune`` and ``shrink``: random small networks (dead ReLUs, all-zero and
constant layers, tiny and huge weights) on random calibration inputs (one sample, duplicates,
rank-deficient, 1e-6 to 1e6, NaN/Inf, other dtypes, the meta device, non-contiguous and
expanded views). Each run is a model whose certified claims ``verify`` recomputes and finds
holding (and the caller's model untouched), or a one-line NettrimError."""
import copy
import math

import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import nettrim
from nettrim import ADMMSettings, NetTrim
from nettrim.pruners.verify import verify
from nettrim.status import Status

from reliability_helpers import count, examples, run_case

FAST = ADMMSettings(max_iterations=300)


@st.composite
def networks(draw):
    """A Sequential of 1-3 Linear layers with ReLUs (sometimes a small Conv2d net), with
    hostile weights: a dead layer, a zero layer, a constant layer, a scaled layer."""
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    if draw(st.integers(0, 9)) == 0:
        net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
        return net.eval(), (1, 6, 6)
    depth = draw(st.integers(1, 3))
    n_in = draw(st.sampled_from([1, 2, 5, 9]))
    widths = [n_in] + [draw(st.sampled_from([1, 2, 4, 8])) for _ in range(depth)]
    layers: list[nn.Module] = []
    batchnorm = depth > 1 and draw(st.integers(0, 5)) == 0
    for i in range(depth):
        layers.append(nn.Linear(widths[i], widths[i + 1], bias=draw(st.booleans()) or i == 0))
        if i < depth - 1:
            if batchnorm and i == 0:
                bn = nn.BatchNorm1d(widths[1])
                with torch.no_grad():
                    bn.running_mean.uniform_(-1, 1)
                    bn.running_var.uniform_(0.1, 3)
                layers.append(bn)
            layers.append(nn.ReLU())
    net = nn.Sequential(*layers).eval()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    hostile = draw(st.sampled_from(["none", "none", "dead", "zero", "constant", "scaled"]))
    victim = linears[draw(st.integers(0, len(linears) - 1))]
    with torch.no_grad():
        if hostile == "dead" and victim.bias is not None:
            victim.bias.fill_(-1e3)
        elif hostile == "zero":
            victim.weight.zero_()
            if victim.bias is not None:
                victim.bias.zero_()
        elif hostile == "constant":
            victim.weight.zero_()
            if victim.bias is not None:
                victim.bias.fill_(0.7)
        elif hostile == "scaled":
            victim.weight.mul_(10.0 ** draw(st.integers(-3, 3)))
    return net, (n_in,)


@st.composite
def inputs_for(draw, shape):
    P = draw(st.sampled_from([1, 2, 3, 8, 30]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["gauss", "gauss", "zeros", "constant", "duplicates", "rank1"]))
    x = torch.randn(P, *shape, generator=g)
    if kind == "zeros":
        x.zero_()
    elif kind == "constant":
        x.fill_(2.5)
    elif kind == "duplicates":
        x = x[torch.zeros(P, dtype=torch.long)]
    elif kind == "rank1":
        x = (torch.randn(P, 1, generator=g) @ torch.randn(1, math.prod(shape), generator=g)).reshape(P, *shape)
    x = x * 10.0 ** draw(st.integers(-6, 6))
    special = draw(st.sampled_from([None] * 10 + ["nan", "inf", "meta", "float64", "float16",
                                                  "int", "1d", "empty"]))
    if special == "nan":
        x.view(-1)[0] = math.nan
    elif special == "inf":
        x.view(-1)[-1] = -math.inf
    layout = draw(st.sampled_from(["contiguous", "contiguous", "transposed", "expanded"]))
    if layout == "transposed" and x.ndim == 2:
        x = x.T.contiguous().T
    elif layout == "expanded":
        x = x[:1].expand(P, *shape)
    if special == "meta":
        x = x.to("meta")
    elif special == "float64":
        x = x.double()
    elif special == "float16":
        x = x.half()
    elif special == "int":
        x = x.long()
    elif special == "1d":
        x = x.reshape(-1)
    elif special == "empty":
        x = x[:0]
    return x


METHODS = [
    ("nettrim", lambda: NetTrim(settings=FAST), {}),
    ("nettrim-paper", lambda: NetTrim.paper(settings=FAST), {}),
    ("nettrim-per-neuron", lambda: NetTrim(per_neuron=True, reweight=0, refit=False, solve_rows=None, settings=FAST), {}),
    ("nettrim-count", lambda: NetTrim(settings=FAST, max_solves=3), {"sparsity": 0.6}),
    ("threshold", lambda: "threshold", {"sparsity": 0.5}),
    ("lobs", lambda: "lobs", {"sparsity": 0.7}),
    ("dc", lambda: nettrim.DC(outer=2, stages=1), {"sparsity": 0.5}),
]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) or (
        a[k].is_floating_point() and torch.equal(a[k].isnan(), b[k].isnan())
        and torch.equal(a[k].nan_to_num(), b[k].nan_to_num())) for k in a)


def check_result(entry, original, before, x, res) -> None:
    """The caller's model untouched; finite weights; every certified claim recomputed."""
    assert _same_state(_state(original), before), "prune modified the caller's model"
    for k, v in res.model.state_dict().items():
        assert not v.is_floating_point() or bool(torch.isfinite(v).all()), f"non-finite {k}"
    report = res.report.to_dict()
    checks = verify(original, res.model, x, report)
    failed = [c for c in checks if not c.holds]
    assert not failed, f"certified claims that do not hold: {failed}"
    certified = [r for r in res.report.layers if r.certified]
    if len(certified) == len(res.report.layers):
        count(entry, "model, every layer certified and verified" + (", bound verified" if res.report.bound is not None else ""))
    elif certified:
        count(entry, "model, some layers certified (verified), the others not claimed")
    else:
        count(entry, "model, no certificate claimed (" + "/".join(sorted({str(r.status) for r in res.report.layers})) + ")")


@settings(max_examples=examples(25))
@given(data=st.data())
def test_prune_answers_correctly_or_refuses_in_one_line(data):
    net, shape = data.draw(networks())
    x = data.draw(inputs_for(shape))
    name, make, target = data.draw(st.sampled_from(METHODS))
    mode = data.draw(st.sampled_from(["cascade", "parallel"]))
    extra = data.draw(st.sampled_from([{}, {}, {}, {"cleanup": True}, {"layers": ["0"]},
                                       {"batch_size": 2}]))
    before = _state(net)
    kind, res = run_case("prune", lambda: nettrim.prune(net, x, method=make(), mode=mode,
                                                        progress=False, **target, **extra))
    assert _same_state(_state(net), before), "prune modified the caller's model"
    if res is not None:
        check_result("prune", net, before, x, res)


@settings(max_examples=examples(8))
@given(data=st.data())
def test_shrink_answers_correctly_or_refuses_in_one_line(data):
    net, shape = data.draw(networks())
    x = data.draw(inputs_for(shape))
    n_val = data.draw(st.sampled_from([1, 5, 40]))
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    x_val = torch.randn(n_val, *shape, generator=g) * 10.0 ** data.draw(st.integers(-3, 3))
    n_out = net(torch.zeros(1, *shape)).shape[1]
    y_val = torch.randint(0, n_out, (n_val,), generator=g)
    labels = data.draw(st.sampled_from(["ok", "ok", "ok", "float", "out-of-range", "short"]))
    if labels == "float":
        y_val = y_val.float()
    elif labels == "out-of-range":
        y_val = y_val + n_out
    elif labels == "short":
        y_val = y_val[:-1]
    max_drop = data.draw(st.sampled_from([0.0, 0.01, 0.2, 0.999, -0.1, 1.0, math.nan]))
    max_trials = data.draw(st.sampled_from([1, 2, 3]))
    before = _state(net)
    kind, res = run_case("shrink", lambda: nettrim.shrink(
        net, x, (x_val, y_val), max_drop, NetTrim(settings=FAST, reweight=0), max_trials=max_trials,
        progress=False))
    assert _same_state(_state(net), before), "shrink modified the caller's model"
    if res is None:
        return
    # beyond max_trials only when none of them passed (a trial at half the budget, then min_eps)
    assert len(res.search) <= max_trials + 2
    assert len(res.search) <= max_trials or not any(t.within_budget for t in res.search[:max_trials])
    if res.status == Status.BUDGET_UNREACHABLE:
        assert res.model is net and res.report is None
        count("shrink", "budget unreachable: the original model returned, nothing claimed")
        return
    # the chosen model is within the budget on the validation split, recomputed here
    base = int((net(x_val).argmax(1) == y_val).sum())
    now = int((res.model(x_val).argmax(1) == y_val).sum())
    assert base - now <= math.floor(max_drop * len(y_val) + 1e-9), "the chosen model is over budget"
    check_result("shrink", net, before, x, res)
