"""Single-field mutations of a report dict: every field a claim rests on, changed one at a time
by a wrong value of its type, a value of another type, or its removal.

Left out are the fields that record how the run went and claim nothing about the weights
(``nettrim.report.schema.RECORDS``: times, solver counters, notes, resumed layers, the run's
batching and row options) and the method record (its search options, such as ``reweight``,
say how the support was found, not what the weights satisfy; the options that set the claim
are tested on their own)."""
from __future__ import annotations

import copy
import math

SKIPPED = ("seconds", "peak_memory_mb", "notes", "resumed", "method", "solver", "info", "options")


def paths(report: dict):
    """Every path (tuple of keys and indices) to a field of ``report`` that is not skipped."""
    def walk(node, path):
        yield path
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in SKIPPED:
                    yield from walk(value, path + (key,))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, path + (i,))

    return [p for p in walk(report, ()) if p]


def _number(v):
    return [2 * v + 1, -v - 1, v + 10, "abc", None, math.nan]


MUTATIONS = {
    bool: lambda v: [not v, "yes", 1, None],
    int: lambda v: [v + 1, v - 1, v * 3 + 2, "abc", 1.5, None],
    float: _number,
    str: lambda v: ["x", v + "0", v[:-1] + ("0" if v[-1:] != "0" else "1"), 3, None],
    type(None): lambda v: [1.0, "abc", [], True],
    list: lambda v: [v[:-1], v + v[-1:] if v else ["x"], v[::-1] if len(set(map(repr, v))) > 1 else v + ["x"], "abc"],
    dict: lambda v: ["abc", []],
}


def mutations(report: dict):
    """(description, mutated report) for every path and every mutation of its value, plus the
    removal of every field of a record."""
    for path in paths(report):
        parent, key = _parent(report, path)
        value = parent[key]
        for new in MUTATIONS[type(value)](value):
            if new == value and type(new) is type(value):
                continue
            yield f"{_show(path)} = {new!r:.40}", _with(report, path, new)
        if isinstance(parent, dict):
            yield f"del {_show(path)}", _with(report, path, _DELETE)


_DELETE = object()


def _parent(report, path):
    node = report
    for key in path[:-1]:
        node = node[key]
    return node, path[-1]


def _with(report, path, new):
    out = copy.deepcopy(report)
    parent, key = _parent(out, path)
    if new is _DELETE:
        del parent[key]
    else:
        parent[key] = new
    return out


def _show(path) -> str:
    return "report" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path)
