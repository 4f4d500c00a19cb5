"""docs/rivals.md is what benchmarks/rivals_budget.py makes of the committed JSON."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rivals_doc_equals_the_generated_one():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import rivals_budget
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    data = json.loads((ROOT / "benchmarks" / "results" / "rivals_budget.json").read_text())
    assert (ROOT / "docs" / "rivals.md").read_text() == rivals_budget.document(data)
