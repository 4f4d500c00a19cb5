"""No user file is ever unpickled into code: checkpoints load with ``weights_only=True``,
exports and run-directory pieces are safetensors/JSON, and the CIFAR-10 python batches go
through a restricted unpickler that builds only what those files hold. A checkpoint and a
CIFAR batch carrying a payload (an object whose ``__reduce__`` would create a marker file) are
refused in one line and the payload never runs; a batch written exactly as Python 2's cPickle
wrote the real files still loads."""
import ast
import contextlib
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import nettrim
from nettrim.cli.main import main
from nettrim.data import load_raw
from nettrim.errors import NettrimError
from nettrim.models import build_model, load_checkpoint, save_checkpoint

from reliability_helpers import RECORDS, record

SRC = Path(nettrim.__file__).parent


class Touch:
    """Unpickling this creates ``path`` (a stand-in for any code a payload could run)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class TouchArray:
    """An object-dtype numpy array whose element is a payload."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        arr = np.empty(1, dtype=object)
        arr[0] = Touch(self.path)
        return arr.__reduce__()


def _note(name: str, outcome: str) -> None:
    RECORDS.setdefault("pickle", {})[name] = outcome


# ---- checkpoints ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["state_dict", "meta", "whole_file"])
def test_a_checkpoint_with_a_payload_is_refused_and_the_payload_never_runs(tmp_path, how):
    marker = tmp_path / "payload-ran"
    good = tmp_path / "good.pt"
    save_checkpoint(good, build_model("mlp-60-60"), "mlp-60-60", {}, {})
    raw = torch.load(good, weights_only=True)
    if how == "state_dict":
        raw["state_dict"]["1.weight"] = Touch(marker)
    elif how == "meta":
        raw["meta"]["note"] = Touch(marker)
    else:
        raw = Touch(marker)
    bad = tmp_path / "bad.pt"
    torch.save(raw, bad)
    with pytest.raises(NettrimError) as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value) and "never unpickles" in str(err.value)
    for argv in (["eval", str(bad)], ["export", str(bad), "--out", str(tmp_path / "x")],
                 ["--no-progress", "prune", str(bad), "--out", str(tmp_path / "o")],
                 ["verify", str(bad)]):
        e = io.StringIO()
        with contextlib.redirect_stderr(e), contextlib.redirect_stdout(io.StringIO()):
            assert main(argv) == 2
        assert e.getvalue().count("\n") == 1 and e.getvalue().startswith("error: ")
    with pytest.raises(NettrimError, match="torch.save file"):
        nettrim.load(bad)
    assert not marker.exists(), "the payload ran"
    # the same object unpickled without the restriction does run: the test would notice
    pickle.loads(pickle.dumps(Touch(marker)))
    assert marker.exists()
    _note(f"checkpoint, payload in {how}", "refused in one line by load_checkpoint, nettrim eval/export/prune/verify and nettrim.load; the payload did not run (it does when unpickled plainly)")


# ---- CIFAR-10 batches ----------------------------------------------------------------------

