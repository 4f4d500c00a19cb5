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
