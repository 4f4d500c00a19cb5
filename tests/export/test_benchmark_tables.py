"""The export benchmarks' results and scripts (docs/export.md's tables are checked with every
other doc's in tests/docs)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_results_record_the_measured_sparsity():
    import json

    sizes = json.loads((ROOT / "benchmarks" / "results" / "export_sizes.json").read_text())
    lenet = next(m for m in sizes["models"] if m["arch"] == "lenet-300-100")
    assert 0.94 <= lenet["removed"] < 1 and lenet["ratio_torch_save"] >= 15
    assert all(m["round_trip_exact"] for m in sizes["models"])


@pytest.mark.parametrize("name", ["export_sizes.py", "inference.py"])
def test_script_starts(name):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "--out" in proc.stdout
