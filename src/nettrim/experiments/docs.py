"""docs/experiments.md from the committed experiment data.

Each experiment's full-preset JSON lives in ``docs/data/<module>.json`` (bulky per-trial arrays
dropped, see :func:`slim`); its section of docs/experiments.md sits between the lines
``<!-- BEGIN experiment:NAME -->`` and ``<!-- END experiment:NAME -->`` and is exactly what
the experiment's ``markdown_section`` makes of that JSON. The claims table at the top
(``<!-- BEGIN experiment:claims -->``) is :func:`claims_table` of all of them. A test checks
that the committed document equals what the committed JSON gives.

    python -m nettrim.experiments.docs            # rewrite the sections from docs/data
    python -m nettrim.experiments.docs --from runs/full   # first copy runs/full/<name>/ in
    python -m nettrim.experiments.docs --check    # exit 1 when the document is out of date
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from ..errors import NettrimError, require
from ..report.io import atomic_write
from .claims import claims_table
from .registry import MODULES

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "experiments.md"
DATA = ROOT / "docs" / "data"
FIGURES = ROOT / "docs" / "figures"
BULKY = ("errors", "draws", "instances")  # per-trial arrays no table reads


def slim(obj):
    """``obj`` without the lists under the keys in ``BULKY`` (at any depth): what docs/data
    keeps."""
    if isinstance(obj, dict):
        return {k: slim(v) for k, v in obj.items() if k not in BULKY or not isinstance(v, list)}
    if isinstance(obj, list):
        return [slim(v) for v in obj]
    return obj


def load_payloads(data_dir: Path = DATA) -> dict[str, dict]:
    """{experiment name: committed JSON} for every experiment whose file exists."""
    out = {}
    for name, module in MODULES.items():
        path = Path(data_dir) / module.JSON_NAME
        if path.exists():
            out[name] = json.loads(path.read_text())
    return out


def sections(payloads: dict[str, dict]) -> dict[str, str]:
    """Marker name -> generated text: one per experiment, plus the claims table."""
    out = {name: MODULES[name].markdown_section(p).strip() for name, p in payloads.items()}
    out["claims"] = claims_table(payloads).strip()
    return out


def render(text: str, generated: dict[str, str]) -> str:
    """``text`` with every ``BEGIN/END experiment:NAME`` block replaced by ``generated[NAME]``;
    a block without generated text is an error (its data is missing)."""
    pattern = re.compile(r"(<!-- BEGIN experiment:([\w-]+) -->\n)(.*?)(<!-- END experiment:\2 -->)",
                         re.S)

    def sub(m: re.Match) -> str:
        name = m.group(2)
        require(name in generated, f"docs/experiments.md block {name!r} has no data in docs/data")
        return f"{m.group(1)}{generated[name]}\n{m.group(4)}"

    return pattern.sub(sub, text)


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def copy_run(src: Path, data_dir: Path = DATA, figures: Path = FIGURES) -> list[str]:
    """Copy each ``src/<name>/<module>.json`` (slimmed) and ``.png`` into docs; the names
    copied."""
    done = []
    for name, module in MODULES.items():
        js = Path(src) / name / module.JSON_NAME
        if not js.exists():
            continue
        payload = json.loads(js.read_text())
        require(payload.get("preset") == "full", f"{js}: docs take full-preset runs only")
        _write_text(Path(data_dir) / module.JSON_NAME,
                    json.dumps(slim(payload), indent=1, sort_keys=True) + "\n")
        shutil.copyfile(js.with_name(module.PNG_NAME), Path(figures) / module.PNG_NAME)
        done.append(name)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nettrim.experiments.docs", description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="src", type=Path, default=None,
                    help="a folder of full-preset runs (<name>/<module>.json) to copy in first")
    ap.add_argument("--check", action="store_true", help="exit 1 when the document is out of date")
    args = ap.parse_args(argv)
    try:
        if args.src is not None:
            print("copied:", ", ".join(copy_run(args.src)) or "nothing")
        text = DOC.read_text()
        new = render(text, sections(load_payloads()))
    except NettrimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        return 0 if new == text else 1
    if new != text:
        _write_text(DOC, new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
