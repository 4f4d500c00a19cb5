"""Hostile inputs for ``nettrim.export`` and ``nettrim.load``: registered architectures with
random sparsity, every dtype files hold, NaN, +-Inf, -0.0, subnormals and huge values,
non-contiguous and expanded parameters, meta tensors; then the written files damaged
(truncated, bytes flipped, garbage appended, replaced by other files). Every export is a file
that loads back bit for bit (a -0.0 in a sparse file comes back as +0.0, as documented) or a
one-line NettrimError with nothing written; every damaged file loads as the original or is
refused in one line."""
import pickle

import torch
from hypothesis import given, settings, strategies as st

import nettrim
from nettrim.models import build_model

from reliability_helpers import count, examples, run_case

ARCHS = [("mlp-60-60", {}), ("lenet5", {}), ("mlp-60-60", {"widths": [7, 3]})]
SPECIAL = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-40, 3e38, -1e-45, 65504.0]


@st.composite
def models(draw):
    arch, kwargs = draw(st.sampled_from(ARCHS))
    try:
        model = build_model(arch, **kwargs).eval()
    except Exception:  # a builder without widths: the plain one
        arch, kwargs = "mlp-60-60", {}
        model = build_model(arch).eval()
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    zero_fraction = draw(st.sampled_from([0.0, 0.5, 0.95, 1.0]))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    model = model.to(dtype)
    specials = draw(st.lists(st.sampled_from(SPECIAL), max_size=4))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(torch.rand(p.shape, generator=g) >= zero_fraction)
            for i, v in enumerate(specials):
                p.view(-1)[(i * 7919) % p.numel()] = v
    layout = draw(st.sampled_from(["contiguous", "contiguous", "transposed", "expanded", "meta"]))
    first = next(m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    if layout == "transposed" and first.weight.ndim == 2:
        first.weight = torch.nn.Parameter(first.weight.detach().T.contiguous().T)
    elif layout == "expanded" and first.bias is not None:
        first.bias = torch.nn.Parameter(first.bias.detach()[:1].expand_as(first.bias))
    elif layout == "meta":
        model = model.to("meta")
    return model, arch, kwargs


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of ``t``, so that NaN payloads and the sign of zero compare exactly."""
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.detach().contiguous().view(view)


def damage(data: bytes, how: str, where: int) -> bytes:
    if how == "truncate":
        return data[: where % max(len(data), 1)]
    if how == "flip":
        i = where % len(data)
        return data[:i] + bytes([data[i] ^ 0x41]) + data[i + 1:]
    if how == "append":
        return data + b"\x00garbage"
    if how == "text":
        return b"hello, not a model\n"
    if how == "pickle":
        return pickle.dumps({"weights": [1, 2, 3]})
    if how == "empty":
        return b""
    return data


@settings(max_examples=examples(25))
@given(models(), st.sampled_from(["sparse", "dense"]),
       st.sampled_from(["none", "truncate", "flip", "flip", "append", "text", "pickle", "empty"]),
       st.integers(0, 2**31))
def test_export_round_trips_or_refuses_and_damage_is_caught(tmp_path_factory, made, fmt, how, where):
    model, arch, kwargs = made
    out = tmp_path_factory.mktemp("export") / f"model.{fmt}"
    kind, info = run_case("export", lambda: nettrim.export(model, out, fmt))
    if info is None:
        assert not out.exists() and not list(out.parent.iterdir()), "a refused export left a file"
        return
    count("export", f"file written ({fmt})")
    kind, loaded = run_case("load", lambda: nettrim.load(out))
    assert loaded is not None, f"an exported file does not load: {kind}"
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        expect = want[k].detach().cpu()
        assert got[k].dtype == expect.dtype and got[k].shape == expect.shape, k
        same = bits(got[k]) == bits(expect)
        if fmt == "sparse" and expect.is_floating_point():  # a Rice-coded -0.0 comes back as +0.0
            same |= (expect == 0) & (bits(got[k]) == 0)
        assert bool(same.all()), f"{k} does not come back bit for bit"
    count("load", "round trip, bit for bit")
    data = out.read_bytes()
    bad = damage(data, how, where)
    if bad == data:
        return
    out.write_bytes(bad)
    kind, again = run_case("load", lambda: nettrim.load(out))
    if again is not None:  # the damage missed every byte that matters: the same model, bit for bit
        assert all(torch.equal(bits(again.state_dict()[k]), bits(got[k])) for k in got)
        count("load", "damaged file, content intact: same model")
