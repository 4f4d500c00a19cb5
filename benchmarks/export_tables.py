"""The tables of docs/export.md, generated from benchmarks/results/export_sizes.json and
benchmarks/results/inference.json.

Each table sits in docs/export.md between ``<!-- BEGIN NAME -->`` and ``<!-- END NAME -->``
lines; :func:`update` rewrites those blocks from the JSON, :func:`expected` gives what they
must hold (the test compares it with the committed file). Run
`.venv/bin/python benchmarks/export_tables.py` to regenerate the tables from the JSON alone.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from nettrim.report.io import atomic_write

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "export.md"
SIZES = ROOT / "benchmarks" / "results" / "export_sizes.json"
INFERENCE = ROOT / "benchmarks" / "results" / "inference.json"


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def sizes_table(data: dict) -> str:
    """File sizes (KiB) and ratios per model, one row each."""
    rows = ["| model | removed | accuracy dense → pruned | torch.save | dense safetensors "
            "| sparse | torch.save / sparse | dense / sparse | round trip | ONNX max abs diff |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for m in data["models"]:
        b = m["bytes"]
        rows.append(
            f"| {m['arch']} | {100 * m['removed']:.2f} % | {m['accuracy_dense']:.2f} → "
            f"{m['accuracy_pruned']:.2f} % | {_kib(b['torch_save'])} KiB | "
            f"{_kib(b['dense_safetensors'])} KiB | {_kib(b['sparse'])} KiB | "
            f"{m['ratio_torch_save']:.1f}x | {m['ratio_dense_safetensors']:.1f}x | "
            f"{'exact' if m['round_trip_exact'] else 'DIFFERS'} | {m['onnx_max_abs_diff']:.1e} |")
    return "\n".join(rows)


def positions_table(data: dict) -> str:
    """What the positions of the non-zeros cost under each coding, in bits per weight."""
    codings = list(data["models"][0]["position_bits_per_entry"])
    rows = ["| model | " + " | ".join(codings) + " |", "|---|" + "---:|" * len(codings)]
    for m in data["models"]:
        bits = m["position_bits_per_entry"]
        rows.append(f"| {m['arch']} | " + " | ".join(f"{bits[c]:.3f}" for c in codings) + " |")
    return "\n".join(rows)


def inference_table(data: dict) -> str:
    """Median latency at batch 1 and batch 256, and test accuracy, per model and variant."""
    rows = ["| model | variant | batch 1 (µs) | batch 256 (ms) | accuracy |",
            "|---|---|---:|---:|---:|"]
    for r in data["rows"]:
        rows.append(f"| {r['model']} | {r['variant']} | {r['batch_1_us']:,.0f} | "
                    f"{r['batch_256_ms']:,.2f} | {r['accuracy']:.2f} % |")
    return "\n".join(rows)


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def expected() -> dict[str, str]:
    """Block name -> table text, from the result files that exist."""
    out = {}
    sizes, inference = _load(SIZES), _load(INFERENCE)
    if sizes:
        out["export_sizes"] = sizes_table(sizes)
        out["position_codes"] = positions_table(sizes)
    if inference:
        out["inference"] = inference_table(inference)
    return out


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", re.S)


def blocks(text: str) -> dict[str, str]:
    """Block name -> its current text in ``text``."""
    return {m.group(1): m.group(2) or "" for m in
            re.finditer(r"<!-- BEGIN (\S+) -->\n(?:(.*?)\n)?<!-- END \1 -->", text, re.S)}


def update(doc: Path = DOC) -> Path:
    """Rewrite every generated block of ``doc`` from the JSON."""
    text = doc.read_text()
    for name, table in expected().items():
        text, n = _pattern(name).subn(lambda m: m.group(1) + table + "\n" + m.group(2), text)
        if n != 1:
            raise SystemExit(f"error: {doc} has no block {name} (<!-- BEGIN {name} --> ... END)")
    return atomic_write(doc, lambda tmp: Path(tmp).write_text(text))


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(f"updated {update()}")
