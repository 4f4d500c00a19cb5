"""nettrim: Net-Trim convex pruning of trained neural networks, with checkable guarantees."""
from .errors import NettrimError
from .layer import ADMMSettings, LayerResult, trim_layer
from .pruners import (DC, LOBS, NetTrim, PruneReport, PruneResult, PruningMethod, ShrinkResult,
                      Threshold, prune, shrink)
from .status import Status
from . import export  # callable: nettrim.export(model, path, format="sparse")
from .export import load

__all__ = ["NettrimError", "ADMMSettings", "LayerResult", "trim_layer", "prune", "PruneResult",
           "PruneReport", "PruningMethod", "NetTrim", "Threshold", "DC", "LOBS", "Status", "shrink",
           "ShrinkResult"]
__all__ += ["export", "load"]
__version__ = "0.1.0"
