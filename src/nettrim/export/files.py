"""The one way nettrim.export writes: checked first, then a temporary file beside the target,
then ``os.replace``.

:func:`check` decides, before any work is done, whether ``path`` can be written: it must be
a string or path-like without NUL bytes, each name at most the file system's ``NAME_MAX``
bytes and the whole at most ``PATH_MAX``, in a directory that exists and accepts a new file
(tried by creating and removing one), and not an existing file unless ``force``. Anything
else is one :class:`NettrimError` naming the path.

:func:`replace` then calls ``write(tmp)`` on a temporary file (or directory) in the same
directory, flushes it to disk and moves it into place with ``os.replace``; on any error the
temporary is removed and a file already at ``path`` is left as it was. A reader never sees a
half-written file, and a killed run leaves only a ``.NAME.*.tmp`` beside the target.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import NettrimError, require

_TMP_STEM = 40  # characters of the target's name kept in a temporary's name


def _as_path(path) -> Path:
    require(isinstance(path, (str, os.PathLike)),
            f"path must be a file path (a str or os.PathLike), got {type(path).__name__}")
    text = os.fspath(path)
    require(isinstance(text, str), f"path must be a text path, got {type(text).__name__}")
    require(text != "", "path is empty; name the file to write")
    require("\0" not in text, f"cannot write {text!r}: the path contains a NUL byte")
    return Path(text)


def _limits(directory: Path) -> tuple[int, int]:
    try:
        return os.pathconf(directory, "PC_NAME_MAX"), os.pathconf(directory, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def _check_names(path: Path) -> None:
    existing = next((p for p in path.parents if os.path.isdir(p)), Path("."))
    name_max, path_max = _limits(existing)
    for part in path.parts:
        size = len(os.fsencode(part))
        require(size <= name_max, f"cannot write {path}: the name {part[:24]!r}... is {size} bytes, "
                                  f"more than the {name_max} this file system allows")
    size = len(os.fsencode(str(path.absolute())))
    require(size <= path_max, f"cannot write {path}: the path is {size} bytes, more than the "
                              f"{path_max} this system allows")


def _check_directory(path: Path) -> Path:
    """The existing directory ``path`` goes into; one line when it is missing or a file."""
    parent = path.parent
    if os.path.isdir(parent):
        return parent
    ancestor = next((p for p in parent.parents if os.path.exists(p)), None)
    if os.path.exists(parent) or (ancestor is not None and not os.path.isdir(ancestor)):
        blocker = parent if os.path.exists(parent) else ancestor
        raise NettrimError(f"cannot write {path}: {blocker} is a file, not a directory")
    raise NettrimError(f"cannot write {path}: the directory {parent} does not exist; create it first")


def _try_create(path: Path, directory: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=directory)
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        raise NettrimError(f"cannot write {path}: {directory} does not accept a new file "
                           f"({reason})") from None
    os.close(fd)
    os.unlink(probe)


def check(path, *, force: bool = False, directory: bool = False) -> Path:
    """``path`` as a :class:`~pathlib.Path` once it is known to be writable (see the module
    docstring); ``directory``: the target is a directory (compressed-tensors), which may
    already exist only when empty, or with ``force`` when it holds a saved model."""
    path = _as_path(path)
    _check_names(path)
    parent = _check_directory(path)
    if directory:
        require(not os.path.exists(path) or os.path.isdir(path),
                f"cannot write {path}: it is a file, and this format writes a directory")
        if path.is_dir() and any(path.iterdir()):
            require(force, f"{path} already exists and is not empty; choose another path, or pass "
                           "--force (force=True) to replace it")
            require((path / "config.json").is_file() and not any(p.is_dir() for p in path.iterdir()),
                    f"cannot replace {path}: it does not look like a saved model (a config.json and "
                    "no sub-directories); choose another path")
    else:
        require(not os.path.isdir(path), f"cannot write to {path}: it is a directory")
        require(force or not os.path.exists(path),
                f"{path} already exists; choose another path, or pass --force (force=True) to replace it")
    _try_create(path, parent)
    return path


def _tmp_prefix(path: Path) -> str:
    return f".{path.name[:_TMP_STEM]}."


def _fsync_tree(root: str) -> None:
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb+") as f:
                os.fsync(f.fileno())


def replace(path: Path, write: Callable[[str], object], *, directory: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file (``directory``: a temporary directory) beside
    ``path``, flush it, then move it to ``path``; returns ``path``. Call :func:`check` first."""
    path = Path(path)
    if directory:
        tmp = tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
    try:
        write(tmp)
        if directory:
            _fsync_tree(tmp)
            _move_directory(tmp, path)
        else:
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _move_directory(tmp: str, path: Path) -> None:
    """``tmp`` to ``path``; an existing ``path`` is moved aside first and removed after."""
    if path.is_dir() and any(path.iterdir()):
        aside = tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".old", dir=path.parent)
        os.replace(path, os.path.join(aside, "old"))
        os.replace(tmp, path)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        if path.is_dir():
            path.rmdir()
        os.replace(tmp, path)


def size(path: Path) -> int:
    """Bytes of the file at ``path``, or of every file under the directory ``path``."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
