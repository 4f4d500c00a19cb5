"""The experiments by their command-line names: ``EXPERIMENTS[name](out_dir, preset, seed)``.

Every entry runs one experiment's preset ("quick" or "full"), writes ``<module>.json`` and
``<module>.png`` into ``out_dir`` (atomically) and returns the JSON content. Trained networks
are cached (``$NETTRIM_CACHE``, default ``runs/cache``; see ``experiments.zoo``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import (bounds, cascade_vs_parallel, depth, depth_conv, dimensionality, robustness,
               sample_complexity)

EXPERIMENTS: dict[str, Callable[[Path, str, int], dict]] = {
    "sample-complexity": sample_complexity.main,
    "bounds": bounds.main,
    "cascade-vs-parallel": cascade_vs_parallel.main,
    "depth": depth.main,
    "depth-conv": depth_conv.main,
    "dimensionality": dimensionality.main,
    "robustness": robustness.main,
}

MODULES = {
    "sample-complexity": sample_complexity,
    "bounds": bounds,
    "cascade-vs-parallel": cascade_vs_parallel,
    "depth": depth,
    "depth-conv": depth_conv,
    "dimensionality": dimensionality,
    "robustness": robustness,
}
"""Each experiment's module: ``PRESETS``, ``JSON_NAME``, ``PNG_NAME``, ``markdown_section``."""

PRESET_NAMES = ("quick", "full")


def run_experiment(name: str, out_dir: Path, preset: str = "quick", seed: int = 0, *,
                   progress: bool = True) -> dict:
    """``EXPERIMENTS[name]`` with a clear error for unknown names."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name](Path(out_dir), preset, seed, progress=progress)
