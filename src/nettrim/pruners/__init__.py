"""Network-level pruners: Net-Trim (parallel, cascade) and the baselines, one interface."""
from .api import METHODS, prune
from .base import LayerJob, LayerMethod, LayerOutcome
from .network import PruneResult, run_scheme
from .report import LayerReport, PruneReport

__all__ = ["prune", "METHODS", "PruneResult", "PruneReport", "LayerReport", "LayerJob",
           "LayerMethod", "LayerOutcome", "run_scheme"]
