"""The pruning methods, one file each, and their one registry: name -> method class. ``prune``,
``shrink``, ``compare`` and the CLI read it. Adding a method is one file (a ``Method`` subclass
with ``at_count`` and, if it has a tolerance, ``at_tolerance``) plus one entry here."""
from __future__ import annotations

from ..errors import require
from .base import LayerJob, LayerOutcome, Method
from .dc import DC
from .lobs import LOBS
from .nettrim import NetTrim
from .sparsegpt import SparseGPT
from .threshold import Threshold
from .wanda import Wanda

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (NetTrim, Threshold, DC, LOBS, SparseGPT, Wanda)}


def resolve_method(method) -> Method:
    """The method object for ``method``: an object as it is, a registered name as that
    method's default object."""
    if isinstance(method, Method):
        return method
    require(isinstance(method, str) and method in METHODS,
            f"unknown method {method!r}; choose one of {', '.join(METHODS)} or pass a method "
            f"object such as nettrim.NetTrim(...)")
    return METHODS[method]()


__all__ = ["METHODS", "resolve_method", "Method", "LayerJob", "LayerOutcome", "NetTrim", "Threshold",
           "DC", "LOBS", "SparseGPT", "Wanda"]
