"""Bad input: one-line NettrimError (CLI: ``error: ...``, status 2), and no file left behind."""
import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import nettrim.export as ex
from nettrim.cli.main import main
from nettrim.errors import NettrimError
from nettrim.models import save_checkpoint


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def one_line_error(match: str):
    return pytest.raises(NettrimError, match=match)


def check_one_line(exc_info) -> None:
    assert "\n" not in str(exc_info.value)


@pytest.fixture
def sparse_file(sparse_model, tmp_path):
    return ex.export(sparse_model("mlp-60-60", 0.9), tmp_path / "m.sparse").path


@pytest.fixture
def checkpoint(sparse_model, tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, sparse_model("mlp-60-60", 0.9), "mlp-60-60", {})
    return path


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main(["export", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return rc, err


def test_onnx_of_a_model_nettrim_cannot_rebuild_needs_a_sample(tmp_path):
    """(Sparse and dense files of such a model are written: tests/export/test_any_module.py.)"""
    with one_line_error("needs sample= .* for TinyNet") as exc_info:
        ex.export(TinyNet(), tmp_path / "m", "onnx")
    check_one_line(exc_info)
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_architecture_name_is_refused(sparse_model, tmp_path):
    model = sparse_model("mlp-60-60", 0.5)
    with one_line_error("unknown architecture 'resnet'"):
        ex.export(model, tmp_path / "m", arch="resnet")
    with one_line_error("as 'lenet-300-100'"):
        ex.export(model, tmp_path / "m", arch="lenet-300-100")
    assert list(tmp_path.iterdir()) == []


def test_truncated_sparse_file_is_refused(sparse_file):
    data = sparse_file.read_bytes()
    sparse_file.write_bytes(data[:-100])
    with one_line_error("damaged") as exc_info:
        ex.load(sparse_file)
    check_one_line(exc_info)


def test_altered_payload_fails_the_hash(sparse_file):
    data = bytearray(sparse_file.read_bytes())
    data[-50] ^= 0x01
    sparse_file.write_bytes(bytes(data))
    with one_line_error("does not match the stored sha256"):
        ex.load(sparse_file)


def test_altered_metadata_fails_the_hash(sparse_file):
    data = sparse_file.read_bytes()
    assert data.count(b'"arch":"mlp-60-60"') == 1
    sparse_file.write_bytes(data.replace(b'"arch":"mlp-60-60"', b'"arch":"mlp-66-60"'))
    with one_line_error("sha256"):
        ex.load(sparse_file)


@pytest.mark.parametrize("content", [b"", b"hello", b"\x00" * 64, b"PK\x03\x04 zip", b"\x80\x04pickle"])
def test_a_file_that_is_not_safetensors_is_refused(content, tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    with pytest.raises(NettrimError) as exc_info:
        ex.load(path)
    check_one_line(exc_info)


def test_a_checkpoint_or_onnx_file_is_refused(sparse_model, checkpoint, tmp_path):
    with one_line_error("torch.save file"):
        ex.load(checkpoint)
    onnx_path = ex.export(sparse_model("mlp-60-60", 0.5), tmp_path / "m.onnx", "onnx").path
    with one_line_error("not a safetensors file"):
        ex.load(onnx_path)


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with one_line_error("without nettrim metadata"):
        ex.load(path)


def test_missing_file(tmp_path):
    with one_line_error("file not found"):
        ex.load(tmp_path / "nothing.safetensors")


def test_cli_unknown_format(checkpoint, tmp_path, capsys):
    out = tmp_path / "out.bin"
    rc, err = run_cli(capsys, checkpoint, "--format", "zip", "--out", out)
    assert rc == 2 and err == ("error: unknown export format 'zip'; choose one of: "
                        "sparse, dense, onnx, compressed-tensors")
    assert not out.exists()


def test_cli_existing_output_needs_force(checkpoint, tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    rc, err = run_cli(capsys, checkpoint, "--out", out)
    assert rc == 2 and err.startswith("error: ") and "already exists" in err and "--force" in err
    assert out.read_bytes() == b"keep me"
    assert run_cli(capsys, checkpoint, "--out", out, "--force")[0] == 0
    assert ex.load(out) is not None


def test_cli_unknown_architecture_in_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "odd.pt"
    torch.save({"format": "nettrim-checkpoint/1", "arch": "resnet-9", "arch_kwargs": {},
                "state_dict": {}, "meta": {}}, ckpt)
    out = tmp_path / "out.st"
    rc, err = run_cli(capsys, ckpt, "--out", out)
    assert rc == 2 and "unknown architecture 'resnet-9'" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_missing_checkpoint(tmp_path, capsys):
    rc, err = run_cli(capsys, tmp_path / "none.pt", "--out", tmp_path / "o")
    assert rc == 2 and "not found" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["sparse", "dense", "onnx"])
def test_cli_writes_each_format(fmt, checkpoint, tmp_path, capsys):
    out = tmp_path / f"out.{fmt}"
    rc = main(["export", str(checkpoint), "--format", fmt, "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and out.is_file() and f"wrote {out} ({fmt}," in printed
    assert ("onnxruntime max abs difference" in printed) == (fmt == "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", out.name]
