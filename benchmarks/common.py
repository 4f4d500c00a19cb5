"""What every benchmark script shares: the machine it ran on, and a one-line exit on bad input."""
from __future__ import annotations

import platform
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
