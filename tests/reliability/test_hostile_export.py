"""Hostile inputs for ``nettrim.export`` and ``nettrim.load``: registered architectures with
random sparsity, every dtype files hold, NaN, +-Inf, -0.0, subnormals and huge values,
non-contiguous and expanded parameters, meta tensors; then the written files damaged
(truncated, bytes flipped, garbage appended, replaced by other files). Every export is a file
that loads back bit for bit (a -0.0 in a sparse file comes back as +0.0, as documented) or a
one-line NettrimError with nothing written; every damaged file loads as the original or is
refused in one line. Then any user module (random widths, dtypes, ties, non-float buffers)
bit for bit through ``load`` and ``load(into=)``; hostile paths (sysfs, /proc, under a file,
NUL, too long, None, a missing directory) refused in one line naming them before the model is
touched; and forged files whose sha256 was recomputed (arch_kwargs of the wrong type or range,
shapes that would allocate terabytes, int/bool weights, forged ties) refused in one line
before anything is built."""
import copy
import pickle

import pytest
import torch
from hypothesis import given, settings, strategies as st

import nettrim
from nettrim.errors import NettrimError
from nettrim.models import build_model

from reliability_helpers import count, examples, refusal, run_case

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


# ---- any module: user-built modules with random widths, dtypes, ties and buffers ---------------

@st.composite
def user_modules(draw):
    """A user's nn.Sequential (no Flatten: no registered architecture), random widths, dtype,
    zero fraction, special values, a tied layer and non-float buffers."""
    widths = draw(st.lists(st.integers(1, 40), min_size=2, max_size=4))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    layers = [torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    model = torch.nn.Sequential(*[m for lin in layers for m in (lin, torch.nn.ReLU())][:-1]).to(dtype)
    zero_fraction = draw(st.sampled_from([0.0, 0.5, 0.95, 1.0]))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g).to(dtype) * (torch.rand(p.shape, generator=g) >= zero_fraction))
            for i, v in enumerate(draw(st.lists(st.sampled_from(SPECIAL), max_size=3))):
                p.view(-1)[(i * 7919) % p.numel()] = v
    if draw(st.booleans()) and widths[0] == widths[-1] and len(layers) > 1:
        layers[-1].weight = torch.nn.Parameter(layers[0].weight.detach().T.contiguous()) \
            if draw(st.booleans()) else layers[0].weight  # a copy, or the same Parameter (a tie)
    if draw(st.booleans()):
        model.register_buffer("mask", torch.rand(widths[-1], generator=g) > 0.5)
        model.register_buffer("count", torch.randint(-2**40, 2**40, (3,), generator=g))
    return model


@settings(max_examples=examples(20))
@given(user_modules(), st.sampled_from(["sparse", "dense"]))
def test_any_module_round_trips_bit_for_bit(tmp_path_factory, model, fmt):
    out = tmp_path_factory.mktemp("any") / "m.safetensors"
    kind, info = run_case("export", lambda: nettrim.export(model, out, fmt))
    assert info is not None, f"a user module was refused: {kind}"
    count("export", f"user module written ({fmt})")
    want = model.state_dict()
    kind, got = run_case("load", lambda: nettrim.load(out))
    assert isinstance(got, dict) and got.keys() == want.keys(), kind
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        for t in fresh.state_dict().values():
            t.zero_() if t.dtype != torch.bool else t.fill_(True)
    kind, filled = run_case("load", lambda: nettrim.load(out, into=fresh))
    assert filled is fresh, kind
    for state in (got, fresh.state_dict()):
        for k, expect in want.items():
            same = bits(state[k]) == bits(expect)
            if fmt == "sparse" and expect.is_floating_point():
                same |= (expect == 0) & (bits(state[k]) == 0)
            assert bool(same.all()), f"{k} does not come back bit for bit"
    count("load", "user module, bit for bit (state dict and into=)")


# ---- hostile paths: one line naming the path, before any work --------------------------------

