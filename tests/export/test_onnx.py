"""ONNX export agrees with PyTorch under onnxruntime, and records the difference it measured."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import nettrim.export as ex
import nettrim.export.onnx as ex_onnx
from nettrim.errors import NettrimError


@pytest.mark.parametrize("arch", ["lenet-300-100", "lenet5"])
def test_onnxruntime_agrees_with_pytorch(sparse_model, arch, tmp_path):
    model = sparse_model(arch, 0.9)
    info = ex.export(model, tmp_path / "m.onnx", "onnx")
    assert info.onnx_max_abs_diff is not None and info.onnx_max_abs_diff < 1e-4
    x = torch.rand(33, 1, 28, 28)  # another batch size than the sample: the batch axis is dynamic
    got = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
    props = {p.key: p.value for p in onnx.load(str(info.path)).metadata_props}
    assert props["nettrim.arch"] == arch
    assert float(props["nettrim.onnxruntime_max_abs_diff"]) == info.onnx_max_abs_diff


def test_a_failed_check_leaves_no_file(sparse_model, tmp_path, monkeypatch):
    monkeypatch.setattr(ex_onnx, "RTOL", -1.0)
    with pytest.raises(NettrimError, match="onnxruntime disagrees"):
        ex.export(sparse_model("mlp-60-60", 0.5), tmp_path / "m.onnx", "onnx")
    assert list(tmp_path.iterdir()) == []
