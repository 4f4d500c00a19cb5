"""Hostile command lines: ``nettrim prune/eval/verify/export/compare`` on missing, empty,
truncated and foreign files (random bytes, text, random pickles, a pickle that would run code,
a checkpoint of another architecture, a safetensors export, a directory), with unknown flags
and bad values. Every run exits 0 with its outputs written and loadable, or prints exactly one
line ``error: ...`` and exits 2 (3: budget unreachable; 1: verify found a failing claim) with
nothing written; never a traceback, and the malicious pickle never runs."""
import contextlib
import io
import os
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

import nettrim
from nettrim.cli.main import main
from nettrim.models import build_model, load_checkpoint, save_checkpoint

from reliability_helpers import count, examples, time_limit

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / "nettrim-pickle-payload-ran"


class Payload:
    """Unpickling this creates MARKER (it must never happen)."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile-cli")
    torch.manual_seed(0)
    save_checkpoint(d / "good.pt", build_model("mlp-60-60"), "mlp-60-60", {}, {"dataset": "mnist"})
    save_checkpoint(d / "other.pt", build_model("mlp-100-100"), "mlp-100-100", {}, {"dataset": "mnist"})
    raw = torch.load(d / "good.pt", weights_only=True)
    raw["arch"] = "mlp-100-100"  # a state dict of one architecture labelled as another
    torch.save(raw, d / "mislabelled.pt")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["--no-progress", "prune", str(d / "good.pt"), "--samples", "20",
                     "--out", str(d / "pruned")]) == 0
    nettrim.export(build_model("mlp-60-60"), d / "export.safetensors", "sparse")
    torch.save({"a": Payload()}, d / "payload.pt")
    (d / "text.pt").write_text("this is not a checkpoint\n")
    (d / "empty.pt").write_bytes(b"")
    (d / "adir").mkdir()
    return d


FILE_KINDS = ["good", "good", "good", "pruned", "other", "mislabelled", "missing", "empty",
              "truncated", "random-bytes", "text", "random-pickle", "payload", "export", "directory"]
FLAGS = {
    "prune": [("--samples", ["20", "0", "-5", "abc", "3"]), ("--epsilon", ["0.1", "-1", "nan", "inf", "x"]),
              ("--mode", ["parallel", "diagonal"]), ("--max-drop", ["50", "-1", "200", "nan"]),
              ("--max-rows", ["-3", "10"]), ("--kappa", ["0", "0.5", "2"]), ("--gamma", ["0.5", "1.5"]),
              ("--reweight", ["-1", "0"]), ("--paper", None), ("--data", ["cifar10", "svhn", "nope"]),
              ("--data-dir", ["/no/such/dir", "FILE"]), ("--bogus-flag", None), ("--seed", ["-1", "7"]),
              ("--validation-size", ["0", "10", "99999999"]), ("--finetune-epochs", ["-1", "x"]),
              ("--restart", None)],
    "eval": [("--data", ["mnist", "cifar10", "nope"]), ("--data-dir", ["/no/such/dir"]), ("--bogus-flag", None)],
    "verify": [("--data", ["mnist", "cifar10"]),
               ("--original", ["FILE", "/no/such.pt"]), ("--bogus-flag", None)],
    "export": [("--format", ["sparse", "dense", "zip"]), ("--force", None), ("--bogus-flag", None)],
    "compare": [("--methods", ["threshold", "threshold,magic", ""]), ("--sparsity", ["0.5", "2", "x", ""]),
                ("--samples", ["20", "-1"]), ("--mode", ["parallel", "x"]), ("--retrain-epochs", ["-1", "0"]),
                ("--bogus-flag", None)],
}


def _file(files: Path, d: Path, kind: str, data) -> Path:
    p = d / "case"
    if kind in ("good", "other", "mislabelled", "text", "empty", "payload"):
        return files / f"{kind}.pt"
    if kind == "pruned":
        return files / "pruned" / "good-nettrim-cascade.pt"
    if kind == "export":
        return files / "export.safetensors"
    if kind == "directory":
        return files / "adir"
    if kind == "missing":
        return d / "no-such-file.pt"
    if kind == "truncated":
        raw = (files / "good.pt").read_bytes()
        p.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    elif kind == "random-bytes":
        p.write_bytes(data.draw(st.binary(min_size=1, max_size=200)))
    elif kind == "random-pickle":
        plain = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                             lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                             max_leaves=8)
        p.write_bytes(pickle.dumps(data.draw(plain), protocol=data.draw(st.integers(0, 5))))
    return p


def _run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def _outputs_ok(command: str, out_path: Path) -> None:
    if command == "prune":
        pts = sorted(out_path.glob("*.pt"))
        assert pts and sorted(out_path.glob("*.json")), "prune exited 0 without its outputs"
        for p in pts:
            load_checkpoint(p)
        assert not (out_path / ".nettrim-run").exists(), "the run directory outlived a finished run"
    elif command == "export":
        assert out_path.is_file()
        nettrim.load(out_path)
    elif command == "compare":
        assert (out_path / "compare.json").is_file()


@settings(max_examples=examples(15))
@given(data=st.data())
def test_cli_exits_cleanly_with_one_line_errors(files, tmp_path_factory, data):
    command = data.draw(st.sampled_from(["prune", "prune", "prune", "eval", "verify", "export", "compare"]))
    case = tmp_path_factory.mktemp("case")
    kind = data.draw(st.sampled_from(FILE_KINDS))
    path = _file(files, case, kind, data)
    out_path = case / ("out.st" if command == "export" else "out")
    argv = ["--no-progress", command]
    if command == "compare":
        argv += ["--checkpoint", str(path), "--out", str(out_path), "--retrain-epochs", "0",
                 "--samples", "20", "--methods", "threshold", "--sparsity", "0.5"]
    else:
        argv.append(str(path))
        if command in ("prune", "export"):
            argv += ["--out", str(out_path)]
        if command == "prune":
            argv += ["--samples", "20", "--validation-size", "200"]
    for flag, values in data.draw(st.lists(st.sampled_from(FLAGS[command]), max_size=3, unique_by=lambda f: f[0])):
        argv.append(flag)
        if values is not None:
            value = data.draw(st.sampled_from(values))
            argv.append(str(data.draw(st.sampled_from([files / "text.pt", files / "good.pt"])))
                        if value == "FILE" else value)
    with time_limit(300):
        rc, stdout, stderr = _run(argv)
    assert not MARKER.exists(), "a pickle payload ran"
    lines = [l for l in stderr.splitlines() if l.strip()]
    if rc == 0:
        _outputs_ok(command, out_path)
        count("cli", f"exit 0 ({command}): " + ("outputs written and loadable"
                                               if command in ("prune", "export", "compare") else "answered"))
    elif rc == 1:
        assert command == "verify" and stdout.splitlines()[-1].startswith("FAIL: ")
        count("cli", "exit 1 (verify): a claim does not hold")
    elif rc == 3:
        assert command == "prune" and len(lines) == 1 and lines[0].startswith("error: budget_unreachable")
        assert not out_path.exists() or not any(out_path.iterdir())
        count("cli", "exit 3 (prune --max-drop): budget unreachable, nothing written")
    else:
        assert rc == 2, f"exit status {rc}: {stderr[-2000:]}"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {stderr[-2000:]}"
        assert not out_path.exists() or (out_path.is_dir() and not any(out_path.iterdir())), \
            f"a failed run left files: {list(out_path.iterdir()) if out_path.is_dir() else out_path}"
        from reliability_helpers import refusal
        from nettrim.errors import NettrimError
        count("cli", f"exit 2 ({command}): " + refusal(NettrimError(lines[0].removeprefix("error: "))))
