"""Hostile inputs for ``prune`` and ``shrink``: random small networks (dead ReLUs, all-zero and
constant layers, tiny and huge weights, BatchNorm) on random calibration inputs (one sample,
duplicates, rank-deficient, 1e-6 to 1e6, NaN/Inf, other dtypes, the meta device,
non-contiguous and expanded views), with every method. Each run is a model whose certified
claims hold when recomputed here from the two models alone (and the caller's model untouched),
or a one-line NettrimError. Every wrong value of each argument of ``prune`` and ``shrink`` is a
one-line NettrimError naming it."""
import copy
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import nettrim
from nettrim import ADMMSettings, NetTrim, NettrimError, RunOptions, SearchOptions
from nettrim.program.constraint import FLOOR
from nettrim.status import Status

from reliability_helpers import count, examples, refusal, run_case

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
    ("nettrim-obs", lambda: NetTrim(support="obs"), {}),
    ("nettrim-per-neuron", lambda: NetTrim(per_neuron=True, reweight=0, refit=False, settings=FAST), {}),
    ("nettrim-count", lambda: NetTrim(settings=FAST, max_solves=3), {"sparsity": 0.6}),
    ("threshold", lambda: "threshold", {"sparsity": 0.5}),
    ("lobs", lambda: "lobs", {"sparsity": 0.7}),
    ("dc", lambda: nettrim.DC(outer=2, stages=1), {"sparsity": 0.5}),
    ("sparsegpt", lambda: "sparsegpt", {"sparsity": 0.5}),
    ("wanda", lambda: "wanda", {"sparsity": 0.5}),
]
QUIET = RunOptions(progress=False)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) or (
        a[k].is_floating_point() and torch.equal(a[k].isnan(), b[k].isnan())
        and torch.equal(a[k].nan_to_num(), b[k].nan_to_num())) for k in a)


def _units(model: nn.Sequential):
    """(start, stop, relu) of each prunable unit of a Sequential: a Linear or Conv2d with the
    BatchNorm1d after it (folded into it by prune), and whether a ReLU follows."""
    mods, out, i = list(model), [], 0
    while i < len(mods):
        if isinstance(mods[i], (nn.Linear, nn.Conv2d)):
            j = i + 1 + (i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm1d))
            out.append((i, j, j < len(mods) and isinstance(mods[j], nn.ReLU)))
            i = j
        else:
            i += 1
    return out


def _columns(t: torch.Tensor) -> torch.Tensor:
    """Rows x neurons: a conv output (P, C, H, W) as (P H W, C)."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]) if t.ndim == 4 else t


def _terms(linear: nn.Linear, bn: nn.BatchNorm1d, x: torch.Tensor) -> float:
    """||sum of |terms|||_F of the folded layer BN(linear(x)) = W_f x + b_f: the scale of its
    float32 rounding (W_f = diag(s) W, b_f = (b - mean) s + beta, s = gamma / sqrt(var + eps))."""
    W = linear.weight
    b = linear.bias if linear.bias is not None else torch.zeros(W.shape[0], dtype=W.dtype)
    if not isinstance(bn, nn.BatchNorm1d):  # prune may leave an Identity in its place
        return float((x.abs() @ W.abs().T + b.abs()).norm())
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return float((x.abs() @ (W * s[:, None]).abs().T + ((b - bn.running_mean) * s).abs() + bn.bias.abs()).norm())


def _as_model_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The calibration inputs as prune feeds them (the model's dtype), then in float64."""
    return x.to(next(model.parameters()).dtype).double()


