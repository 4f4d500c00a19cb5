"""Hostile inputs for ``trim_layer``: every case is a correct answer whose ``within`` flag is
true only when an independent float64 measurement on the caller's own X and Y agrees, or a
one-line NettrimError; never a traceback or a hang."""
import math

import torch
from hypothesis import given, settings, strategies as st

from nettrim.layer import ADMMSettings, trim_layer
from nettrim.layer.result import INFEASIBLE

from reliability_helpers import count, examples, run_case

FAST = ADMMSettings(max_iterations=400)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool]


@st.composite
def matrices(draw):
    """(X, W, kind): shapes from one sample / one feature to more features than samples."""
    P = draw(st.sampled_from([1, 2, 3, 7, 25, 60]))
    N = draw(st.sampled_from([1, 2, 5, 12, 40]))
    M = draw(st.sampled_from([1, 2, 4]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["gauss", "gauss", "zeros", "constant", "duplicates", "rank1",
                                 "onehot", "wide-range"]))
    X = torch.randn(P, N, generator=g, dtype=torch.float64)
    if kind == "zeros":
        X.zero_()
    elif kind == "constant":
        X.fill_(draw(st.sampled_from([1.0, -3.0, 1e-3])))
    elif kind == "duplicates":
        X = X[torch.randint(0, max(1, P // 3), (P,), generator=g)]
    elif kind == "rank1":
        X = torch.randn(P, 1, generator=g, dtype=torch.float64) @ torch.randn(1, N, generator=g, dtype=torch.float64)
    elif kind == "onehot":
        X = torch.nn.functional.one_hot(torch.randint(0, N, (P,), generator=g), N).double()
    elif kind == "wide-range":
        X = X * 10.0 ** torch.randint(-6, 7, (1, N), generator=g).double()
    W = torch.randn(N, M, generator=g, dtype=torch.float64)
    return X, W, kind


@st.composite
def layer_cases(draw):
    X, W, kind = draw(matrices())
    relu = draw(st.booleans())
    sx = 10.0 ** draw(st.integers(-6, 6))
    sy = draw(st.sampled_from([1.0, sx]))
    Z = (X @ W) * sy
    target = draw(st.sampled_from(["fit", "fit", "dead", "zero", "noisy"]))
    if target == "dead":
        Z = -Z.abs() - 1.0
    elif target == "zero":
        Z = torch.zeros_like(Z)
    elif target == "noisy":
        Z = Z + torch.randn(Z.shape, generator=torch.Generator().manual_seed(1), dtype=Z.dtype) * Z.abs().mean()
    Y = torch.relu(Z) if relu else Z
    X = X * sx
    rel = draw(st.sampled_from([1e-4, 0.02, 0.1, 0.5, 3.0]))
    eps = rel * float(Y.norm())
    special = draw(st.sampled_from([None] * 8 + ["nan-eps", "inf-eps", "neg-eps", "zero-eps",
                                                 "nan-x", "inf-y", "meta"]))
    dtype = draw(st.sampled_from([torch.float32] * 4 + DTYPES))
    layout = draw(st.sampled_from(["contiguous", "transposed", "expanded", "strided"]))
    opts = dict(relu=relu, bias=draw(st.booleans()), per_neuron=draw(st.booleans()),
                reweight=draw(st.sampled_from([0, 0, 1])), refit=draw(st.booleans()),
                hinge=draw(st.booleans()))
    return dict(X=X, Y=Y, eps=eps, special=special, dtype=dtype, layout=layout, opts=opts,
                kind=kind, target=target)


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "transposed":
        return t.T.contiguous().T
    if layout == "expanded":  # every sample the first one: a broadcast view, stride 0
        return t[:1].expand(t.shape[0], t.shape[1])
    if layout == "strided":
        return torch.repeat_interleave(t, 2, dim=0)[::2]
    return t


def _prepare(case):
    X, Y, eps = case["X"].clone(), case["Y"].clone(), case["eps"]
    special = case["special"]
    if special == "nan-eps":
        eps = math.nan
    elif special == "inf-eps":
        eps = math.inf
    elif special == "neg-eps":
        eps = -abs(eps) - 1.0
    elif special == "zero-eps":
        eps = 0.0
    elif special == "nan-x":
        X[0, 0] = math.nan
    elif special == "inf-y":
        Y[0, -1] = math.inf
    X, Y = _layout(X, case["layout"]), _layout(Y, case["layout"])
    dtype = case["dtype"]
    if dtype == torch.bool:
        Xc, Yc = X != 0, Y != 0
    else:
        Xc, Yc = X.to(dtype), Y.to(dtype)
    if special == "meta":
        Xc, Yc = Xc.to("meta"), Yc.to("meta")
    return Xc, Yc, eps


def independent_check(X, Y, res, opts, tol) -> bool:
    """The documented constraints, in float64 on the tensors the caller passed."""
    X, Y = X.double(), Y.double()
    Z = X @ res.weight.double().T + (0 if res.bias is None else res.bias.double())
    active = Y > 0 if opts["relu"] else torch.ones_like(Y, dtype=torch.bool)
    D = (Z - Y) * active
    H = (Z.masked_fill(active, 0).clamp_min(0)) if opts["relu"] else torch.zeros_like(Z)
    floor = 1e-6 * float(Y.norm()) + 1e-12
    eps = res.epsilon
    hinge = (opts["hinge"] or opts["refit"]) and opts["relu"]
    if opts["per_neuron"]:
        norms = (Y * active).norm(dim=0)
        radii = eps * norms / norms.norm() if float(norms.norm()) > 0 else torch.zeros_like(norms)
        d, h = D.norm(dim=0), H.norm(dim=0)
        if hinge:
            return bool((torch.sqrt(d**2 + h**2) <= radii * (1 + tol) + floor).all())
        return bool(((d <= radii * (1 + tol) + floor) & (h <= tol * radii + floor)).all())
    d, h = float(D.norm()), float(H.norm())
    if hinge:
        return math.hypot(d, h) <= eps * (1 + tol) + floor
    return d <= eps * (1 + tol) + floor and h <= tol * eps + floor


@settings(max_examples=examples(40))
@given(layer_cases())
def test_trim_layer_answers_correctly_or_refuses_in_one_line(case):
    X, Y, eps = _prepare(case)
    kind, res = run_case("trim_layer", lambda: trim_layer(X, Y, eps, settings=FAST, **case["opts"]))
    if res is None:
        return
    M, N = Y.shape[1], X.shape[1]
    assert res.weight.shape == (M, N) and res.weight.device.type == "cpu"
    assert (res.bias is None) == (not case["opts"]["bias"]) and (res.bias is None or res.bias.shape == (M,))
    assert bool(torch.isfinite(res.weight).all()), "non-finite weights returned"
    assert res.bias is None or bool(torch.isfinite(res.bias).all())
    assert res.nnz == int((res.weight != 0).sum()) + (0 if res.bias is None else int((res.bias != 0).sum()))
    if res.within:
        assert independent_check(X, Y, res, case["opts"], FAST.feasibility_tol), \
            "within=True but the constraints do not hold on the caller's X and Y"
        count("trim_layer", "certified answer (within, checked in float64)")
    elif res.status == INFEASIBLE:
        count("trim_layer", "answer marked infeasible (least-squares fit outside the ball)")
    else:
        count("trim_layer", f"answer not certified (status {res.status})")
