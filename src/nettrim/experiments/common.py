"""Small helpers shared by the experiments: atomic writes (from ``report.io``) and seeded
random generators."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..report.io import save_figure_atomic, write_json_atomic  # noqa: F401  (re-exported)


def seeded_generator(seed: int | Sequence[int]) -> np.random.Generator:
    """A numpy Generator from an int or a sequence of ints, e.g. ``(seed, N, s, trial)``: the
    same key always gives the same stream, whatever the order or process it is drawn in."""
    return np.random.default_rng(seed if isinstance(seed, int) else [int(v) for v in seed])


def write_run(out_dir, payload: dict, fig, start: float, png_name: str, json_name: str) -> dict:
    """Save ``fig`` and ``payload`` (with its wall time) into ``out_dir``, both atomically."""
    import time
    from pathlib import Path

    import matplotlib.pyplot as plt

    try:
        save_figure_atomic(fig, Path(out_dir) / png_name, dpi=110)
    finally:
        plt.close(fig)
    payload["seconds"] = time.perf_counter() - start
    write_json_atomic(Path(out_dir) / json_name, payload)
    return payload
