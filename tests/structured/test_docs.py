"""docs/structured.md's tables are what benchmarks/tables.py makes of the committed JSON."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_structured_tables_equal_the_generated_ones():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import tables
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    doc = "docs/structured.md"
    names = {name for name, (where, _, _) in tables.BLOCKS.items() if where == doc}
    assert names == {"structured_grid", "structured_result", "structured_speed"}
    assert set(tables.expected(doc)) == names  # every block's result file is committed
    assert tables.blocks((ROOT / doc).read_text()) == tables.expected(doc)
