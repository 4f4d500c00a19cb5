"""The benchmark scripts start, and bad input ends them with one line and no JSON."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# every script that measures and writes a result file (common.py and the table generators do not)
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")
                 if p.name != "common.py" and not p.name.endswith("tables.py"))


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_starts(name):
    proc = run_script(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--out" in proc.stdout


def test_unknown_configuration_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "result.json"
    proc = run_script("default_config.py", "--configs", "default,magic", "--out", str(out))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "magic" in lines[0]
    assert not out.exists()
