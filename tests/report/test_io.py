"""Atomic strict-JSON writing of run reports."""
import json

import numpy as np
import pytest
import torch

from nettrim.layer import ADMMSettings
from nettrim.report.io import write_json_atomic


def test_report_values_become_strict_json(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {
        "settings": ADMMSettings(max_iterations=7), "layers": frozenset({"4", "1"}),
        "dtype": torch.float32, "nan": float("nan"), "arr": np.arange(3), "x": np.float32(0.5)})
    out = json.loads(path.read_text())
    assert out["settings"]["max_iterations"] == 7 and out["settings"]["dtype"] == "torch.float32"
    assert out["layers"] == ["1", "4"] and out["dtype"] == "torch.float32"
    assert out["nan"] is None and out["arr"] == [0, 1, 2] and out["x"] == 0.5


def test_unserializable_value_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "r.json", {"bad": object()})
    assert not any(tmp_path.iterdir())
