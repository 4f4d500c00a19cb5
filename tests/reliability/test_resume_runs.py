"""Resumable runs: a real ``nettrim prune`` that kills itself with SIGKILL right after its
first layer reached the disk finishes, when started again with the same arguments, with a
model bit-identical to an uninterrupted run and a report naming the resumed layer;
interrupted at every piece, prune (both modes), shrink and compare resume to the same bits;
another run's directory is refused in one line unless --restart; damaged pieces are solved
again."""
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import nettrim
from nettrim import RunOptions, SearchOptions
from nettrim.cli.main import main
from nettrim.errors import NettrimError
from nettrim.models import build_model
from nettrim.pruners import resume
from nettrim.pruners.resume import RUN_DIR, RunStore

from reliability_helpers import RECORDS


def _timeless(obj):
    """A report without its timings and its resume bookkeeping (what must match bit for bit)."""
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items()
                if "seconds" not in k and k not in ("resumed", "resumed_cells", "peak_memory_mb", "outputs", "store")}
    if isinstance(obj, list):
        return [_timeless(v) for v in obj]
    return obj


def _diff(a, b, path="") -> list[str]:
    """Where two JSON-like values differ (for the failure message)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys(), key=str) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _same_bits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- a real process, killed ----------------------------------------------------------------

@pytest.fixture
def checkpoint(mlp_checkpoint):
    return mlp_checkpoint


def _cli(ckpt: Path, out: Path) -> list[str]:
    return ["--no-progress", "prune", str(ckpt), "--samples", "200", "--validation-size", "500",
            "--out", str(out)]


# the child process: the CLI, with the run store's save_layer made to SIGKILL the process
# right after its N-th layer file is on the disk (the kill lands at that point every time)
KILL_AFTER = """
import os, signal, sys
from nettrim.pruners import resume
after, saved, save = int(sys.argv[1]), [0], resume.Scope.save_layer
def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    saved[0] += 1
    if saved[0] == after:
        os.kill(os.getpid(), signal.SIGKILL)
