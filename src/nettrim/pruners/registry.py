"""The one registry of pruning methods: name -> method class. ``prune``, ``shrink``, ``compare``
and the CLI's ``--methods`` all read it. Adding a method is one file (a ``PruningMethod``
subclass with its layer method) plus one entry here."""
from __future__ import annotations

from ..errors import NettrimError, require
from .base import PruningMethod
from .dc import DC
from .lobs import LOBS
from .nettrim import NetTrim
from .threshold import Threshold

METHODS: dict[str, type[PruningMethod]] = {cls.name: cls for cls in (NetTrim, Threshold, DC, LOBS)}


def resolve_method(method: str | PruningMethod, **options) -> PruningMethod:
    """The method object for ``method``: an object is returned as it is (no option may be given
    beside it: they belong on the object); a registered name builds that method's default
    object with ``options`` (for Net-Trim the plain numbers epsilon, gamma, kappa)."""
    given = {k: v for k, v in options.items() if v is not None}
    if isinstance(method, PruningMethod):
        if given:
            first = sorted(given)[0]
            raise NettrimError(f"{', '.join(sorted(given))} must be set on the method object, not "
                               f"on prune(): {type(method).__name__}({first}=...)")
        return method
    require(isinstance(method, str) and method in METHODS,
            f"unknown method {method!r}; choose one of {', '.join(METHODS)} or pass a method "
            f"object such as nettrim.NetTrim(...)")
    return METHODS[method](**given)
