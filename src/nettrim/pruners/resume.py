"""Resumable runs: every finished piece of a run (a layer's solution, a ``shrink`` trial, a
``compare`` cell) is kept in a run directory, so a run killed at any moment (SIGKILL included)
and started again with the same arguments carries on after the last finished piece and ends
with the model an uninterrupted run gives, bit for bit.

Layout of a run directory (the CLI uses ``OUT/.nettrim-run``)::

    manifest.json                  the run's key: its arguments and the hashes of its inputs
    lock                           flock-ed while a process works in the directory
    <kind>-<fingerprint>/          one scope per network pass (prune) or search (shrink)
        layer-007.safetensors      a finished layer: weight, bias, its LayerReport (JSON)
        trial-002.json             a finished record (a shrink trial, a compare cell)

Every file is written to a temporary file, fsync-ed, renamed into place, and the directory is
fsync-ed: a file that is there is whole. A piece carries a sha256 of its content and is only
used when the sha256 matches (a damaged piece is solved again). Nothing is unpickled: pieces
are safetensors and JSON.

Two keys guard against mixing runs:

* the run key (``RunStore.open(key)``): the arguments and the hashes of the data, as the caller
  describes them (``nettrim prune``: the calibration and validation hashes, the model's state
  hash, the method record, the mode, the capture options, the thread count). A directory
  holding an unfinished run with another key is refused with one line, or wiped with
  ``restart=True`` (``--restart``);
* the fingerprint of each scope (:func:`digest`): ``run_scheme`` and ``shrink`` hash what they
  were given themselves (model state, inputs, the layer method's fields, mode, settings,
  capture options, batch size), so a piece is only ever reused by the
  computation that produced it.

Determinism: a resumed layer is loaded into the pruned copy with the exact bits it was saved
with, so the cascade's later layers see the same inputs as in an uninterrupted run. Results are
bit-identical on the same machine with the same torch thread count (docs/reliability.md); the
thread count is part of the CLI's run key for that reason.
"""
from __future__ import annotations

import dataclasses
import enum
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import NettrimError, require
from ..report.io import atomic_write

try:  # POSIX advisory locks; elsewhere two processes on one run directory are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

RUN_DIR = ".nettrim-run"
FORMAT = "nettrim-run/1"
PIECE_FORMAT = "nettrim-run-piece/1"
_SKIP_FIELDS = {"progress", "backend"}  # callbacks and where it runs: not what a result depends on


# --------------------------------------------------------------------------------------------
# fingerprints

def digest(*parts) -> str:
    """sha256 (hex) of ``parts``: tensors by dtype, shape and bytes; modules by their class
    tree (``repr``) and state dict; dataclasses and plain objects by their fields (callbacks
    such as ``progress`` left out); dicts, lists, sets, numbers and strings by value."""
    h = hashlib.sha256()
    _feed(h, parts)
    return h.hexdigest()


def _feed(h, obj) -> None:
    put = lambda tag, text="": h.update(f"<{tag}:{text}>".encode())
    if obj is None or isinstance(obj, (bool, int, str)):
        put(type(obj).__name__, repr(obj))
    elif isinstance(obj, float):
        put("float", repr(obj))  # repr round-trips every float exactly
    elif isinstance(obj, enum.Enum):
        put("enum", f"{type(obj).__name__}.{obj.value!r}")
    elif isinstance(obj, torch.dtype):
        put("dtype", str(obj))
    elif isinstance(obj, torch.Tensor):
        require(obj.device.type != "meta", "cannot fingerprint a tensor on the meta device")
        t = obj.detach().cpu().contiguous()
        put("tensor", f"{t.dtype}{tuple(t.shape)}")
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, np.ndarray):
        put("ndarray", f"{obj.dtype}{obj.shape}")
        h.update(np.ascontiguousarray(obj).reshape(-1).view(np.uint8))
    elif isinstance(obj, nn.Module):
        put("module", repr(obj))
        _feed(h, obj.state_dict())
    elif isinstance(obj, dict):
        put("dict", str(len(obj)))
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        put(type(obj).__name__, str(len(obj)))
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, (set, frozenset)):
        put("set", str(len(obj)))
        for v in sorted(obj, key=repr):
            _feed(h, v)
    elif isinstance(obj, Path):
        put("path", str(obj))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        put("dataclass", type(obj).__qualname__)
        for f in dataclasses.fields(obj):
            if f.name not in _SKIP_FIELDS:
                _feed(h, f.name)
                _feed(h, getattr(obj, f.name))
    elif callable(obj) and not hasattr(obj, "__dict__"):
        put("callable", getattr(obj, "__qualname__", type(obj).__qualname__))
    elif hasattr(obj, "__dict__") and not isinstance(obj, type) and not callable(obj):
        put("object", type(obj).__qualname__)
        _feed(h, {k: v for k, v in vars(obj).items() if k not in _SKIP_FIELDS})
    else:  # functions, classes: their name (a repr would carry a memory address)
        put("other", f"{type(obj).__qualname__}:{getattr(obj, '__qualname__', '')}")