def recheck(original: nn.Module, pruned: nn.Module, x: torch.Tensor, report, mode: str) -> list[str]:
    """The layers whose certificate does not hold when recomputed in float64 from the two
    models alone: per neuron m, d_m = ||(Z - Y)_Omega||, h_m = ||(Z - V)_{Omega^c,+}|| with Z
    the pruned unit on its inputs (the pruned network's in cascade), Y the original's target
    (its ReLU output when a ReLU follows), V = relu(Z0) + theta min(Z0, 0) from the original
    unit on the same inputs, and the claim's balls, inactive side and tolerance; also each
    layer's count of non-zeros. Layers solved on a sample of their rows (fewer than the
    layer's rows counted here: a conv layer has P H_out W_out) are not rechecked."""
    o, q = copy.deepcopy(original).double().eval(), copy.deepcopy(pruned).double().eval()
    a_o = a_q = _as_model_input(original, x)
    by_name = {r.name: r for r in report.layers}
    bad, pos = [], 0
    with torch.no_grad():
        for start, stop, relu in _units(o):
            a_o, a_q, pos = o[pos:start](a_o), q[pos:start](a_q), stop  # the modules in between
            source = a_q if mode == "cascade" else a_o
            Y, Z0, Z = o[start:stop](a_o), o[start:stop](source), q[start:stop](source)
            a_o, a_q = o[start:stop](a_o), q[start:stop](a_q)
            r = by_name.get(str(start))
            if r is None:
                continue
            assert r.relu == relu, f"layer {r.name}: relu {r.relu}, but the model says {relu}"
            layer, bn = q[start], q[stop - 1] if stop - start == 2 else None
            bias = layer.bias if layer.bias is not None else getattr(bn, "bias", None)
            nnz = int((layer.weight != 0).sum()) + (0 if bias is None else int((bias != 0).sum()))
            if nnz != r.nnz_after:
                bad.append(f"{r.name}: {nnz} non-zeros, the report says {r.nnz_after}")
            cert = r.certificate
            Y, Z0, Z = _columns(torch.relu(Y) if relu else Y), _columns(Z0), _columns(Z)
            if not r.certified or r.rows < max(r.rows_total, Y.shape[0]):  # claimed on a sample of rows
                continue
            on = Y > 0 if relu else torch.ones_like(Y, dtype=torch.bool)
            d = ((Z - Y) * on).norm(dim=0)
            V = torch.zeros_like(Y) if cert.theta is None else torch.relu(Z0) + cert.theta * Z0.clamp(max=0)
            h = (Z - V).masked_fill(on, 0).clamp_min(0).norm(dim=0) if relu else torch.zeros_like(d)
            eps = torch.tensor(cert.radii if cert.radii is not None else [cert.epsilon], dtype=torch.float64)
            ball = torch.sqrt(d ** 2 + h ** 2) if cert.inactive == "hinge" else d
            side = h if cert.inactive == "halfspace" else torch.zeros_like(h)
            if cert.radii is None:
                ball, side = ball.norm().reshape(1), side.norm().reshape(1)
            floor = FLOOR * float(Y.norm()) + 1e-12
            if relu:  # prune forms V from float32 rows: its rounding scales with Z0, not with Y (0 for a dead layer)
                floor += FLOOR * float(Z0.norm())
            if bn is not None:  # float32 folding of the BatchNorm (and back) rounds each term of the sum
                floor += FLOOR * (_terms(o[start], o[start + 1], source) + _terms(layer, bn, source))
            holds = (ball <= eps * (1 + cert.tolerance) + floor) & (side <= cert.tolerance * eps + floor)
            if not bool(holds.all()):
                bad.append(f"{r.name}: {cert.claim} fails: {ball.tolist()} against eps {eps.tolist()}")
    return bad


