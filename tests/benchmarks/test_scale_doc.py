"""docs/scale.md is the one benchmarks/scale.py renders from the committed JSON, and the
benchmark itself runs (``--quick``: the same measurements on small shapes)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def scale_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("scale_benchmark", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_doc_is_the_rendered_json():
    scale = scale_module()
    data = json.loads((RESULTS / "scale.json").read_text())
    solver_path = RESULTS / "scale_solver.json"
    solver = json.loads(solver_path.read_text()) if solver_path.is_file() else None
    assert not data["quick"], "the committed scale.json must be a full run, not --quick"
    assert (ROOT / "docs" / "scale.md").read_text() == scale.render(data, solver), \
        "docs/scale.md is stale: run benchmarks/scale.py --doc"


def test_quick_run_measures_every_part(tmp_path):
    out = tmp_path / "scale.json"
    parts = "block,conv" + (",gpt2" if importlib.util.find_spec("transformers") else "")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--quick", "--parts", parts,
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {r["part"] for r in rows} == set(parts.split(","))
    for r in rows:
        assert 0 < r["kept"] < 1 and r["error"] >= 0 and r["seconds"] > 0
        if r["method"] == "nettrim":
            assert r["certified"] is True
            assert r["model"].endswith(f"{2 * data['shape']['images']} images") or r["ratio"] > 0
    tolerance = [r for r in rows if r["target"].startswith("tolerance")]
    for r in tolerance:  # the rivals at the tolerance run got exactly Net-Trim's counts
        nettrim = next(n for n in tolerance if (n["model"], n["method"]) == (r["model"], "nettrim"))
        assert abs(r["kept"] - nettrim["kept"]) < 1e-9
    conv = [r for r in rows if r["part"] == "conv"]
    assert all(r["rows_used"] == r["patch_rows"] for r in conv)
    assert scale_module().render(data, None).startswith("# ")
