"""Every table in docs/, generated from the JSON the benchmarks commit under benchmarks/results/.

A table sits in its doc between ``<!-- BEGIN NAME -->`` and ``<!-- END NAME -->`` lines;
``BLOCKS`` says which doc, which result file and which function renders it. :func:`update`
rewrites every block from the JSON, :func:`expected` gives what a doc's blocks must hold (a
test compares it with the committed docs), so no figure in a table is typed by hand. Run
`.venv/bin/python benchmarks/tables.py` after a benchmark has written its JSON.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

import budget  # noqa: E402
import default_config  # noqa: E402
import export_tables  # noqa: E402
import fixed_count  # noqa: E402

from nettrim.report.io import atomic_write  # noqa: E402

BLOCKS = {  # name: (doc under docs/, result file, renderer of its JSON)
    "export_sizes": ("export.md", "export_sizes.json", export_tables.sizes_table),
    "position_codes": ("export.md", "export_sizes.json", export_tables.positions_table),
    "inference": ("export.md", "inference.json", export_tables.inference_table),
    "default_config": ("results.md", "default_config.json",
                       lambda d: default_config.table(default_config.summarize(d["rows"]))),
    "budget": ("results.md", "budget.json", lambda d: budget.budget_table(budget.summary(d["budget"]))),
    "default_vs_paper": ("results.md", "budget.json", lambda d: budget.compare_table(d["compare"])),
    "fixed_count": ("results.md", "fixed_count.json", fixed_count.table),
}


def expected(doc: str) -> dict[str, str]:
    """Block name -> table text for every block of ``doc`` whose result file exists."""
    out = {}
    for name, (where, result, render) in BLOCKS.items():
        path = RESULTS / result
        if where == doc and path.is_file():
            out[name] = render(json.loads(path.read_text()))
    return out


def blocks(text: str) -> dict[str, str]:
    """Block name -> its current text in ``text``."""
    return {m.group(1): m.group(2) or "" for m in
            re.finditer(r"<!-- BEGIN (\S+) -->\n(?:(.*?)\n)?<!-- END \1 -->", text, re.S)}


def update() -> list[Path]:
    """Rewrite every generated block of every doc from the JSON."""
    written = []
    for doc in dict.fromkeys(where for where, _, _ in BLOCKS.values()):
        path = ROOT / "docs" / doc
        text = path.read_text()
        for name, table in expected(doc).items():
            pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", re.S)
            text, n = pattern.subn(lambda m: m.group(1) + table + "\n" + m.group(2), text)
            if n != 1:
                raise SystemExit(f"error: {path} has no block {name} (<!-- BEGIN {name} --> ... END)")
        written.append(atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text)))
    return written


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print("updated " + ", ".join(str(p) for p in update()))
