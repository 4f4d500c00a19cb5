"""nettrim: Net-Trim convex pruning of trained neural networks, with checkable guarantees."""
from .errors import NettrimError
from .layer import ADMMSettings, LayerResult, trim_layer

__all__ = ["NettrimError", "ADMMSettings", "LayerResult", "trim_layer"]
__version__ = "0.1.0"
