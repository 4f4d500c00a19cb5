"""Every table in docs/ is what benchmarks/tables.py makes of the committed JSON: no figure in
a table is typed by hand, and every block has its result file."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tables():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import tables
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return tables


@pytest.mark.parametrize("doc", ["README.md", "docs/export.md", "docs/results.md", "docs/distributed.md"])
def test_committed_tables_equal_the_generated_ones(tables, doc):
    text = (ROOT / doc).read_text()
    names = {name for name, (where, _, _) in tables.BLOCKS.items() if where == doc}
    assert set(tables.expected(doc)) == names  # every block's result file is committed
    assert tables.blocks(text) == tables.expected(doc)
