"""Network-level pruners: Net-Trim (parallel, cascade) and the rivals, one interface."""
from .api import prune
from .base import LayerJob, LayerMethod, LayerOutcome, PruningMethod, Target
from .dc import DC
from .lobs import LOBS
from .network import PruneResult, run_scheme
from .nettrim import NetTrim
from .registry import METHODS, resolve_method
from .report import LayerReport, PruneReport
from .shrink import ShrinkResult, Trial, shrink
from .threshold import Threshold

__all__ = ["prune", "METHODS", "resolve_method", "PruningMethod", "NetTrim", "Threshold", "DC",
           "LOBS", "PruneResult", "PruneReport", "LayerReport", "LayerJob", "LayerMethod",
           "LayerOutcome", "Target", "run_scheme", "shrink", "ShrinkResult", "Trial"]