def plain(obj):
    """A JSON-ready copy that keeps NaN and Inf (the store's own files; ``json`` reads them)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(plain(v) for v in obj)
    if isinstance(obj, torch.dtype):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _dumps(obj) -> str:
    return json.dumps(plain(obj), sort_keys=True, allow_nan=True)


# --------------------------------------------------------------------------------------------
# files

def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    _fsync_dir(path.parent)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _flat(d, prefix="") -> dict:
    """``{"a.b": leaf}`` for nested dicts (to name what differs between two keys)."""
    if not isinstance(d, dict):
        return {prefix or "(key)": d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


class Scope:
    """One computation's pieces in its own sub-directory (see the module docstring)."""

    def __init__(self, path: Path, fingerprint: str):
        self.path = path
        self.fingerprint = fingerprint
        path.mkdir(parents=True, exist_ok=True)

    # layers ---------------------------------------------------------------------------------
    def _layer_path(self, index: int) -> Path:
        return self.path / f"layer-{index:03d}.safetensors"

    def save_layer(self, index: int, name: str, weight: torch.Tensor, bias: torch.Tensor | None,
                   report: dict) -> None:
        """Keep a finished layer: its weights exactly as the method returned them, its report."""
        from safetensors.torch import save_file

        tensors = {"weight": weight.detach().cpu().contiguous()}
        if bias is not None:
            tensors["bias"] = bias.detach().cpu().contiguous()
        meta = {"format": PIECE_FORMAT, "name": name, "index": str(index),
                "fingerprint": self.fingerprint, "report": _dumps(report)}
        meta["sha256"] = digest(meta, tensors)
        atomic_write(self._layer_path(index), lambda tmp: save_file(tensors, tmp, metadata=meta))
        _fsync_dir(self.path)

    def layer(self, index: int, name: str):
        """``(weight, bias, report dict)`` of a finished layer, or None (not finished, or the
        file does not check out: it is then solved again)."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load

        path = self._layer_path(index)
        if not path.is_file():
            return None
        try:
            data = path.read_bytes()
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load(data)
        except (OSError, SafetensorError, ValueError, RuntimeError):
            return None
        if (meta.get("format") != PIECE_FORMAT or meta.get("name") != name
                or meta.get("fingerprint") != self.fingerprint
                or meta.get("sha256") != digest({k: v for k, v in meta.items() if k != "sha256"},
                                                tensors)
                or "weight" not in tensors):
            return None
        try:
            report = json.loads(meta["report"])
        except (KeyError, ValueError):
            return None
        return tensors["weight"], tensors.get("bias"), report

    # records --------------------------------------------------------------------------------
    def _record_path(self, name: str) -> Path:
        require(name.replace("-", "").replace("_", "").isalnum(), f"bad record name {name!r}")
        return self.path / f"{name}.json"

    def save_record(self, name: str, record: dict) -> None:
        body = {"format": PIECE_FORMAT, "fingerprint": self.fingerprint, "record": plain(record)}
        body["sha256"] = digest(_dumps(body))
        _write_text(self._record_path(name), json.dumps(body, sort_keys=True, allow_nan=True) + "\n")

    def record(self, name: str) -> dict | None:
        body = _read_json(self._record_path(name))
        if not isinstance(body, dict) or body.get("fingerprint") != self.fingerprint:
            return None
        stored = body.pop("sha256", None)
        if stored != digest(_dumps(body)) or not isinstance(body.get("record"), dict):
            return None
        return body["record"]

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class RunStore:
    """The run directory of one run (module docstring). Made with a path; nothing is touched
    until :meth:`open` (the caller knows the run's key only after reading its data).

    As a context manager (the CLI): on a normal exit the run is finished and its directory
    removed; on a :class:`NettrimError` too (the same arguments would fail the same way), and
    then an output directory it created and left empty is removed as well; on anything else
    (an interrupt, a crash, a full disk) the finished pieces stay for the next run.
    """

    def __init__(self, root, *, restart: bool = False):
        self.root = Path(root)
        self.restart = restart
        self.key: dict | None = None
        self.resumed: list[str] = []  # what was taken from the directory, for the log
        self._lock_fd: int | None = None
        self._created: list[Path] = []  # directories this store created (removed if left empty)

    @classmethod
    def in_output(cls, out_dir, *, restart: bool = False) -> "RunStore":
        """The store of a command writing to ``out_dir``: ``out_dir/.nettrim-run``."""
        return cls(Path(out_dir) / RUN_DIR, restart=restart)

    @property
    def is_open(self) -> bool:
        return self.key is not None

    def open(self, key: dict | None = None) -> "RunStore":
        """Take the directory for the run described by ``key`` (JSON-able): resume the run
        there when it has the same key, start one when there is none; refuse (one line) a
        directory holding a run with another key unless ``restart``. A store opened already
        (by the caller, with its own key) stays as it is."""
        if self.is_open:
            return self
        key = json.loads(_dumps(key or {}))
        for p in [*reversed(self.root.parents), self.root]:
            if not p.exists():
                self._created.append(p)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NettrimError(f"cannot create the run directory {self.root}: "
                               f"{exc.strerror or type(exc).__name__}") from None
        self._lock()
        manifest = self.root / "manifest.json"
        held = _read_json(manifest) if manifest.exists() else None
        if self.restart:
            self._wipe()
        elif held is not None:
            if not (isinstance(held, dict) and held.get("format") == FORMAT and "key" in held):
                self._unlock()
                raise NettrimError(f"{self.root} is not a nettrim run directory; pass --restart "
                                   "(restart=True) to replace it")
            if held["key"] != key:
                old, new = _flat(held["key"]), _flat(key)
                diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
                self._unlock()
                shown = ", ".join(diff[:4]) + (" ..." if len(diff) > 4 else "")
                raise NettrimError(
                    f"{self.root} holds an unfinished run with other arguments or data ({shown} "
                    "differ): run the same command again to resume it, or pass --restart to "
                    "discard it and start over")
        elif manifest.exists() or self._pieces():
            self._wipe()  # no readable manifest: nothing in there was written by a finished step
        if not (self.root / "manifest.json").exists():
            _write_text(manifest, json.dumps({"format": FORMAT, "key": key}, sort_keys=True,
                                             indent=1, allow_nan=True) + "\n")
        self.key = key
        return self

    def scope(self, kind: str, fingerprint: str) -> Scope:
        """The sub-directory of the computation with this fingerprint."""
        if not self.is_open:
            self.open({})
        return Scope(self.root / f"{kind}-{fingerprint[:24]}", fingerprint)

    def finish(self) -> None:
        """The run is over: remove its directory (and output directories it created, if empty)."""
        self._unlock()
        shutil.rmtree(self.root, ignore_errors=True)
        for p in reversed(self._created):
            try:
                p.rmdir()
            except OSError:
                pass
        self.key = None

    def close(self) -> None:
        """Keep the finished pieces for the next run; release the directory."""
        self._unlock()
        self.key = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.is_open:
            # refused, or never needed: only output directories this store created and left empty
            for p in reversed(self._created):
                try:
                    p.rmdir()
                except OSError:
                    pass
            return
        if exc_type is None or issubclass(exc_type, NettrimError):
            self.finish()
        else:
            self.close()

    # internals ------------------------------------------------------------------------------
    def _pieces(self) -> list[Path]:
        return [p for p in self.root.iterdir() if p.name not in ("lock",)]

    def _wipe(self) -> None:
        for p in self._pieces():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise NettrimError(f"another nettrim process is working in {self.root}: wait for "
                                   "it to end, or choose another --out") from None
            raise
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None


# --------------------------------------------------------------------------------------------
# the hooks run_scheme, shrink and compare call (each a no-op without a store)

def scheme_scope(store: RunStore | None, model, inputs, method, mode, method_name, settings,
                 batch_size, layers, capture) -> Scope | None:
    """The scope of one ``run_scheme`` pass: its fingerprint covers everything a layer's
    solution depends on (the layer method's fields among them)."""
    if store is None:
        return None
    require(isinstance(store, RunStore),
            f"store must be a nettrim.pruners.resume.RunStore, got {type(store).__name__}")
    return store.scope("prune", digest(model, inputs, method, mode, method_name, settings,
                                       batch_size, layers, capture))


def restore_layer(scope: Scope | None, spec, pruned: nn.Module, reports: list) -> bool:
    """Load the finished layer ``spec`` from ``scope`` into ``pruned`` (the exact bits it was
    saved with) and append its report; False when it is not finished."""
    from ..capture import adapter_for
    from ..status import Status
    from .report import LayerReport

    done = None if scope is None else scope.layer(spec.index, spec.name)
    if done is None:
        return False
    weight, bias, rep = done
    try:
        report = LayerReport(**{**rep, "status": Status(rep["status"])})
    except (TypeError, ValueError, KeyError):
        return False  # a report of another version: solve the layer again
    adapter_for(pruned.get_submodule(spec.name), spec.name).set(weight, bias)
    reports.append(report)
    return True


def search_scope(store: RunStore | None, *parts) -> Scope | None:
    """The scope of one ``shrink`` search (its trial records), fingerprinted by ``parts``."""
    if store is None:
        return None
    require(isinstance(store, RunStore),
            f"store must be a nettrim.pruners.resume.RunStore, got {type(store).__name__}")
    return store.scope("shrink", digest(*parts))


def load_trial(scope: Scope | None, index: int, epsilon: float, cls, *, key: str = "epsilon"):
    """Trial ``index`` of the search if an earlier run finished it at this value of its knob
    (the record's field ``key``: "epsilon", or "knob" for ``nettrim.search``), marked
    ``resumed``; else None."""
    rec = None if scope is None else scope.record(f"trial-{index:03d}")
    if rec is None or rec.get(key) != epsilon:
        return None
    try:
        return cls(**{**rec, "resumed": True})
    except TypeError:
        return None


def save_trial(scope: Scope | None, index: int, trial) -> None:
    if scope is not None:
        scope.save_record(f"trial-{index:03d}", {**plain(trial), "resumed": False})


def cached_record(scope: Scope | None, name: str, resumed: list, compute) -> dict:
    """The record ``name`` finished by an earlier run (its name appended to ``resumed``), or
    ``compute()``, kept in ``scope`` before it is returned."""
    rec = None if scope is None else scope.record(name)
    if rec is not None:
        resumed.append(name)
        return rec
    rec = compute()
    if scope is not None:
        scope.save_record(name, rec)
    return rec


def run_key(**parts) -> dict:
    """A run key (``RunStore.open``) from the parts of a run: models, tensors and pairs of
    tensors become their sha256 (:func:`digest`), method objects their record, the rest stays
    as it is; the torch version and thread count are added (:func:`thread_note`)."""
    def keyed(v):
        if isinstance(v, (nn.Module, torch.Tensor, np.ndarray)) or (
                isinstance(v, (tuple, list)) and any(isinstance(x, torch.Tensor) for x in v)):
            return {"sha256": digest(v)}
        if hasattr(v, "record") and callable(v.record):
            return v.record()
        return v
    return json.loads(_dumps({**{k: keyed(v) for k, v in parts.items()},
                              "environment": thread_note()}))


def thread_note() -> dict:
    """What the bits of a result depend on beyond the arguments: torch's version and thread
    count (BLAS reductions are split by thread)."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads()}


__all__ = ["RunStore", "Scope", "RUN_DIR", "digest", "run_key", "thread_note"]
