"""Option objects and their checks: one declarative table per public object.

Every public object that holds options (the methods, ``RunOptions``, ``SearchOptions``,
``ADMMSettings``, the backends) is a frozen dataclass declared with :func:`options`. Its
``CHECKS`` table maps each field to a :class:`Check`; the table is applied once, when the
object is built, and an unknown keyword, a wrong type or a wrong value is a one-line
:class:`~nettrim.errors.NettrimError` naming the object, the option and what is allowed
(scikit-learn's ``_parameter_constraints`` habit: the boundary checks, the inside trusts).

Each check also names one value of a wrong type and one wrong value of the right type
(``Check.wrong``), so that a test generated from the tables tries both for every entry.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
from typing import Any, ClassVar

from .errors import NettrimError, require

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_UNITS = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
          "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


class Check:
    """One option's rule: ``__call__(owner, name, value)`` returns the (normalised) value or
    raises a one-line NettrimError; ``wrong`` lists (value, why) pairs a test must see refused."""

    allows: str = "a valid value"
    wrong: tuple = ()

    def __call__(self, owner: str, name: str, value):
        raise NotImplementedError

    def fail(self, owner: str, name: str, value) -> NettrimError:
        return NettrimError(f"{owner}.{name} must be {self.allows}, got {_show(value)}")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class Real(Check):
    """A finite real number with optional bounds (``gt``, ``ge``, ``lt``, ``le``); ``none``: None allowed."""

    def __init__(self, *, gt=None, ge=None, lt=None, le=None, none: bool = False):
        self.gt, self.ge, self.lt, self.le, self.none = gt, ge, lt, le, none
        parts = [f"> {gt}" if gt is not None else "", f">= {ge}" if ge is not None else "",
                 f"< {lt}" if lt is not None else "", f"<= {le}" if le is not None else ""]
        bounds = " and ".join(p for p in parts if p)
        self.allows = "a finite number" + (f" {bounds}" if bounds else "") + (" or None" if none else "")
        bad = next((v for v in (gt, ge) if v is not None), None)
        wrong_value = bad - 1 if bad is not None else (lt if lt is not None else le + 1 if le is not None else math.nan)
        self.wrong = (("abc", "a string"), (wrong_value, "out of range"), (math.nan, "NaN"))

    def __call__(self, owner, name, value):
        if value is None and self.none:
            return None
        ok = is_real(value) and math.isfinite(value)
        ok = ok and (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
        ok = ok and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le)
        if not ok:
            raise self.fail(owner, name, value)
        return float(value) if not is_int(value) else value


class Integer(Check):
    """An integer (not a bool) with optional bounds; ``none``: None allowed."""

    def __init__(self, *, ge=None, le=None, none: bool = False):
        self.ge, self.le, self.none = ge, le, none
        parts = [f">= {ge}" if ge is not None else "", f"<= {le}" if le is not None else ""]
        bounds = " and ".join(p for p in parts if p)
        self.allows = "an integer" + (f" {bounds}" if bounds else "") + (" or None" if none else "")
        self.wrong = (("abc", "a string"), (1.5, "not an integer"), (True, "a bool"))
        if ge is not None:
            self.wrong += ((ge - 1, "below the bound"),)

    def __call__(self, owner, name, value):
        if value is None and self.none:
            return None
        ok = is_int(value) and (self.ge is None or value >= self.ge) and (self.le is None or value <= self.le)
        if not ok:
            raise self.fail(owner, name, value)
        return int(value)


class Flag(Check):
    """True or False (not 0/1, not "yes")."""

    allows = "True or False"
    wrong = (("yes", "a string"), (1, "an integer"), (None, "None"))

    def __call__(self, owner, name, value):
        if not isinstance(value, bool):
            raise self.fail(owner, name, value)
        return value


class OneOf(Check):
    """One of a fixed set of values (strings, or None)."""

    def __init__(self, *choices):
        self.choices = choices
        self.allows = "one of " + ", ".join(map(repr, choices))
        self.wrong = ((3.5, "a number"), ("no-such-choice", "not a choice"))

    def __call__(self, owner, name, value):
        if not any(value is c or (isinstance(value, str) and value == c) for c in self.choices):
            raise self.fail(owner, name, value)
        return value


class Instance(Check):
    """An instance of ``cls`` (or None with ``none``)."""

    def __init__(self, cls, *, none: bool = False, what: str | None = None):
        self.cls, self.none = cls, none
        self.allows = (what or f"a {cls.__name__}") + (" or None" if none else "")
        self.wrong = (("abc", "a string"),)

    def __call__(self, owner, name, value):
        if value is None and self.none:
            return None
        if not isinstance(value, self.cls):
            raise self.fail(owner, name, value)
        return value


class Names(Check):
    """A list or tuple of layer names (strings), stored as a tuple; never a bare string."""

    def __init__(self, *, none: bool = False, empty: bool = True):
        self.none, self.empty = none, empty
        self.allows = "a list of layer names" + ("" if empty else " (not empty)") + (" or None" if none else "")
        self.wrong = (("fc1", "a bare string"), ([1], "not names")) + (() if empty else (([], "empty"),))

    def __call__(self, owner, name, value):
        if value is None and self.none:
            return None
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)) \
                or not all(isinstance(v, str) for v in value) or (not self.empty and not value):
            raise self.fail(owner, name, value)
        return tuple(value)


class FlagOrNames(Check):
    """True/False (every layer / none) or a list of layer names (those layers)."""

    allows = "True, False or a list of layer names"
    wrong = ((5, "an integer"), (None, "None"), ("fc1", "a bare string"))

    def __call__(self, owner, name, value):
        if isinstance(value, bool):
            return value
        try:
            return Names()(owner, name, value)
        except NettrimError:
            raise self.fail(owner, name, value) from None


class NameMap(Check):
    """A dict of layer name -> value, each value checked by ``values``; None allowed with ``none``."""

    def __init__(self, values: Check, *, none: bool = True):
        self.values, self.none = values, none
        self.allows = f"a dict of layer name -> {values.allows}" + (" or None" if none else "")
        self.wrong = (([0.1], "a list"), ({"fc1": "abc"}, "a bad value"), ({1: 0.1}, "a non-string key"))

    def __call__(self, owner, name, value):
        if value is None and self.none:
            return None
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise self.fail(owner, name, value)
        return {k: self.values(owner, f"{name}[{k!r}]", v) for k, v in value.items()}


class Size(Check):
    """Bytes: a positive int, or a string "<number>[unit]" with unit B, KB, MB, GB, TB (powers of
    1000) or KiB, MiB, GiB, TiB (powers of 1024), case-insensitive; None allowed with ``none``."""

    def __init__(self, *, none: bool = True):
        self.none = none
        self.allows = "a size such as 2GiB, 512MiB or 1000000 (bytes)" + (" or None" if none else "")
        self.wrong = ((1.5, "a float"), ("2 parsecs", "an unknown unit"), (0, "zero"))

    def __call__(self, owner, name, value):
        if value is None and self.none:
            return None
        size = parse_size(value)
        if size is None:
            raise self.fail(owner, name, value)
        return size


def parse_size(value) -> int | None:
    """Bytes from a positive int or a size string (``Size``), None when it is neither."""
    if is_int(value):
        return int(value) if value >= 1 else None
    match = _SIZE.match(value) if isinstance(value, str) else None
    unit = match.group(2).upper() if match else None
    if unit not in _UNITS:
        return None
    size = math.floor(float(match.group(1)) * _UNITS[unit])
    return size if size >= 1 else None


class Either(Check):
    """The first of ``checks`` that accepts the value."""

    def __init__(self, *checks: Check):
        self.checks = checks
        self.allows = " or ".join(c.allows for c in checks)
        self.wrong = tuple(w for w in checks[0].wrong if _refused_by_all(checks, w[0]))

    def __call__(self, owner, name, value):
        for check in self.checks:
            try:
                return check(owner, name, value)
            except NettrimError:
                continue
        raise self.fail(owner, name, value)


def _refused_by_all(checks, value) -> bool:
    for check in checks:
        try:
            check("x", "y", value)
            return False
        except NettrimError:
            pass
    return True


class Function(Check):
    """A callable, or None."""

    allows = "a callable or None"
    wrong = (("abc", "a string"), (3, "a number"))

    def __call__(self, owner, name, value):
        if value is not None and not callable(value):
            raise self.fail(owner, name, value)
        return value


def options(cls):
    """Make ``cls`` a frozen, keyword-only dataclass whose fields are checked by ``cls.CHECKS``
    when an object is built (then ``cls.validate(self)``, if defined, for rules that tie
    several options together); an unknown keyword is a one-line NettrimError listing the
    valid ones. Every field must have an entry in ``CHECKS``."""
    cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in cls.CHECKS]
    assert not missing, f"{cls.__name__}.CHECKS has no entry for {missing}"
    init = cls.__init__

    @functools.wraps(init)
    def checked_init(self, *args, **kwargs):
        require(not args, f"{cls.__name__} takes its options by name, e.g. {cls.__name__}({names[0]}=...)"
                if names else f"{cls.__name__} takes no options")
        unknown = sorted(set(kwargs) - set(names))
        require(not unknown, f"{cls.__name__} has no option {', '.join(map(repr, unknown))}; "
                             f"its options: {', '.join(names) or 'none'}")
        init(self, **kwargs)
        for name in names:
            value = cls.CHECKS[name](cls.__name__, name, getattr(self, name))
            object.__setattr__(self, name, value)
        validate = getattr(self, "validate", None)
        if validate is not None:
            validate()

    cls.__init__ = checked_init
    return cls


class Options:
    """Base of the option objects: ``CHECKS`` (field -> Check), ``replace`` (checked again) and
    ``record`` (plain values for reports)."""

    CHECKS: ClassVar[dict[str, Check]] = {}

    def replace(self, **changes):
        """A copy with ``changes`` (checked like the constructor's keywords)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(values))
        require(not unknown, f"{type(self).__name__} has no option {', '.join(map(repr, unknown))}; "
                             f"its options: {', '.join(values)}")
        return type(self)(**{**values, **changes})

    def record(self) -> dict:
        """The options as plain JSON values."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def plain(value) -> Any:
    """A value as JSON-ready data: option objects as dicts, dtypes as names, tuples as lists,
    other objects by their class name."""
    import torch

    if isinstance(value, Options):
        return value.record()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, (tuple, list, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    return type(value).__name__  # a backend, a run store: recorded by kind


def checked_call(owner: str, table: dict[str, Check], given: dict) -> dict:
    """The keyword arguments ``given`` of a function checked against ``table`` (unknown names
    refused): the function form of :func:`options`, for public calls such as ``trim_layer``."""
    unknown = sorted(set(given) - set(table))
    require(not unknown, f"{owner}() has no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(table)}")
    return {name: table[name](owner, name, value) for name, value in given.items()}

