"""The schema of a prune report as read back (``PruneReport.to_dict()``, or its JSON): one
declarative description, applied once when a report is loaded.

Every field has a check from the option tables' vocabulary (``nettrim.options``: ``Real``,
``Integer``, ``Flag``, ``OneOf``, ...) plus the few kinds a report needs (records, lists, text,
digests); the method record is checked by rebuilding the method object from it, so its options
pass the method's own ``CHECKS`` table. A missing field, an unknown one, a wrong type or a value
out of range is a one-line :class:`~nettrim.errors.NettrimError` naming the field's path
(``report.layers[1].certificate.epsilon must be a finite number >= 0, got 'abc'``).

``RECORDS`` names the fields that record how the run went (times, solver counters, notes):
``verify`` reads them for their type only; every other field is a claim it recomputes.
"""
from __future__ import annotations

import dataclasses
import re

from ..errors import NettrimError, require
from ..options import Check, Flag, Instance, Integer, NameMap, Names, OneOf, Options, Real, _show
from ..program.constraint import INACTIVE
from ..status import Status

MODES = ("cascade", "parallel")
KINDS = ("linear", "conv2d", "conv1d")
STATUSES = tuple(s.value for s in Status)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Anything(Check):
    """Any value (a record verify does not read)."""

    allows = "any value"

    def __call__(self, owner, name, value):
        return value


class Text(Check):
    """A string."""

    allows = "a string"
    wrong = ((3, "a number"), (None, "None"))

    def __call__(self, owner, name, value):
        if not isinstance(value, str):
            raise self.fail(owner, name, value)
        return value


class Digest(Check):
    """A sha256 digest: 64 lower-case hexadecimal digits."""

    allows = "a sha256 digest (64 hexadecimal digits)"
    wrong = (("abc", "too short"), (3, "a number"))

    def __call__(self, owner, name, value):
        if not (isinstance(value, str) and _HEX64.match(value)):
            raise self.fail(owner, name, value)
        return value


class Mapping(Check):
    """A dict with string keys (its values not read), or None with ``none``."""

    def __init__(self, *, none: bool = False):
        self.none = none
        self.allows = "a dict" + (" or None" if none else "")
        self.wrong = (("abc", "a string"), ([1], "a list"))

    def __call__(self, owner, name, value):
        if value is None and self.none:
            return None
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise self.fail(owner, name, value)
        return dict(value)


class ListOf(Check):
    """A list (or tuple) of items each checked by ``items``; ``empty``: [] allowed; ``none``: None allowed."""

    def __init__(self, items: Check, *, empty: bool = True, none: bool = False):
        self.items, self.empty, self.none = items, empty, none
        self.allows = f"a list of {items.allows}" + ("" if empty else " (not empty)") + (" or None" if none else "")
        self.wrong = (("abc", "a string"), (3, "a number"))

    def __call__(self, owner, name, value):
        if value is None and self.none:
            return None
        if not isinstance(value, (list, tuple)) or (not self.empty and not value):
            raise self.fail(owner, name, value)
        return [self.items(owner, f"{name}[{i}]", v) for i, v in enumerate(value)]


class Record(Check):
    """A dict with exactly the fields of ``table`` (``strict``; else more are allowed and
    kept as they are), each checked by its entry; None with ``none``."""

    def __init__(self, table: dict[str, Check], *, strict: bool = True, none: bool = False):
        self.table, self.strict, self.none = table, strict, none
        self.allows = "a record (a JSON object)" + (" or None" if none else "")
        self.wrong = (("abc", "a string"), ({}, "no fields"))

    def __call__(self, owner, name, value):
        if value is None and self.none:
            return None
        where = f"{owner}.{name}" if name else owner
        if not isinstance(value, dict):
            raise NettrimError(f"{where} must be a record (a JSON object), got {_show(value)}")
        missing = [k for k in self.table if k not in value]
        if missing:
            raise NettrimError(f"{where} has no field {missing[0]!r}: the report is malformed "
                               "(or written by another version of nettrim)")
        unknown = sorted(str(k) for k in value if k not in self.table)
        if self.strict and unknown:
            raise NettrimError(f"{where} has an unknown field {unknown[0]!r}: the report is malformed "
                               "(or written by another version of nettrim)")
        out = {k: v for k, v in value.items() if k not in self.table}
        for key, check in self.table.items():
            out[key] = check(owner, f"{name}.{key}" if name else key, value[key])
        return out


