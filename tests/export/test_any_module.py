"""Any nn.Module: a user's own modules go through sparse and dense files bit for bit, by their
own state-dict names, and back through ``load`` (a state dict) or ``load(into=model)``."""
import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import nettrim
from nettrim.errors import NettrimError


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of ``t`` (so that NaN payloads and the sign of zero compare exactly)."""
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.detach().contiguous().view(view)


def magnitude_prune(model: nn.Module, fraction: float) -> nn.Module:
    """Zero (with +0.0) the ``fraction`` smallest-magnitude entries of every weight matrix or
    kernel, layer by layer."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.ndim >= 2:
                cut = p.abs().flatten().kthvalue(int(fraction * p.numel())).values
                p.copy_(torch.where(p.abs() > cut, p, torch.zeros_like(p)))
    return model.eval()


def user_mlp() -> nn.Sequential:
    """A user's LeNet-300-100: no Flatten, so not nettrim's own ``lenet-300-100``."""
    torch.manual_seed(0)
    return magnitude_prune(nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                                         nn.Linear(100, 10)), 0.95)


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16 * 13 * 13, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def conv_bn() -> ConvBN:
    """A conv net whose BatchNorm buffers (running statistics, the int64 batch counter) have
    moved away from their initial values."""
    torch.manual_seed(1)
    model = ConvBN().train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, 28, 28))
    return magnitude_prune(model, 0.8)


class Tied(nn.Module):
    """An embedding reused as the output layer, one Linear registered twice, and non-float
    buffers (a bool mask, int32 and uint8 tables, an int64 counter)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.shared = nn.Linear(16, 16)
        self.again = self.shared
        self.out = nn.Linear(16, 50, bias=False)
        self.out.weight = self.embed.weight
        self.register_buffer("mask", torch.rand(16) > 0.5)
        self.register_buffer("table", torch.randint(-1000, 1000, (4, 5), dtype=torch.int32))
        self.register_buffer("codes", torch.randint(0, 255, (7,), dtype=torch.uint8))
        self.register_buffer("steps", torch.tensor(12345, dtype=torch.int64))

    def forward(self, ids):
        h = self.again(torch.relu(self.shared(self.embed(ids)))) * self.mask
        return self.out(h)


def tied() -> Tied:
    torch.manual_seed(2)
    return magnitude_prune(Tied(), 0.5)


MODELS = {"mlp": user_mlp, "conv-bn": conv_bn, "tied": tied}


def assert_same_bits(got: dict, want: dict) -> None:
    assert list(got) == list(want) or set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        assert torch.equal(bits(got[k]), bits(want[k])), f"{k} does not come back bit for bit"


@pytest.mark.parametrize("fmt", ["sparse", "dense"])
@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_is_bit_exact(name, fmt, tmp_path):
    model = MODELS[name]()
    info = nettrim.export(model, tmp_path / "m.safetensors", fmt)
    assert info.arch is None and info.arch_kwargs is None
    loaded = nettrim.load(info.path)
    assert isinstance(loaded, dict)
    assert_same_bits(loaded, model.state_dict())


@pytest.mark.parametrize("fmt", ["sparse", "dense"])
@pytest.mark.parametrize("name", MODELS)
def test_load_into_fills_a_fresh_model_in_place(name, fmt, tmp_path):
    model = MODELS[name]()
    path = nettrim.export(model, tmp_path / "m.safetensors", fmt).path
    torch.manual_seed(99)
    fresh = type(model)() if name != "mlp" else nn.Sequential(
        nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    params = {k: p.data_ptr() for k, p in fresh.named_parameters()}
    assert nettrim.load(path, into=fresh) is fresh
    assert {k: p.data_ptr() for k, p in fresh.named_parameters()} == params  # filled in place
    assert_same_bits(fresh.state_dict(), model.state_dict())


def test_ties_are_stored_once_and_come_back_tied(tmp_path):
    model = tied()
    path = nettrim.export(model, tmp_path / "m.safetensors", "dense").path
    state = nettrim.load(path)
    assert state["out.weight"] is state["embed.weight"]
    assert state["again.weight"] is state["shared.weight"]
    fresh = Tied()
    nettrim.load(path, into=fresh)
    assert fresh.out.weight is fresh.embed.weight and fresh.again is fresh.shared
    ids = torch.randint(0, 50, (3, 7))
    with torch.no_grad():
        assert torch.equal(fresh(ids), model(ids))
    untied = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert path.stat().st_size < untied - 50 * 16 * 4  # the tied embedding is stored once


def test_a_user_mlp_sparse_file_is_15x_smaller_than_torch_save(tmp_path):
    model = user_mlp()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    sparse = nettrim.export(model, tmp_path / "m.safetensors").bytes
    assert buffer.getbuffer().nbytes / sparse >= 15


def test_loaded_state_dict_runs_the_same_function(tmp_path):
    model = conv_bn()
    fresh = ConvBN().eval()
    fresh.load_state_dict(nettrim.load(nettrim.export(model, tmp_path / "m.st").path))
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("change", ["shape", "name", "dtype", "missing"])
def test_load_into_a_different_model_names_the_first_mismatch(change, tmp_path):
    path = nettrim.export(conv_bn(), tmp_path / "m.st").path
    other = ConvBN()
    expect = {"shape": r"tensor 'head.weight' is \[10, 2704\] in .* but \[10, 2705\] in ConvBN",
              "name": r"holds a tensor 'head.bias', which ConvBN does not have",
              "dtype": r"tensor 'features.0.bias' is float32 in .* but float64 in ConvBN",
              "missing": r"holds no tensor 'extra', which ConvBN has"}[change]
    if change == "shape":
        other.head = nn.Linear(2705, 10)
    elif change == "name":
        other.head = nn.Linear(2704, 10, bias=False)
    elif change == "dtype":
        other.features[0].bias.data = other.features[0].bias.data.double()
    else:
        other.register_buffer("extra", torch.zeros(2))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(NettrimError, match=expect) as exc_info:
        nettrim.load(path, into=other)
    assert "\n" not in str(exc_info.value)
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())  # untouched


def test_onnx_of_any_module_given_a_sample(tmp_path):
    model = conv_bn()
    sample = torch.rand(5, 1, 28, 28)
    info = nettrim.export(model, tmp_path / "m.onnx", "onnx", sample=sample)
    assert info.onnx_max_abs_diff < 1e-4 and info.arch is None
    x = torch.rand(9, 1, 28, 28)
    got = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-5)


def test_onnx_of_a_module_with_several_inputs_and_outputs(tmp_path):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(6, 3)

        def forward(self, x, y):
            return self.a(x) + self.b(y), self.a(x).relu()

    torch.manual_seed(3)
    model = Two().eval()
    info = nettrim.export(model, tmp_path / "two.onnx", "onnx", sample=(torch.rand(2, 4), torch.rand(2, 6)))
    x, y = torch.rand(7, 4), torch.rand(7, 6)
    got = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"]).run(
        None, {"input0": x.numpy(), "input1": y.numpy()})
    with torch.no_grad():
        want = model(x, y)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5)


def test_a_model_nettrim_builds_still_records_its_architecture(tmp_path):
    from nettrim.models import build_model

    model = magnitude_prune(build_model("lenet-300-100"), 0.95)
    info = nettrim.export(model, tmp_path / "m.st")
    assert info.arch == "lenet-300-100"
    loaded = nettrim.load(info.path)
    assert isinstance(loaded, nn.Module) and repr(loaded) == repr(model)
    assert_same_bits(loaded.state_dict(), model.state_dict())
