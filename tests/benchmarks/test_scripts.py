"""The benchmark scripts: they start, and bad input ends them with one line and no JSON."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def lenet5_frontier():
    """The frontier script as a module (it imports its neighbour ``common``)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import lenet5_frontier as module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def accuracy(correct: int, total: int = 5000) -> float:
    """A percentage as ``nettrim.models.evaluate`` computes it (a float32 mean)."""
    return 100.0 * (torch.arange(total) < correct).float().mean().item()


def test_selection_counts_a_drop_of_exactly_the_budget_as_within():
    """25 images of 5,000 is 0.5 points; float32 accuracies make it 0.500005 unrounded."""
    choose = lenet5_frontier().choose
    dense = {"selection": accuracy(4938)}
    edge = {"removed": 0.91, "selection": accuracy(4913)}
    over = {"removed": 0.95, "selection": accuracy(4912)}
    safe = {"removed": 0.85, "selection": accuracy(4935)}
    assert dense["selection"] - edge["selection"] > 0.5
    assert choose([safe, edge, over], dense, budget=0.5, target=0.9) is edge
    # nothing within the budget: the smallest drop among those that reach the target
    assert choose([over, edge], dense, budget=0.1, target=0.9) is edge
