"""Shared by the reliability tests: the outcome ledger, a time limit, and one-line checks.

Every hostile case ends in one of a few classes, which the tests count per entry point
(``LEDGER``); ``make fuzz`` writes the counts, with the resume, determinism and pickle-payload
records, to ``docs/reliability.json`` (``NETTRIM_RELIABILITY_OUT``), and
``scripts/reliability_doc.py`` turns that JSON into docs/reliability.md.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
from pathlib import Path

from nettrim.errors import NettrimError

LEDGER: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
RECORDS: dict[str, dict] = {}  # section -> what a test measured (resume, determinism, pickle)
OUT_ENV = "NETTRIM_RELIABILITY_OUT"


class Hang(Exception):
    """A case ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` in the main thread after ``seconds`` (SIGALRM; Python code only
    notices between bytecodes, which the solvers' loops reach often)."""
    def fire(signum, frame):
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def refusal(exc: NettrimError) -> str:
    """The class of a one-line refusal: its message up to the first detail, numbers and paths
    replaced (so that the ledger groups the same refusal across cases). Fails the test when the
    message is not one non-empty line."""
    msg = str(exc)
    assert msg.strip() and "\n" not in msg and "\r" not in msg, f"not one line: {msg!r}"
    msg = re.sub(r"(/[^\s'\"():]+)+", "PATH", msg)
    parts = re.split(r"(: |, got |; )", msg)
    head = parts[0] if len(parts[0]) >= 30 or len(parts) < 3 else parts[0] + parts[1] + parts[2]
    head = re.sub(r"'[^']*'", "'…'", head)
    head = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", head)
    return "refused: " + head[:90]


def run_case(entry: str, fn, seconds: float = 60.0) -> tuple[str, object]:
    """Run ``fn()`` for the ledger of ``entry``: returns ("result", value) or the refusal class
    and None. Any other exception (a traceback) or a hang fails the calling test."""
    with time_limit(seconds):
        try:
            value = fn()
        except NettrimError as exc:
            kind = refusal(exc)
            LEDGER[entry][kind] += 1
            return kind, None
    return "result", value


def examples(n: int) -> int:
    """``n`` examples in the default profile, ten times as many in the fuzz profile."""
    from hypothesis import settings

    return n * 10 if settings.default.max_examples >= 100 else n  # fuzz and explore: x10


def count(entry: str, kind: str) -> None:
    LEDGER[entry][kind] += 1


def record(section: str, data: dict) -> None:
    RECORDS[section] = data


def write_out() -> Path | None:
    """Merge the ledger and the records into the JSON named by ``NETTRIM_RELIABILITY_OUT``."""
    path = os.environ.get(OUT_ENV)
    if not path:
        return None
    path = Path(path)
    old = json.loads(path.read_text()) if path.is_file() else {}
    hostile = old.get("hostile", {})
    for entry, counter in LEDGER.items():
        hostile[entry] = dict(sorted(counter.items()))
    data = {**old, **RECORDS, "hostile": dict(sorted(hostile.items()))}
    from nettrim.report.io import write_json_atomic

    write_json_atomic(path, data)
    return path
