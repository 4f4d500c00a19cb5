"""nettrim: Net-Trim convex pruning of trained neural networks, with checkable guarantees.

``prune`` prunes a model once, ``shrink`` finds the sparsest model within an accuracy budget;
both take any registered method (``METHODS``: Net-Trim and its rivals) and a ``RunOptions``.
"""
from .errors import NettrimError
from .status import Status
from .methods import DC, LOBS, METHODS, Method, NetTrim, SparseGPT, Threshold, Wanda
from .solvers.admm import ADMMSettings
from .api import RunOptions, prune
from .scheme import PruneResult
from .report.types import PruneReport
from .search import SearchOptions, ShrinkResult, shrink
from . import export  # callable: nettrim.export(model, path, format="sparse")
from .export import load

__all__ = ["NettrimError", "Status", "prune", "shrink", "RunOptions", "SearchOptions", "PruneResult",
           "PruneReport", "ShrinkResult", "METHODS", "Method", "NetTrim", "SparseGPT", "Wanda", "LOBS",
           "DC", "Threshold", "ADMMSettings", "export", "load"]
__version__ = "0.2.0"
