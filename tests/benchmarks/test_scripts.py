"""The benchmark scripts: they start, and bad input ends them with one line and no JSON."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["fixed_sparsity_errors.py", "lenet300_retrain_gap.py", "lenet5_frontier.py"]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("name", SCRIPTS + ["bench_lenet300.py"])
def test_script_starts(name):
    proc = run_script(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--out" in proc.stdout


@pytest.mark.parametrize("name", SCRIPTS)
def test_missing_checkpoint_is_one_line_and_writes_nothing(name, tmp_path):
    out = tmp_path / "result.json"
    proc = run_script(name, "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing.pt" in lines[0]
    assert not out.exists()


def test_bad_retraining_budgets_are_rejected_before_any_work(tmp_path):
    out = tmp_path / "result.json"
    proc = run_script("lenet300_retrain_gap.py", "--epochs", "1,x", "--out", str(out))
    assert proc.returncode == 2
    assert "expected positive integers" in proc.stderr.strip().splitlines()[-1]
    assert not out.exists()