def check_result(entry, original, before, x, res, mode) -> None:
    """The caller's model untouched; the pruned one of the same architecture (BatchNorms put
    back) with finite weights; every certified claim recomputed; the network bound, when
    given, above the output error recomputed."""
    assert _same_state(_state(original), before), "prune modified the caller's model"
    assert [type(m) for m in res.model.modules()] == [type(m) for m in original.modules()], "another architecture"
    assert res.model.state_dict().keys() == original.state_dict().keys()
    for k, v in res.model.state_dict().items():
        assert not v.is_floating_point() or bool(torch.isfinite(v).all()), f"non-finite {k}"
    failed = recheck(original, res.model, x, res.report, mode)
    assert not failed, f"certified claims that do not hold: {failed}"
    if res.report.bound is not None:
        with torch.no_grad():
            x64 = _as_model_input(original, x)
            err = float((copy.deepcopy(res.model).double()(x64) - copy.deepcopy(original).double()(x64)).norm())
        assert err <= res.report.bound * (1 + 1e-6) + 1e-9, f"output error {err} above the bound {res.report.bound}"
    certified = [r for r in res.report.layers if r.certified]
    if len(certified) == len(res.report.layers):
        count(entry, "model, every layer certified and rechecked" + (", bound rechecked" if res.report.bound is not None else ""))
    elif certified:
        count(entry, "model, some layers certified (rechecked), the others not claimed")
    else:
        count(entry, "model, no certificate claimed (" + "/".join(sorted({str(r.status) for r in res.report.layers})) + ")")


@settings(max_examples=examples(25))
@given(data=st.data())
def test_prune_answers_correctly_or_refuses_in_one_line(data):
    net, shape = data.draw(networks())
    x = data.draw(inputs_for(shape))
    name, make, target = data.draw(st.sampled_from(METHODS))
    mode = data.draw(st.sampled_from(["cascade", "parallel"]))
    extra = data.draw(st.sampled_from([{}, {}, {}, {"layers": ["0"]}, {"batch_size": 2}, {"max_rows": 5}]))
    before = _state(net)
    kind, res = run_case("prune", lambda: nettrim.prune(net, x, make(), mode=mode, run=QUIET.replace(**extra),
                                                        **target))
    assert _same_state(_state(net), before), "prune modified the caller's model"
    if res is not None:
        check_result("prune", net, before, x, res, mode)


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
    method = data.draw(st.sampled_from([NetTrim(settings=FAST, reweight=0), NetTrim(settings=FAST, reweight=0),
                                        nettrim.SparseGPT()]))
    before = _state(net)
    kind, res = run_case("shrink", lambda: nettrim.shrink(
        net, x, (x_val, y_val), max_drop, method, search=SearchOptions(max_trials=max_trials), run=QUIET))
    assert _same_state(_state(net), before), "shrink modified the caller's model"
    if res is None:
        return
    # beyond max_trials only when none of them passed (a trial at half the budget, then the least knob)
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
    check_result("shrink", net, before, x, res, "cascade")


# ---- every wrong argument: one line naming it -------------------------------------------

