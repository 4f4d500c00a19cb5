"""docs/reliability.md is exactly what scripts/reliability_doc.py renders from
docs/reliability.json: no figure in it is typed by hand."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("reliability_doc", ROOT / "scripts" / "reliability_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_is_generated_from_the_json():
    data = json.loads((ROOT / "docs" / "reliability.json").read_text())
    assert {"hostile", "resume_kill", "determinism", "pickle"} <= set(data)
    assert (ROOT / "docs" / "reliability.md").read_text() == _script().render(data), \
        "docs/reliability.md is stale: run `.venv/bin/python scripts/reliability_doc.py`"


def test_every_hostile_entry_point_was_exercised():
    data = json.loads((ROOT / "docs" / "reliability.json").read_text())
    assert set(data["hostile"]) == {"trim_layer", "prune", "shrink", "export", "load", "cli"}
    assert all(sum(c.values()) > 0 for c in data["hostile"].values())
