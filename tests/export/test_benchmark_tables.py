"""docs/export.md's tables are what benchmarks/export_tables.py makes of the committed JSON;
the export benchmarks start."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tables():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import export_tables
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return export_tables


def test_committed_tables_equal_the_generated_ones(tables):
    want = tables.expected()
    assert set(want) == {"export_sizes", "position_codes", "inference"}
    assert tables.blocks(tables.DOC.read_text()) == want


def test_results_record_the_measured_sparsity(tables):
    import json

    sizes = json.loads(tables.SIZES.read_text())
    lenet = next(m for m in sizes["models"] if m["arch"] == "lenet-300-100")
    assert 0.94 <= lenet["removed"] < 1 and lenet["ratio_torch_save"] >= 15
    assert all(m["round_trip_exact"] for m in sizes["models"])


@pytest.mark.parametrize("name", ["export_sizes.py", "inference.py"])
def test_script_starts(name):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "--out" in proc.stdout
