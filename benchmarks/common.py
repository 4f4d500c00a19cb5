"""What every benchmark script shares: the machine it ran on, a one-line exit on bad input, the
core a result file was made with, and one measurement per fresh process (so that its peak
resident memory, ru_maxrss, is its own)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch

from nettrim import NettrimError

# the prune/shrink a result file's rows come from, recorded under "core"; a file without it
# was made by the earlier ``nettrim.pruners`` prune and shrink
CORE = "nettrim.api"


def machine() -> dict:
    """The processor, thread count and torch version, for the JSON a benchmark writes."""
    return {"machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def earlier(path: Path) -> dict:
    """The result file at ``path`` when this core wrote it (a run resumes from, or keeps the
    parts of, that file); {} when there is none or its rows came from the earlier core, so
    that rows of two cores never mix in one table."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if data.get("core") == CORE else {}


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's main; a missing checkpoint or dataset exits with one line and no file."""
    try:
        main()
    except NettrimError as exc:
        raise SystemExit(f"error: {exc}")


def start_child(script: str, payload: str) -> subprocess.Popen:
    """``python script --child payload`` in a fresh process; the script's main prints the
    measurement as one JSON line on stdout (piped; ``--child`` is hidden from --help). Its
    stderr (progress, errors) goes where this process's goes, so that children running side
    by side never stall on a full pipe."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, script, "--child", payload], env=env,
                            stdout=subprocess.PIPE, text=True)


def child_result(proc: subprocess.Popen, what: str) -> dict:
    """The JSON line a child printed last; a failed child exits here with one line naming
    ``what`` (the child's own error is the line printed above it)."""
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"error: {what} failed (exit status {proc.returncode}; its error is above)")
    return json.loads(out.strip().splitlines()[-1])
