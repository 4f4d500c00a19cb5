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


# --------------------------------------------------------------------------------------------
# several seeds: every full preset runs >= 3 independently trained networks / calibration draws

SPREAD = "mean ± half-range over the seeds, half-range = (max - min) / 2"


def seed_list(seed: int, count: int) -> list[int]:
    """The seeds of a run: ``seed, seed + 1, ..., seed + count - 1`` (seed s trains network s
    and draws its calibration samples with s + 1)."""
    from ..errors import require

    require(count >= 1, f"a run needs at least one seed, got {count}")
    return [int(seed) + i for i in range(count)]


def stack(items: list):
    """Merge same-shaped nested dicts / lists over seeds: every numeric or boolean leaf becomes
    the list of its values, one per item; strings and None are kept from the first item.
    Lists of unequal lengths are kept as the list of the items' lists."""
    first = items[0]
    if isinstance(first, dict):
        return {k: stack([it[k] for it in items]) for k in first if all(k in it for it in items)}
    if isinstance(first, list):
        if all(isinstance(it, list) and len(it) == len(first) for it in items):
            return [stack([it[i] for it in items]) for i in range(len(first))]
        return list(items)
    if isinstance(first, (bool, int, float)):
        return list(items)
    return first


def mean_spread(values) -> tuple[float, float]:
    """(mean, half-range) of ``values``: m = sum v / n, h = (max v - min v) / 2."""
    v = np.asarray(values, float)
    return float(v.mean()), float((v.max() - v.min()) / 2)


def pm(values, spec: str = ".2f", scale: float = 1.0) -> str:
    """``values`` (a number or one per seed) as "mean ± half-range" (one value: just it)."""
    v = np.atleast_1d(np.asarray(values, float)) * scale
    m, h = mean_spread(v)
    return f"{m:{spec}}" if len(v) == 1 else f"{m:{spec}} ± {h:{spec.lstrip('+')}}"


def count_true(flags) -> str:
    """"k of n" for a list of booleans (one per seed)."""
    flags = list(np.atleast_1d(flags))
    return f"{sum(bool(f) for f in flags)} of {len(flags)}"