def _short(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _int(i: int) -> bytes:
    return b"K" + bytes([i]) if 0 <= i < 256 else b"J" + struct.pack("<i", i)


def write_py2_batch(path: Path, data: np.ndarray, labels: list[int], label: bytes) -> None:
    """A batch byte for byte as Python 2's cPickle.dump(batch, f, 2) wrote the real files with
    numpy 1.x: str as SHORT_BINSTRING/BINSTRING, the array as
    numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b') plus a BUILD with
    (1, shape, dtype('u1'), False, raw bytes), the dtype as numpy.dtype('u1', 0, 1) plus a BUILD
    with (3, '|', None, None, None, -1, -1, 0)."""
    assert data.dtype == np.uint8 and data.ndim == 2
    out = [b"\x80\x02", b"}", b"("]
    out += [_short(b"data"), b"cnumpy.core.multiarray\n_reconstruct\n", b"cnumpy\nndarray\n",
            _int(0), b"\x85", _short(b"b"), b"\x87", b"R",
            b"(", _int(1), _int(data.shape[0]), _int(data.shape[1]), b"\x86",
            b"cnumpy\ndtype\n", _short(b"u1"), _int(0), _int(1), b"\x87", b"R",
            b"(", _int(3), _short(b"|"), b"NNN", _int(-1), _int(-1), _int(0), b"t", b"b",
            b"\x89", _short(data.tobytes()), b"t", b"b"]
    out += [_short(b"labels"), b"]", b"("] + [_int(v) for v in labels] + [b"e"]
    out += [_short(b"batch_label"), _short(label)]
    out += [_short(b"filenames"), b"]", b"("] + [_short(f"img_{i}.png".encode()) for i in range(len(labels))] + [b"e"]
    out += [b"u", b"."]
    path.write_bytes(b"".join(out))


def test_a_batch_written_as_python2_cpickle_wrote_it_loads(tmp_path, cifar_batches):
    written = cifar_batches(tmp_path, write_py2_batch, n=3)
    # the plain unpickler agrees with the file's meaning
    plain = pickle.loads((tmp_path / "test_batch").read_bytes(), encoding="bytes")
    assert np.array_equal(plain[b"data"], written["test_batch"][0]) and plain[b"labels"] == written["test_batch"][1]
    raw, y = load_raw("cifar10", "test", tmp_path)
    assert np.array_equal(raw.reshape(len(raw), -1).numpy(), written["test_batch"][0])
    assert y.tolist() == written["test_batch"][1]
    train, _ = load_raw("cifar10", "train", tmp_path)
    assert train.shape == (15, 3, 32, 32)
    _note("CIFAR-10 batch as Python 2 cPickle wrote it", "loads through the restricted unpickler, same bytes as a plain unpickle")


def _payload_batches(marker: Path) -> dict[str, bytes]:
    data = np.zeros((2, 3072), np.uint8)
    base = {b"data": data, b"labels": [0, 1], b"batch_label": b"x", b"filenames": [b"a", b"b"]}
    return {
        "payload as a value": pickle.dumps({**base, b"batch_label": Touch(marker)}, protocol=2),
        "payload as the whole file": pickle.dumps(Touch(marker), protocol=2),
        "payload inside an object array": pickle.dumps({**base, b"labels": TouchArray(marker)}, protocol=2),
        "payload, protocol 5": pickle.dumps({**base, b"filenames": [Touch(marker)]}, protocol=5),
        "object dtype array": pickle.dumps({**base, b"data": np.array([[None]] * 2, dtype=object)}, protocol=2),
        "huge array allocation": pickle.dumps({**base, b"data": data}, protocol=2).replace(
            b"K\x00\x85", b"J\xff\xff\xff\x7f\x85", 1),
    }


@pytest.mark.parametrize("name", list(_payload_batches(Path("/x"))))
def test_a_cifar_batch_with_a_payload_is_refused_and_the_payload_never_runs(tmp_path, name, cifar_batches):
    marker = tmp_path / "payload-ran"
    cifar_batches(tmp_path, write_py2_batch, n=3)
    (tmp_path / "test_batch").write_bytes(_payload_batches(marker)[name])
    with pytest.raises(NettrimError) as err:
        load_raw("cifar10", "test", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "test_batch" in msg
    assert not marker.exists(), "the payload ran"
    _note(f"CIFAR-10 batch, {name}", "refused in one line; the payload did not run")


# ---- every load path in the package --------------------------------------------------------

def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            yield node, owner, name


def test_no_load_path_in_the_package_unpickles_freely():
    """Every torch.load passes weights_only=True; no pickle.load/loads, np.load with pickles,
    marshal, shelve, dill or joblib; the only Unpickler is the CIFAR reader's restricted one."""
    problems, torch_loads = [], 0
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node, owner, name in _calls(tree):
            where = f"{path.relative_to(SRC)}:{node.lineno}"
            kw = {k.arg: k.value for k in node.keywords}
            if owner == "torch" and name == "load":
                torch_loads += 1
                v = kw.get("weights_only")
                if not (isinstance(v, ast.Constant) and v.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            elif owner in ("pickle", "cPickle", "dill", "joblib", "marshal", "shelve") and name in ("load", "loads", "open"):
                problems.append(f"{where}: {owner}.{name}")
            elif owner == "np" and name == "load" and not (isinstance(kw.get("allow_pickle"), ast.Constant)
                                                          and kw["allow_pickle"].value is False):
                problems.append(f"{where}: np.load without allow_pickle=False")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases) \
                    and node.name != "_CifarUnpickler":
                problems.append(f"{path.relative_to(SRC)}: class {node.name} unpickles")
    assert not problems, problems
    record("pickle_audit", {"torch_load_calls": torch_loads, "all_weights_only": True,
                            "free_unpickling_calls": 0})