resume.Scope.save_layer = save_then_die
from nettrim.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def _env():
    """One thread in every run (the bits depend on the thread count; and the CI machine is
    shared), a passive OpenMP wait."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def test_sigkill_after_the_first_layer_then_resume_is_bit_identical(checkpoint, tmp_path):
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    # the uninterrupted run in this process (one thread, as the subprocesses): the same command
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(_cli(checkpoint, ref_dir)) == 0
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER, "1", *_cli(checkpoint, run_dir)], env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    pieces = sorted(p.name for p in (run_dir / RUN_DIR).glob("prune-*/layer-*.safetensors"))
    assert pieces == ["layer-000.safetensors"], pieces
    assert not list(run_dir.glob("*.pt")) and not list(run_dir.glob("*.json")), "outputs before the end"

    again = subprocess.run([sys.executable, "-m", "nettrim.cli.main", *_cli(checkpoint, run_dir)], env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout
    stem = "mlp-nettrim-cascade"
    a = torch.load(ref_dir / f"{stem}.pt", weights_only=True)
    b = torch.load(run_dir / f"{stem}.pt", weights_only=True)
    assert _same_bits(a["state_dict"], b["state_dict"]), "the resumed model differs from the uninterrupted one"
    ra = json.loads((ref_dir / f"{stem}.json").read_text())
    rb = json.loads((run_dir / f"{stem}.json").read_text())
    layers = [r["name"] for r in rb["report"]["layers"]]
    assert rb["report"]["resumed"] == layers[: len(pieces)] and ra["report"]["resumed"] == []
    assert not _diff(_timeless(ra["report"]), _timeless(rb["report"])), \
        _diff(_timeless(ra["report"]), _timeless(rb["report"]))
    assert not (run_dir / RUN_DIR).exists(), "the run directory outlived the finished run"
    RECORDS["resume_kill"] = {
        "command": "nettrim prune mlp-60-60 (MNIST, 200 calibration images, cascade, default NetTrim), one thread, "
                   "SIGKILL right after the first layer's file",
        "layers": len(layers), "layers_finished_before_sigkill": len(pieces),
        "resumed_layers": rb["report"]["resumed"],
        "tensors_compared": len(a["state_dict"]),
        "tensors_bit_identical": sum(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]),
        "report_identical_but_timings": _timeless(ra["report"]) == _timeless(rb["report"])}


# ---- in process: interrupted after every piece ---------------------------------------------

class Killed(BaseException):
    """Stands for a kill right after a piece reached the disk (not an Exception: nothing in the
    library may catch it)."""


@contextlib.contextmanager
def kill_after(pieces: int):
    """Raise :class:`Killed` once ``pieces`` pieces (layers or records) have been written."""
    written = [0]
    save_layer, save_record = resume.Scope.save_layer, resume.Scope.save_record

    def counted(save):
        def wrapper(self, *args, **kwargs):
            save(self, *args, **kwargs)
            written[0] += 1
            if written[0] == pieces:
                raise Killed
        return wrapper

    resume.Scope.save_layer, resume.Scope.save_record = counted(save_layer), counted(save_record)
    try:
        yield written
    finally:
        resume.Scope.save_layer, resume.Scope.save_record = save_layer, save_record


QUIET = RunOptions(progress=False)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def _pieces(root: Path) -> int:
    return len(list(root.rglob("layer-*.safetensors"))) + len(list(root.rglob("trial-*.json"))) \
        + len(list(root.rglob("cell-*.json")))


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_prune_interrupted_after_each_layer_resumes_to_the_same_bits(tmp_path, mode):
    net, x = _net(), torch.randn(80, 12, generator=torch.Generator().manual_seed(1))
    method = nettrim.NetTrim(reweight=1)
    ref = nettrim.prune(net, x, method, mode=mode, run=QUIET)
    for k in (1, 2):
        root = tmp_path / f"run-{k}"
        with kill_after(k), pytest.raises(Killed), RunStore(root) as killed:  # released as a kill would
            nettrim.prune(net, x, method, mode=mode, run=QUIET.replace(store=killed.open({"k": 1})))
        assert _pieces(root) == k
        store = RunStore(root).open({"k": 1})
        res = nettrim.prune(net, x, method, mode=mode, run=QUIET.replace(store=store))
        store.finish()
        assert res.report.resumed == [r.name for r in ref.report.layers[:k]]
        assert _same_bits(ref.model.state_dict(), res.model.state_dict())
        assert _timeless(ref.report.to_dict()) == _timeless(res.report.to_dict())


def test_shrink_interrupted_at_every_piece_resumes_to_the_same_bits(tmp_path):
    net = _net(3)
    g = torch.Generator().manual_seed(4)
    x, xv = torch.randn(80, 12, generator=g), torch.randn(200, 12, generator=g)
    yv = net(xv).argmax(1)
    yv[:20] = (yv[:20] + 1) % 4  # the original is not perfect on it
    kw = dict(method=nettrim.NetTrim(reweight=0, refit=False), search=SearchOptions(max_trials=3))
    ref = nettrim.shrink(net, x, (xv, yv), 0.02, **kw, run=QUIET)
    root = tmp_path / "full"
    store = RunStore(root).open({})
    nettrim.shrink(net, x, (xv, yv), 0.02, **kw, run=QUIET.replace(store=store))
    total = _pieces(root)
    store.finish()
    trials = len(ref.search)
    assert trials >= 2 and total == 4 * trials  # per trial: three layers and its record
    results = {}
    for k in sorted({1, 4, 5, 9, total - 1, total} & set(range(1, total + 1))):  # total: killed before it returned
        root = tmp_path / f"run-{k}"
        with kill_after(k), pytest.raises(Killed), RunStore(root) as killed:
            nettrim.shrink(net, x, (xv, yv), 0.02, **kw, run=QUIET.replace(store=killed.open({})))
        store = RunStore(root).open({})
        res = nettrim.shrink(net, x, (xv, yv), 0.02, **kw, run=QUIET.replace(store=store))
        store.finish()
        assert _same_bits(ref.model.state_dict(), res.model.state_dict()), f"differs after {k} pieces"
        assert _timeless([t.__dict__ for t in ref.search]) == _timeless([t.__dict__ for t in res.search])
        results[k] = sum(t.resumed for t in res.search)
        assert results[k] == k // 4  # every trial finished before the kill was taken, not rerun
        if k == total:  # every trial resumed: the chosen model rebuilt from its saved layers
            assert res.chosen.resumed and res.report.resumed == [r.name for r in ref.report.layers]
    RECORDS["resume_shrink"] = {"pieces": total, "interrupted_after": sorted(results),
                                "trials_resumed": [results[k] for k in sorted(results)],
                                "all_bit_identical": True}


def test_compare_resumes_its_finished_cells(tmp_path):
    from nettrim.experiments import compare as cmp

    net = build_model("mlp-60-60")
    kw = dict(samples=60, retrain_epochs=0, progress=False, retrain_subset=2000)
    grid = (["threshold"], [0.5, 0.8, 0.9])
    ref = cmp.compare(net, "mnist", *grid, **kw)
    root = tmp_path / "run"
    with kill_after(3 + 1 + 2), pytest.raises(Killed):  # cell 1 (3 layers, its record), 2 layers
        with RunStore(root) as store:  # the CLI's way: pieces kept on a kill
            cmp.compare(net, "mnist", *grid, **kw, store=store)
    with RunStore(root) as store:
        res = cmp.compare(net, "mnist", *grid, **kw, store=store)
    assert res["resumed_cells"] == 1 and not root.exists()
    strip = lambda r: json.loads(json.dumps(_timeless(r), default=str))
    assert strip(ref) == strip(res)


# ---- refusals and damage -------------------------------------------------------------------

def test_another_runs_directory_is_refused_in_one_line_unless_restart(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = ["--no-progress", "prune", str(checkpoint), "--samples", "100", "--reweight", "0",
            "--out", str(out)]
    with kill_after(1), pytest.raises(Killed), contextlib.redirect_stdout(io.StringIO()):
        main(argv)
    assert (out / RUN_DIR / "manifest.json").is_file()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main([*argv, "--epsilon", "0.3"]) == 2
    line = err.getvalue()
    assert line.count("\n") == 1 and line.startswith("error: ") and "--restart" in line and "method" in line
    assert (out / RUN_DIR / "manifest.json").is_file(), "a refused run touched the other run's pieces"
    with contextlib.redirect_stdout(io.StringIO()) as o:
        assert main([*argv, "--epsilon", "0.3", "--restart"]) == 0
    assert "resumed" not in o.getvalue() and not (out / RUN_DIR).exists()


def test_a_damaged_or_half_written_piece_is_solved_again(tmp_path):
    net, x = _net(), torch.randn(60, 12, generator=torch.Generator().manual_seed(2))
    ref = nettrim.prune(net, x, run=QUIET)
    root = tmp_path / "run"
    with kill_after(2), pytest.raises(Killed), RunStore(root) as killed:
        nettrim.prune(net, x, run=QUIET.replace(store=killed.open({})))
    first, second = sorted(root.rglob("layer-*.safetensors"))
    first.write_bytes(first.read_bytes()[:-7])  # damaged: its sha256 no longer matches
    (second.parent / ".layer-002.safetensors.x.tmp").write_bytes(b"half")  # a write cut short
    store = RunStore(root).open({})
    res = nettrim.prune(net, x, run=QUIET.replace(store=store))
    store.finish()
    assert res.report.resumed == ["2"]  # layer "0" solved again, "2" taken, "4" solved
    assert _same_bits(ref.model.state_dict(), res.model.state_dict())


def test_a_directory_in_use_is_refused(tmp_path):
    store = RunStore(tmp_path / "run").open({"a": 1})
    with pytest.raises(NettrimError, match="another nettrim process"):
        RunStore(tmp_path / "run").open({"a": 1})
    store.close()
    RunStore(tmp_path / "run").open({"a": 1}).finish()


@pytest.mark.slow  # three budget searches through the CLI: make fuzz
def test_prune_max_drop_interrupted_mid_search_resumes_to_the_same_outputs(checkpoint, tmp_path):
    """The CLI's shrink path (--max-drop): killed after the first trial's record (its three
    layers and the trial), run again: the same checkpoint bits and search."""
    argv = lambda out: ["--no-progress", "prune", str(checkpoint), "--samples", "100", "--reweight", "0",
                        "--max-drop", "3", "--validation-size", "300", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc_ref = main(argv(tmp_path / "ref"))
    with kill_after(4), pytest.raises(Killed), contextlib.redirect_stdout(io.StringIO()):
        main(argv(tmp_path / "run"))
    assert len(list((tmp_path / "run" / RUN_DIR).rglob("trial-*.json"))) == 1
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        rc = main(argv(tmp_path / "run"))
    assert rc == rc_ref
    if rc == 0:
        stem = "mlp-nettrim-cascade"
        a = torch.load(tmp_path / "ref" / f"{stem}.pt", weights_only=True)["state_dict"]
        b = torch.load(tmp_path / "run" / f"{stem}.pt", weights_only=True)["state_dict"]
        assert _same_bits(a, b)
        sa = json.loads((tmp_path / "ref" / f"{stem}.json").read_text())["search"]
        sb = json.loads((tmp_path / "run" / f"{stem}.json").read_text())["search"]
        assert not _diff(_timeless(sa), _timeless(sb)) and sum(t["resumed"] for t in sb["search"]) == 1
        RECORDS["resume_max_drop"] = {"trials": len(sb["search"]), "trials_resumed": 1,
                                      "tensors": len(a), "bit_identical": True}
    assert "(resumed)" in out.getvalue() and not (tmp_path / "run" / RUN_DIR).exists()