class MethodRecord(Check):
    """A method's record (``Method.record()``): its registered name and options, rebuilt into
    the method object, so every option passes the method's own ``CHECKS`` table."""

    allows = "a method record (name and options)"

    def __call__(self, owner, name, value):
        from ..methods import METHODS

        where = f"{owner}.{name}"
        require(isinstance(value, dict), f"{where} must be a method record (a JSON object), got {_show(value)}")
        kind = value.get("name")
        require(isinstance(kind, str) and kind in METHODS,
                f"{where}.name must be one of {', '.join(map(repr, METHODS))}, got {_show(kind)}")
        try:
            return rebuild(METHODS[kind], {k: v for k, v in value.items() if k != "name"})
        except NettrimError as exc:
            raise NettrimError(f"{where}: {exc}") from None


def rebuild(cls: type[Options], record: dict) -> Options:
    """The option object ``cls(**record)``, nested option records (an ``Instance`` check of an
    options class, such as NetTrim's ADMM ``settings``) rebuilt first; checked by ``cls.CHECKS``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in record.items():
        check = cls.CHECKS.get(key) if key in fields else None
        if isinstance(check, Instance) and isinstance(check.cls, type) and issubclass(check.cls, Options) \
                and isinstance(value, dict):
            value = rebuild(check.cls, value)
        kwargs[key] = value
    return cls(**kwargs)


def _run_options() -> Record:
    """The RunOptions fields that decide which rows each layer saw, checked by RunOptions' own table."""
    from ..api import RunOptions

    table = {k: RunOptions.CHECKS[k] for k in ("max_rows", "max_memory", "seed")}
    return Record(table, strict=False)


CERTIFICATE = dict(
    claim=Text(), rule=OneOf("tolerance", "measured"), epsilon=Real(ge=0), relative_epsilon=Real(ge=0),
    radii=ListOf(Real(ge=0), empty=False, none=True), inactive=OneOf(*INACTIVE), theta=Real(ge=0, le=1, none=True),
    tolerance=Real(ge=0, lt=1), discrepancy=Real(ge=0), excess=Real(ge=0), measured=Real(ge=0), limit=Real(ge=0),
    holds=Flag(), gap=Real(ge=0), bound_radius=Real(ge=0))

LAYER = dict(
    name=Text(), kind=OneOf(*KINDS), shape=ListOf(Integer(ge=1), empty=False), relu=Flag(),
    nnz_before=Integer(ge=0), nnz_after=Integer(ge=0), total=Integer(ge=1), status=OneOf(*STATUSES),
    seconds=Real(ge=0), rows=Integer(ge=1), rows_total=Integer(ge=1), target_norm=Real(ge=0),
    discrepancy=Real(ge=0), response_error=Real(ge=0), certificate=Record(CERTIFICATE, none=True),
    solver=Mapping(none=True), info=Mapping(), kept_fraction=Real(ge=0, le=1), certified=Flag())

DIGESTS = dict(algorithm=OneOf("sha256"), original=Digest(), pruned=Digest(),
               layers=NameMap(Digest(), none=False), inputs=Digest())


def _report_table() -> dict[str, Check]:
    run = Record(dict(options=_run_options(), sparsity=Real(gt=0, lt=1, none=True),
                      counts=NameMap(Integer(ge=0)), inputs=Integer(ge=1),
                      folded_batchnorm=ListOf(ListOf(Text(), empty=False))), strict=False)
    return dict(
        method=MethodRecord(), mode=OneOf(*MODES), layers=ListOf(Record(LAYER), empty=False),
        seconds=Real(ge=0), output_error=Real(ge=0), output_norm=Real(ge=0), bound=Real(ge=0, none=True),
        run=run, skipped=Names(), resumed=Names(), notes=ListOf(Text()), peak_memory_mb=Real(ge=0, none=True),
        digests=Record(DIGESTS), nnz_before=Integer(ge=0), nnz_after=Integer(ge=0), total=Integer(ge=1),
        sparsity=Real(ge=0, le=1), status=OneOf(*STATUSES), uncertified=Names(),
        surgery=Mapping(none=True))


RECORDS = frozenset({
    "seconds", "peak_memory_mb", "notes", "resumed", "run.options", "layers[].seconds", "layers[].solver",
    "layers[].info"})


def load_report(report) -> dict:
    """The report (a ``PruneReport``, or its ``to_dict()`` / JSON as a dict) checked against
    the schema, with the method record rebuilt into its object (``["method"]``); a one-line
    NettrimError for anything malformed (module docstring)."""
    from .types import PruneReport

    if isinstance(report, PruneReport):
        report = report.to_dict()
    out = Record(_report_table())("report", "", report)
    names = [layer["name"] for layer in out["layers"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise NettrimError(f"report.layers names layer {twice[0]!r} twice")
    require(sorted(out["digests"]["layers"]) == sorted(names),
            "report.digests.layers must give one digest for each layer of report.layers")
    return out
