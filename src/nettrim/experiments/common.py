"""Small helpers shared by the experiments: atomic writes (from ``report.io``) and seeded
random generators."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..layer import ADMMSettings
from ..report.io import save_figure_atomic, write_json_atomic  # noqa: F401  (re-exported)


class AdmmPreset:
    """Base of the experiments' presets: ``admm`` is a tuple of (ADMMSettings field, value)."""

    admm: tuple[tuple[str, float], ...]

    def settings(self) -> ADMMSettings:
        return ADMMSettings(**dict(self.admm))


def begin_run(out_dir, preset, presets: dict):
    """What every experiment's ``main`` starts with: (the resolved preset, ``out_dir`` as a
    created Path, the start time for ``write_run``)."""
    import time
    from pathlib import Path

    from .zoo import resolve_preset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return resolve_preset(preset, presets), out, time.perf_counter()


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
