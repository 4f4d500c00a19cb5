"""Structured Net-Trim at the boundary: bad input is one line; the smaller network saves,
loads and exports as its architecture at its own widths; the command line."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import nettrim
from nettrim.cli.main import main
from nettrim.errors import NettrimError
from nettrim.graph.surgery import magnitude_units
from nettrim.models import build_model, load_checkpoint, save_checkpoint
from nettrim.models.architectures import widths_kwargs


def one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize("value", ["rows", "Units", 1, None])
def test_unknown_structure_is_one_line(value):
    with pytest.raises(NettrimError) as exc:
        nettrim.NetTrim(structure=value)
    assert "structure must be one of 'weights', 'units'" in one_line(exc)


def test_units_need_the_group_l1_program():
    with pytest.raises(NettrimError) as exc:
        nettrim.NetTrim(structure="units", support="obs")
    assert "pass support='l1'" in one_line(exc)


@pytest.mark.parametrize("target", [dict(sparsity=0.5), dict(counts={"1": 10})])
def test_units_with_a_sparsity_or_counts_target_is_refused(target):
    model = build_model("mlp-60-60").eval()
    with pytest.raises(NettrimError) as exc:
        nettrim.prune(model, torch.rand(20, 1, 28, 28), nettrim.NetTrim(structure="units"),
                      run=nettrim.RunOptions(progress=False), **target)
    assert "applies to Net-Trim's tolerance, not to a sparsity or counts target" in one_line(exc)


def test_bad_widths_are_one_line():
    model = build_model("mlp-60-60").eval()
    x = torch.rand(4, 1, 28, 28)
    for widths, match in (({"7": 3}, "no layer named 7 can lose units"), ({"1": 0}, "integer in 1..60"),
                          ({"1": 2.5}, "integer in 1..60"), ([3], "must be a dict")):
        with pytest.raises(NettrimError, match=match) as exc:
            magnitude_units(model, x, widths)
        one_line(exc)
    with pytest.raises(NettrimError) as exc:
        magnitude_units(model, x, {"1": 3}, norm="l1")
    assert "norm must be 'outgoing' or 'incoming'" in one_line(exc)
    with pytest.raises(NettrimError) as exc:
        widths_kwargs("cifar-cnn", {}, build_model("lenet5", channels=[3, 8]))
    assert "cannot be rebuilt with this model's widths" in one_line(exc)


@pytest.fixture(scope="module")
def narrow():
    """Narrower LeNet-5 and LeNet-300-100 (units removed by magnitude), random weights."""
    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 28)
    lenet5 = magnitude_units(build_model("lenet5").eval(), x, {"0": 4, "3": 9, "7": 50, "9": 30}).model
    mlp = magnitude_units(build_model("lenet-300-100", dropout=0.2).eval(), x, {"1": 120, "4": 40}).model
    return {"lenet5": (lenet5, {}), "lenet-300-100": (mlp, {"dropout": 0.2})}


@pytest.mark.parametrize("arch", ["lenet5", "lenet-300-100"])
def test_narrow_network_round_trips_through_checkpoint_export_and_onnx(narrow, arch, tmp_path):
    model, kwargs = narrow[arch]
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        want = model(x)
    path = save_checkpoint(tmp_path / "m.pt", model, arch, kwargs)  # the original's kwargs
    back, info = load_checkpoint(path)
    widths = {"lenet5": {"channels": [4, 9], "hidden": [50, 30]}, "lenet-300-100": {"hidden": [120, 40]}}[arch]
    assert info["arch"] == arch and info["arch_kwargs"] == {**kwargs, **widths}
    with torch.no_grad():
        assert torch.equal(back(x), want)
    assert nettrim.export.identify(model) == (arch, {**kwargs, **widths})
    for fmt in ("sparse", "dense"):
        nettrim.export(model, tmp_path / f"m.{fmt}.safetensors", fmt)
        with torch.no_grad():
            assert torch.equal(nettrim.load(tmp_path / f"m.{fmt}.safetensors")(x), want)
    onnx = nettrim.export(model, tmp_path / "m.onnx", "onnx")
    got = ort.InferenceSession(str(onnx.path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_cli_prune_structure_units(mlp_checkpoint, tmp_path, capsys):
    assert main(["--no-progress", "prune", str(mlp_checkpoint), "--samples", "300", "--epsilon", "0.3",
                 "--structure", "units", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "mlp-nettrim-cascade.json").read_text())["report"]
    assert report["method"]["structure"] == "units"
    widths = report["surgery"]["widths"]
    assert widths["1"][0] == widths["3"][0] == 60 and widths["5"] == [10, 10] and widths["1"][1] < 60
    model, info = load_checkpoint(tmp_path / "mlp-nettrim-cascade.pt")
    assert info["arch_kwargs"] == {"hidden": [widths["1"][1], widths["3"][1]]}
    assert model[1].out_features == widths["1"][1]
    assert all(layer["certified"] for layer in report["layers"])
    assert main(["eval", str(tmp_path / "mlp-nettrim-cascade.pt")]) == 0
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "mlp-nettrim-cascade.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cut to fewer units" in err
