"""Sparse and dense files give back the exact state dict, on registered architectures."""
import numpy as np
import pytest
import torch

import nettrim.export as ex
from nettrim.export import codec
from nettrim.models import build_model

ARCHS = [("lenet-300-100", {}), ("lenet5", {}), ("lenet-demo", {}), ("cifar-cnn", {"width": 4})]


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("fmt", ["sparse", "dense"])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.95, 1.0])
@pytest.mark.parametrize("arch,kwargs", ARCHS, ids=[a for a, _ in ARCHS])
def test_round_trip_is_exact(sparse_model, arch, kwargs, fraction, fmt, tmp_path):
    model = sparse_model(arch, fraction, **kwargs)
    info = ex.export(model, tmp_path / f"m.{fmt}", fmt)
    assert (info.arch, info.arch_kwargs) == (arch, kwargs)
    loaded = ex.load(info.path)
    assert repr(loaded) == repr(model) and not loaded.training
    assert_same_state(model, loaded)


def test_sparse_keeps_special_values_and_dtypes(sparse_model, tmp_path):
    """NaN and infinities keep their bits; -0.0 in a coded tensor comes back as +0.0 (equal);
    half precision stays half precision."""
    model = sparse_model("mlp-60-60", 0.9).half()
    w = model[1].weight.data
    w[0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0])
    loaded = ex.load(ex.export(model, tmp_path / "m.st").path)
    got = loaded[1].weight.data
    assert got.dtype == torch.float16
    assert torch.equal(got[1:], w[1:])
    assert torch.equal(got.view(torch.int16)[0, :3], w.view(torch.int16)[0, :3])
    assert got[0, 3] == 0 and not torch.signbit(got[0, 3])


def test_loaded_model_computes_the_same_function(sparse_model, tmp_path):
    model = sparse_model("lenet5", 0.9)
    x = torch.rand(8, 1, 28, 28)
    loaded = ex.load(ex.export(model, tmp_path / "m.st").path)
    assert torch.equal(model(x), loaded(x))


def test_arch_kwargs_are_recorded_minimal_and_rebuild(tmp_path):
    model = build_model("lenet-300-100", in_shape=[1, 28, 28], n_classes=10, dropout=0.2)
    info = ex.export(model, tmp_path / "m.st", "dense")
    assert info.arch_kwargs == {"dropout": 0.2}
    assert ex.load(info.path)[3].p == 0.2


@pytest.mark.parametrize("density", [0.0, 0.003, 0.05, 0.5, 1.0])
def test_rice_code_round_trip(density):
    rng = np.random.default_rng(1)
    positions = np.flatnonzero(rng.random(100_000) < density)
    code, k = codec.encode(positions)
    assert code.dtype == np.uint8 and code.size == codec.code_bytes(codec.gaps_of(positions), k)
    assert np.array_equal(codec.decode(code, k, positions.size), positions)


def test_rice_code_handles_long_gaps():
    positions = np.array([0, 5, 2**33, 2**33 + 1], dtype=np.int64)
    code, k = codec.encode(positions)
    assert np.array_equal(codec.decode(code, k, 4), positions)


def test_rice_code_is_near_the_entropy_at_95_percent():
    """0.286 bits per weight is the entropy of an i.i.d. pattern with 5 % non-zeros."""
    rng = np.random.default_rng(2)
    positions = np.flatnonzero(rng.random(200_000) < 0.05)
    code, _ = codec.encode(positions)
    assert 8 * code.size / 200_000 < 0.30


def test_sparse_csr_wrapper_computes_the_same_outputs(sparse_model):
    model = sparse_model("lenet5", 0.9)
    csr = ex.to_sparse_csr(model)
    assert sum(isinstance(m, ex.SparseLinear) for m in csr.modules()) == 3
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(csr(x), model(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(csr(x[:1]), model(x[:1]), rtol=1e-5, atol=1e-5)


def test_top_level_export_and_load(sparse_model, tmp_path):
    import nettrim

    model = sparse_model("mlp-60-60", 0.95)
    info = nettrim.export(model, tmp_path / "m.safetensors")
    assert info.format == "sparse"
    assert_same_state(model, nettrim.load(info.path))
