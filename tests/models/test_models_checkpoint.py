import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nettrim.errors import NettrimError
from nettrim.models import (build_model, export_safetensors, load_checkpoint, save_checkpoint,
                            train)


def leftovers(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("arch, kw, shape", [
    ("mlp-60-60", {"in_features": 20, "dropout": 0.1}, (20,)),
    ("cifar-cnn", {"in_shape": (3, 16, 16), "width": 8}, (3, 16, 16)),
    ("lenet5", {}, (1, 28, 28)),
])
def test_round_trip_gives_identical_outputs(tmp_path, arch, kw, shape):
    torch.manual_seed(0)
    model = build_model(arch, **kw)
    x = torch.randn(32, *shape)
    train(model, x, torch.randint(0, 10, (32,)), epochs=1, batch_size=8, progress=False)
    meta = {"epochs": np.int64(1), "acc": np.float32(0.5), "src": tmp_path, "tags": ("a", 2)}
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, arch, kw, meta)
    loaded, info = load_checkpoint(path)
    assert not loaded.training
    assert info["arch"] == arch and info["arch_kwargs"] == kw
    assert info["meta"] == {"epochs": 1, "acc": 0.5, "src": str(tmp_path), "tags": ("a", 2)}
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    assert leftovers(path.parent) == [] and oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_file_is_plain_weights_only(tmp_path):
    model = build_model("mlp-60-60", in_features=20)
    save_checkpoint(tmp_path / "m.pt", model, "mlp-60-60", {"in_features": 20}, {"note": "x"})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert {"arch", "arch_kwargs", "state_dict", "meta"} <= set(raw)
    rebuilt = build_model(raw["arch"], **raw["arch_kwargs"])
    rebuilt.load_state_dict(raw["state_dict"])
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.parameters(), model.parameters()))


def test_overwrite_is_atomic_and_failed_save_keeps_old_file(tmp_path):
    path = tmp_path / "m.pt"
    model = build_model("mlp-60-60", in_features=20)
    save_checkpoint(path, model, "mlp-60-60", {"in_features": 20}, {"v": 1})
    save_checkpoint(path, model, "mlp-60-60", {"in_features": 20}, {"v": 2})
    assert load_checkpoint(path)[1]["meta"] == {"v": 2}
    with pytest.raises(NettrimError):
        save_checkpoint(path, model, "mlp-60-60", {"in_features": 20}, {"v": object()})
    with pytest.raises(NettrimError):
        save_checkpoint(path, model, "no-such-net", {}, {})
    with pytest.raises(NettrimError):
        save_checkpoint(path, model, "mlp-60-60", {}, {})  # built for 784 inputs, not 20
    assert load_checkpoint(path)[1]["meta"] == {"v": 2}
    assert leftovers(tmp_path) == []


def _write(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def bad_files(tmp: Path):
    model = build_model("mlp-60-60", in_features=20)
    state = model.state_dict()
    good = {"arch": "mlp-60-60", "arch_kwargs": {"in_features": 20}, "state_dict": state, "meta": {}}
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint at all")
    (tmp / "pickled.pt").write_bytes(pickle.dumps({"arch": object}))
    (tmp / "folder.pt").mkdir()
    return {
        "missing": tmp / "nope.pt",
        "directory": tmp / "folder.pt",
        "garbage": tmp / "garbage.pt",
        "pickle": tmp / "pickled.pt",
        "not-dict": _write(tmp / "list.pt", [1, 2]),
        "raw-state-dict": _write(tmp / "state.pt", state),
        "unknown-arch": _write(tmp / "arch.pt", {**good, "arch": "resnet-1000"}),
        "bad-kwargs": _write(tmp / "kw.pt", {**good, "arch_kwargs": {"bogus": 3}}),
        "shape-mismatch": _write(tmp / "shape.pt", {**good, "arch_kwargs": {"in_features": 21}}),
        "missing-keys": _write(tmp / "keys.pt", {**good, "state_dict": {"1.weight": state["1.weight"]}}),
        "extra-keys": _write(tmp / "extra.pt", {**good, "state_dict": {**state, "9.weight": torch.ones(1)}}),
    }


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("case", ["missing", "directory", "garbage", "pickle", "not-dict",
                                  "raw-state-dict", "unknown-arch", "bad-kwargs",
                                  "shape-mismatch", "missing-keys", "extra-keys"])
def test_bad_files_give_one_line_nettrim_error(tmp_path, case):
    path = bad_files(tmp_path)[case]
    with pytest.raises(NettrimError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and str(err.value)


def test_export_safetensors(tmp_path):
    from safetensors.torch import load_file

    model = build_model("cifar-cnn", in_shape=(3, 8, 8), width=4)
    path = export_safetensors(tmp_path / "m.safetensors", model, {"arch": "cifar-cnn"})
    tensors = load_file(path)
    assert set(tensors) == set(model.state_dict())
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())
    assert leftovers(tmp_path) == [] and oct(os.stat(path).st_mode & 0o777) == "0o644"
