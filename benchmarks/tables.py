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

import any_model  # noqa: E402
import budget  # noqa: E402
import default_config  # noqa: E402
import distributed  # noqa: E402
import export_tables  # noqa: E402
import fixed_count  # noqa: E402
import memory  # noqa: E402
import speed  # noqa: E402
import structured  # noqa: E402

from nettrim.report.io import atomic_write  # noqa: E402

BLOCKS = {  # name: (file under the repository root, result files, renderer of their JSON)
    "summary": ("README.md", ("budget.json", "fixed_count.json", "export_sizes.json", "any_model.json"),
                lambda b, f, e, a: summary(b, f, e, a)),
    "export_sizes": ("docs/export.md", ("export_sizes.json",), export_tables.sizes_table),
    "position_codes": ("docs/export.md", ("export_sizes.json",), export_tables.positions_table),
    "inference": ("docs/export.md", ("inference.json",), export_tables.inference_table),
    "default_config": ("docs/results.md", ("default_config.json",),
                       lambda d: default_config.table(default_config.summarize(d["rows"]))),
    "budget": ("docs/results.md", ("budget.json",),
               lambda d: budget.budget_table(budget.summary(d["budget"]))),
    "default_vs_paper": ("docs/results.md", ("budget.json",), lambda d: budget.compare_table(d["compare"])),
    "fixed_count": ("docs/results.md", ("fixed_count.json",), fixed_count.table),
    "speed": ("docs/results.md", ("speed.json",), speed.table),
    "any_model": ("docs/results.md", ("any_model.json",), any_model.table),
    "distributed": ("docs/distributed.md", ("distributed.json",), distributed.table),
    "memory_lenet5": ("docs/distributed.md", ("memory.json",), memory.lenet5_table),
    "memory_fc6": ("docs/distributed.md", ("memory.json",), memory.fc6_table),
    "structured_grid": ("docs/structured.md", ("structured.json",), structured.grid_table),
    "structured_result": ("docs/structured.md", ("structured.json",), structured.result_table),
    "structured_speed": ("docs/structured.md", ("inference.json",), structured.speed_table),
}


ANY_MODEL_NETS = {"resnet20": "Fashion-MNIST, BatchNorm folded, residual adds",
                  "vit-tiny": "Fashion-MNIST, every layer a linear program"}


def summary(budget_data: dict, fixed: dict, sizes: dict, any_model_data: dict) -> str:
    """The README's results table: one row per headline figure, each linking to its section."""
    rows = ["| what | result | details |", "|---|---|---|"]
    for net, e in budget.summary(budget_data["budget"]).items():
        if e.get("kept"):
            rows.append(f"| {net}: the smallest model within 0.5 points (validation) | "
                        f"{100 * e['kept'][0]:.1f} % of weights kept, test drop {e['test_drop'][0]:.2f} "
                        f"± {e['test_drop'][1]:.2f} points, search = {e['search_ratio'][0]:.1f} prunes | "
                        f"[budget](docs/results.md#name-a-budget) |")
    for net, what in ANY_MODEL_NETS.items():
        found = [r for r in any_model_data["rows"] if (r["net"], r["method"]) == (net, "shrink")]
        if found:
            kept = sum(r["kept"] for r in found) / len(found)
            drop = sum(r["dense_test"] - r["test"] for r in found) / len(found)
            rows.append(f"| {net} ({what}): the smallest model within 0.5 points (validation) | "
                        f"{100 * kept:.1f} % of weights kept, test drop {drop:.2f} points "
                        f"({len(found)} seeds) | [residual networks and transformers]"
                        "(docs/results.md#residual-networks-and-transformers) |")
    lobs = _mean(fixed["rows"], "lobs", 0.9)
    nt = _mean(fixed["rows"], "nettrim", 0.9)
    rows.append(f"| LeNet-300-100, 90 % zeros in every layer, no retraining | Net-Trim {nt:.2f} %, "
                f"L-OBS {lobs:.2f} % test accuracy | [fixed size](docs/results.md#at-a-fixed-size) |")
    lenet = next(m for m in sizes["models"] if m["arch"] == "lenet-300-100")
    rows.append(f"| LeNet-300-100 at {100 * lenet['removed']:.1f} % removed, sparse safetensors | "
                f"{lenet['ratio_torch_save']:.1f}x smaller than the dense state dict, exact round trip | "
                f"[export](docs/export.md) |")
    return "\n".join(rows)


def _mean(rows: list[dict], method: str, sparsity: float, net: str = "lenet-300-100") -> float:
    acc = [r["test"] for r in rows if (r["net"], r["method"], r["sparsity"]) == (net, method, sparsity)]
    return sum(acc) / len(acc)


def expected(doc: str) -> dict[str, str]:
    """Block name -> table text for every block of ``doc`` whose result files exist."""
    out = {}
    for name, (where, results, render) in BLOCKS.items():
        paths = [RESULTS / r for r in results]
        if where == doc and all(p.is_file() for p in paths):
            out[name] = render(*(json.loads(p.read_text()) for p in paths))
    return out


def blocks(text: str) -> dict[str, str]:
    """Block name -> its current text in ``text``."""
    return {m.group(1): m.group(2) or "" for m in
            re.finditer(r"<!-- BEGIN (\S+) -->\n(?:(.*?)\n)?<!-- END \1 -->", text, re.S)}


def update() -> list[Path]:
    """Rewrite every generated block of every doc from the JSON."""
    written = []
    for doc in dict.fromkeys(where for where, _, _ in BLOCKS.values()):
        path = ROOT / doc
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