def _small():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    xv = torch.randn(30, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return net, x, (xv, net(xv).argmax(1))


PRUNE_REFUSALS = [  # (prune keywords, what the message must name)
    (dict(mode="serial"), "unknown mode 'serial'"), (dict(mode=None), "unknown mode"),
    (dict(mode=["cascade"]), "unknown mode"),
    *[(dict(sparsity=v), "sparsity must lie in (0, 1)") for v in (0, 1, -0.1, 1.5, math.nan, math.inf, "0.5", True)],
    (dict(counts=[1]), "counts must be a dict"), (dict(counts="0"), "counts must be a dict"),
    (dict(counts={0: 3}), "counts must be a dict"), (dict(counts={"0": 3, 2: 1}), "counts must be a dict"),
    (dict(counts={"0": -1}), "counts['0'] must be an integer in [0, 48]"),
    (dict(counts={"0": 1.5}), "counts['0'] must be an integer"), (dict(counts={"0": 49}), "counts['0']"),
    (dict(counts={"0": True}), "counts['0']"), (dict(counts={"9": 3}), "no prunable layer named 9"),
    (dict(counts={"0": 3}), "layer '2' has no count"),
    (dict(inputs=None), "inputs must be a tensor"), (dict(inputs="abc"), "inputs must be a tensor"),
    (dict(inputs={"x": 1}), "inputs must be a tensor"), (dict(inputs=[]), "inputs are empty"),
    (dict(inputs=torch.empty(0, 5)), "inputs must be a non-empty tensor"),
    (dict(inputs=torch.tensor(1.0)), "inputs must be a non-empty tensor"),
    (dict(inputs=torch.randn(10)), "have no feature axis"),
    (dict(inputs=[1, 2]), "inputs batch 0 must be a non-empty tensor"),
    (dict(inputs=[torch.randn(4, 5), torch.randn(4, 3)]), "inputs batch 1 has shape (4, 3)"),
    (dict(inputs=[torch.randn(4, 5), torch.full((4, 5), math.nan)]), "inputs batch 1 contains NaN"),
    (dict(inputs=(b for b in [torch.randn(4, 5)])), "inputs must be re-iterable"),
    (dict(inputs=torch.full((4, 5), math.inf)), "inputs contain NaN or Inf"),
    (dict(inputs=torch.randn(4, 5, device="meta")), "meta device"),
    (dict(inputs=torch.randn(4, 3)), "does not run on inputs of shape"),
    (dict(inputs=torch.ones(4, 5, dtype=torch.long)), "does not run on inputs"),
    (dict(method="magic"), "unknown method 'magic'"), (dict(method=3), "unknown method 3"),
    (dict(method=NetTrim), "unknown method"), (dict(method="sparsegpt"), "needs a target"),
    (dict(run={}), "run must be a nettrim.RunOptions"), (dict(run=None), "run must be a nettrim.RunOptions"),
    (dict(run=RunOptions(layers=["9"])), "no prunable layer named 9"),
    (dict(model="net"), "model must be a torch.nn.Module"),
]


def _one_line(call, match: str) -> str:
    with pytest.raises(NettrimError) as err:
        call()
    text = str(err.value)
    refusal(err.value)  # one non-empty line
    assert match in text, text
    return text


@pytest.mark.parametrize("kwargs, match", PRUNE_REFUSALS, ids=lambda v: repr(v)[:50])
def test_every_wrong_prune_argument_is_one_line(kwargs, match):
    net, x, _ = _small()
    _one_line(lambda: nettrim.prune(**{"model": net, "inputs": x, "run": QUIET, **kwargs}), match)


SHRINK_REFUSALS = [  # (shrink keywords, with v the validation pair)
    *[(lambda v, d=d: dict(max_drop=d), "max_drop must be a fraction in [0, 1)")
      for d in (-0.1, 1.0, math.nan, math.inf, "0.01", True, None)],
    (lambda v: dict(validation=None), "validation must be a pair"),
    (lambda v: dict(validation=v[0]), "validation must be a pair"),
    (lambda v: dict(validation=(*v, v[1])), "validation must be a pair"),
    (lambda v: dict(validation=(v[0].tolist(), v[1].tolist())), "must be tensors"),
    (lambda v: dict(validation=(v[0][:0], v[1][:0])), "validation is empty"),
    (lambda v: dict(validation=(v[0][:10], v[1][:11])), "10 inputs but 11 labels"),
    (lambda v: dict(validation=(v[0], v[1].float())), "class indices"),
    (lambda v: dict(validation=(v[0], v[1] > 0)), "class indices"),
    (lambda v: dict(validation=(v[0], v[1][:, None])), "class indices"),
    (lambda v: dict(validation=(v[0][:1], v[1][0])), "class indices"),
    (lambda v: dict(validation=(v[0], v[1] + 3)), "labels must lie in 0..2"),
    (lambda v: dict(validation=(v[0], v[1] - 3)), "labels must lie in 0..2"),
    (lambda v: dict(validation=(v[0] * math.nan, v[1])), "validation inputs contain NaN"),
    (lambda v: dict(validation=(v[0].to("meta"), v[1])), "meta device"),
    (lambda v: dict(validation=(v[0][:, :3], v[1])), "do not run through the model"),
    (lambda v: dict(mode="serial"), "unknown mode 'serial'"),
    (lambda v: dict(method="magic"), "unknown method 'magic'"),
    (lambda v: dict(inputs=torch.empty(0, 5)), "inputs must be a non-empty tensor"),
    (lambda v: dict(inputs=[]), "inputs are empty"),
    (lambda v: dict(search={"max_trials": 2}), "search must be a nettrim.SearchOptions"),
    (lambda v: dict(run=None), "run must be a nettrim.RunOptions"),
    (lambda v: dict(model=None), "model must be a torch.nn.Module"),
]


@pytest.mark.parametrize("make, match", SHRINK_REFUSALS, ids=lambda v: repr(v)[:50] if isinstance(v, str) else None)
def test_every_wrong_shrink_argument_is_one_line(make, match):
    net, x, val = _small()
    kwargs = {"model": net, "inputs": x, "validation": val, "max_drop": 0.05, "run": QUIET, **make(val)}
    _one_line(lambda: nettrim.shrink(**kwargs), match)


@pytest.mark.parametrize("kwargs, match", [
    (dict(min_epsilon=math.nan), "SearchOptions.min_epsilon must be a finite number > 0"),
    (dict(min_epsilon=-1), "SearchOptions.min_epsilon must be a finite number > 0"),
    (dict(max_epsilon=0), "SearchOptions.max_epsilon"),
    (dict(resolution=1.0), "SearchOptions.resolution must be a finite number > 1"),
    (dict(resolution=math.nan), "SearchOptions.resolution"),
    (dict(min_epsilon=0.5, max_epsilon=0.1), "min_epsilon (0.5) must not be above max_epsilon (0.1)"),
    (dict(min_sparsity=0.9, max_sparsity=0.5), "min_sparsity (0.9) must not be above max_sparsity (0.5)"),
    (dict(max_sparsity=1.0), "SearchOptions.max_sparsity"),
    (dict(max_trials=0), "SearchOptions.max_trials"),
    (dict(log="print"), "SearchOptions.log"),
    (dict(trials=3), "SearchOptions has no option 'trials'"),
])
def test_wrong_search_options_are_one_line(kwargs, match):
    _one_line(lambda: SearchOptions(**kwargs), match)


def test_an_empty_list_of_layers_is_refused():
    _one_line(lambda: RunOptions(layers=()), "RunOptions.layers must be a list of layer names (not empty)")
    _one_line(lambda: RunOptions(layers=[]), "RunOptions.layers")


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e30), (torch.float64, 1e30), (torch.float64, 1e60)])
def test_huge_inputs_prune_correctly_or_name_the_inputs(dtype, scale):
    """Inputs times 1e30 fit the solvers' float32 and are pruned (claims rechecked); 1e60 (a
    float64 model) does not, and the refusal speaks of the inputs, not of a tolerance."""
    net, x, _ = _small()
    net, x = net.to(dtype), x.to(dtype) * scale
    before = _state(net)
    for mode in ("cascade", "parallel"):
        try:
            res = nettrim.prune(net, x, NetTrim(settings=FAST), mode=mode, run=QUIET)
        except NettrimError as err:
            assert scale > 1e38, f"refused inputs that fit float32: {err}"
            text = _one_line(lambda: (_ for _ in ()).throw(err), "calibration inputs are too large")
            assert "epsilon" not in text and "eps" not in text.split()
            continue
        assert scale < 1e38, "inputs beyond float32 were not refused"
        check_result("prune", net, before, x, res, mode)
        assert all(r.certified for r in res.report.layers)


def test_the_recheck_catches_a_changed_layer():
    """The recomputation is not a formality: a pruned layer's weights moved after the fact fail it."""
    net, x, _ = _small()
    res = nettrim.prune(net, x, NetTrim(settings=FAST), run=QUIET)
    assert not recheck(net, res.model, x, res.report, "cascade")
    with torch.no_grad():
        res.model[2].weight.mul_(1.5)
    assert [b.split(":")[0] for b in recheck(net, res.model, x, res.report, "cascade")] == ["2"]
    with torch.no_grad():
        res.model[0].weight[res.model[0].weight == 0] = 1e-3  # zeros filled: the count is wrong
    assert any("non-zeros" in b for b in recheck(net, res.model, x, res.report, "cascade"))