class Spy(torch.nn.Module):
    """A user module that notes whether export looked at it (its state dict, its forward)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.touched = False

    def state_dict(self, *args, **kwargs):
        self.touched = True
        return super().state_dict(*args, **kwargs)

    def forward(self, x):
        self.touched = True
        return self.fc(x)


def hostile_path(kind: str, tmp) -> object:
    a_file = tmp / "a-file"
    a_file.write_bytes(b"x")
    return {"sys": "/sys/kernel/x.safetensors", "proc": "/proc/x.safetensors", "proc-self": "/proc/self/x",
            "under-a-file": a_file / "y.safetensors", "nul": str(tmp / "a\0b.safetensors"),
            "long-name": tmp / ("n" * 300), "long-path": "/".join([str(tmp)] + ["d" * 200] * 25),
            "none": None, "number": 5, "empty": "", "missing-dir": tmp / "no" / "such" / "m.st",
            "a-directory": tmp, "bytes": b"/tmp/x.st"}[kind]


PATH_KINDS = ["sys", "proc", "proc-self", "under-a-file", "nul", "long-name", "long-path", "none", "number",
              "empty", "missing-dir", "a-directory", "bytes"]


@pytest.mark.parametrize("fmt", ["sparse", "dense", "onnx", "compressed-tensors"])
@pytest.mark.parametrize("kind", PATH_KINDS)
def test_a_bad_path_is_one_line_naming_it_before_any_work(kind, fmt, tmp_path):
    path = hostile_path(kind, tmp_path)
    spy = Spy()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(NettrimError) as exc_info:
        nettrim.export(spy, path, fmt, sample=torch.rand(2, 3))
    message = str(exc_info.value)
    refusal(exc_info.value)  # one non-empty line
    count("export", refusal(exc_info.value))
    assert not spy.touched, "export worked on the model before refusing the path"
    if kind not in ("none", "number", "bytes", "empty", "nul"):
        assert str(path)[:60] in message, f"the message does not name the path: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("kind", ["sys", "under-a-file", "missing-dir", "long-name"])
def test_cli_export_refuses_a_bad_out_in_one_line(kind, tmp_path, capsys):
    from nettrim.cli.main import main
    from nettrim.models import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "c.pt", build_model("mlp-60-60"), "mlp-60-60", {})
    out = hostile_path(kind, tmp_path)
    rc = main(["export", str(ckpt), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and len(err.splitlines()) == 1 and str(out)[:40] in err


def test_load_refuses_bad_paths_in_one_line(tmp_path):
    for kind in PATH_KINDS:
        path = hostile_path(kind, tmp_path)
        kind_, value = run_case("load", lambda: nettrim.load(path))
        assert value is None, kind


# ---- forged files: metadata edited and the sha256 recomputed ---------------------------------

def forge(src, dst, meta=None, tensors=None, drop=()) -> None:
    """``src`` with metadata entries and tensors replaced, its sha256 recomputed: a file the
    hash cannot tell from a genuine one."""
    from safetensors.torch import save_file

    from nettrim.export import container

    stored, old = container.read(src)
    stored = {**{k: v for k, v in stored.items() if k not in drop}, **(tensors or {})}
    new = {k: v for k, v in {**old, **(meta or {})}.items() if v is not None and k != "sha256"}
    new["sha256"] = container.digest(new, stored)
    save_file(stored, str(dst), metadata=new)


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    d = tmp_path_factory.mktemp("forged")
    torch.manual_seed(0)
    model = build_model("lenet-300-100").eval()
    return {fmt: nettrim.export(model, d / f"m.{fmt}", fmt).path for fmt in ("sparse", "dense")}


FORGED_KWARGS = [
    ({"in_features": "abc"}, "arch_kwargs.in_features must be an integer"),
    ({"in_shape": [1, "a", 28]}, "arch_kwargs.in_shape must be a list of 3 integers"),
    ({"in_features": 10**10}, "arch_kwargs.in_features must be an integer"),
    ({"in_features": 10**9}, r"tensor '1.weight' is \[300, 784\] in .* but \[300, 1000000000\]"),
    ({"in_shape": [1, 100000, 100000]}, r"\[300, 784\] in .* but \[300, 10000000000\]"),
    ({"hidden": [10**9, 100]}, r"is \[300, 784\] in .* but \[1000000000, 784\]"),
    ({"hidden": list(range(1, 40))}, "asks for 39 layers"),
    ({"n_classes": -1}, "arch_kwargs.n_classes must be an integer"),
    ({"n_classes": True}, "arch_kwargs.n_classes must be an integer"),
    ({"dropout": 1.5}, "arch_kwargs.dropout must be a finite number"),
    ({"dropout": "x"}, "arch_kwargs.dropout must be a finite number"),
    ({"bogus": 1}, "arch_kwargs has 'bogus'"),
    ([1, 2], "arch_kwargs metadata is not a JSON object"),
]


@pytest.mark.parametrize("kwargs,message", FORGED_KWARGS, ids=[str(k)[:30] for k, _ in FORGED_KWARGS])
@pytest.mark.parametrize("fmt", ["sparse", "dense"])
def test_forged_arch_kwargs_fail_fast_in_one_line(genuine, fmt, kwargs, message, tmp_path):
    import json
    import resource
    import time

    forged = tmp_path / "forged.st"
    forge(genuine[fmt], forged, meta={"arch_kwargs": json.dumps(kwargs)})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(NettrimError, match=message) as exc_info:
        nettrim.load(forged)
    count("load", refusal(exc_info.value))
    assert time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KiB: nothing big allocated


def test_a_forged_architecture_depth_is_bounded_by_the_stored_tensors(tmp_path):
    import json

    info = nettrim.export(build_model("vit-tiny"), tmp_path / "vit.st")
    assert info.arch == "vit-tiny"
    forge(info.path, tmp_path / "deep.st", meta={"arch_kwargs": json.dumps({"depth": 10**6})})
    with pytest.raises(NettrimError, match="asks for 1000000 layers"):
        nettrim.load(tmp_path / "deep.st")


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.int8])
def test_a_non_float_weight_is_refused_in_one_line(genuine, dtype, tmp_path):
    forged = tmp_path / "int.st"
    weight = torch.ones(300, 784, dtype=dtype)
    forge(genuine["dense"], forged, tensors={"1.weight": weight})
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(NettrimError, match=fr"tensor '1.weight' is {name} in .* but float32 in architecture"):
        nettrim.load(forged)


def test_a_forged_layout_that_would_not_fit_in_memory_is_refused(genuine, tmp_path):
    import json

    from nettrim.export import container

    _, meta = container.read(genuine["sparse"])
    layout = json.loads(meta["layout"])
    layout["1.weight"] = {"coding": "rice", "dtype": "float32", "shape": [10**7, 10**7], "k": 0, "nnz": 0}
    forge(genuine["sparse"], tmp_path / "huge.st",
          meta={"layout": json.dumps(layout), "arch": None, "arch_kwargs": None},
          tensors={"1.weight/values": torch.zeros(0), "1.weight/positions": torch.zeros(0, dtype=torch.uint8)})
    with pytest.raises(NettrimError, match="GB of tensors once decoded, more than"):
        nettrim.load(tmp_path / "huge.st")
    forge(genuine["sparse"], tmp_path / "huge-arch.st",  # the architecture agrees: still refused
          meta={"layout": json.dumps(dict(layout, **{"1.weight": {**layout["1.weight"], "shape": [300, 10**10]}})),
                "arch_kwargs": json.dumps({"in_features": 10**10 // 10})})
    with pytest.raises(NettrimError):
        nettrim.load(tmp_path / "huge-arch.st")


@pytest.mark.parametrize("tied", ['{"x": "nothing"}', '{"1.weight": "3.weight"}', '[1]', "not json"])
def test_forged_ties_are_refused_in_one_line(genuine, tied, tmp_path):
    forge(genuine["dense"], tmp_path / "tied.st", meta={"tied": tied})
    kind, value = run_case("load", lambda: nettrim.load(tmp_path / "tied.st"))
    assert value is None, "a forged tie was accepted"


BAD_VALUES = ["abc", -1, 0, 1.5, 10**12, None, True, [], [1, 2, 3], {"a": 1}, float("nan"), 2**31 - 1]


@settings(max_examples=examples(30))
@given(st.sampled_from(["sparse", "dense"]),
       st.dictionaries(st.sampled_from(["in_features", "in_shape", "n_classes", "dropout", "hidden", "bogus"]),
                       st.sampled_from(BAD_VALUES), min_size=1, max_size=3))
def test_any_forged_arch_kwargs_load_or_refuse_in_one_line(genuine, tmp_path_factory, fmt, kwargs):
    import json

    forged = tmp_path_factory.mktemp("kw") / "f.st"
    try:
        text = json.dumps(kwargs)
    except ValueError:
        return
    forge(genuine[fmt], forged, meta={"arch_kwargs": text})
    kind, model = run_case("load", lambda: nettrim.load(forged), seconds=20)
    if model is not None:  # keywords that happen to describe the stored model: it loads, exactly
        want = nettrim.load(genuine[fmt]).state_dict()
        assert all(torch.equal(bits(model.state_dict()[k]), bits(want[k])) for k in want)
        count("load", "forged arch_kwargs that describe the stored model: loaded")
