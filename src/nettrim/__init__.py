"""nettrim: Net-Trim convex pruning of trained neural networks, with checkable guarantees."""
from .errors import NettrimError
from .layer import ADMMSettings, LayerResult, trim_layer
from .pruners import PruneReport, PruneResult, prune

__all__ = ["NettrimError", "ADMMSettings", "LayerResult", "trim_layer", "prune", "PruneResult",
           "PruneReport"]
__version__ = "0.1.0"
