"""What every benchmark script shares: the machine it ran on, a one-line exit on bad input, and
one measurement per fresh process (so that its peak resident memory, ru_maxrss, is its own)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from typing import Callable

import torch

from nettrim import NettrimError


def machine() -> dict:
    """The processor, thread count and torch version, for the JSON a benchmark writes."""
    return {"machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's main; a missing checkpoint or dataset exits with one line and no file."""
    try:
        main()
    except NettrimError as exc:
        raise SystemExit(f"error: {exc}")


def start_child(script: str, payload: str) -> subprocess.Popen:
    """``python script --child payload`` in a fresh process, stdout and stderr piped; the
    script's main prints the measurement as one JSON line (``--child`` is hidden from --help)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, script, "--child", payload], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def child_result(proc: subprocess.Popen, what: str) -> dict:
    """The JSON line a child printed last; a failed child exits here with one line naming
    ``what`` and the child's own last line of error."""
    out, err = proc.communicate()
    if proc.returncode:
        last = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise SystemExit(f"error: {what} failed: {last}")
    return json.loads(out.strip().splitlines()[-1])
