"""A user's labelled data from files, for the command line's ``--data PATH``.

Three layouts, told apart by what ``PATH`` is:

* an ``.npz`` file with arrays ``x`` (inputs, n samples first) and ``y`` (labels, (n,));
* a directory holding ``x.npy`` and ``y.npy``, the same two arrays;
* an image folder: one sub-folder per class, read with Pillow (the ``data`` extra); the
  classes are numbered 0, 1, ... in the sorted order of their folder names, each image
  becomes float32 in [0, 1], channels first (C, H, W): one channel for a grayscale image,
  three for any other (RGB, alpha dropped); every image must have the same size.

Arrays are the model's inputs as they are, cast to float32 (no scaling, no normalization);
``y`` must hold non-negative integer class indices. Nothing is unpickled (``numpy.load`` with
``allow_pickle=False``). The sha256 of what was read (:func:`data_sha256`) lets a later run
check that it reads the same data. Every problem is one :class:`NettrimError` line.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import NettrimError, require
from .registry import one_line

LAYOUTS = ("npz", "npy", "images")
_NPY = ("x.npy", "y.npy")
_GRAY = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass(frozen=True)
class UserData:
    """Labelled samples read from ``path`` (absolute): ``x`` float32 (n, ...), ``y`` int64
    (n,); ``layout`` one of :data:`LAYOUTS`; ``classes`` the folder names of an image folder
    (label i is ``classes[i]``), else None."""

    path: str
    layout: str
    sha256: str
    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...] | None = None

    def record(self) -> dict:
        """What identifies the data: path, layout, samples and sha256."""
        return {"path": self.path, "layout": self.layout, "samples": int(len(self.y)), "sha256": self.sha256}


def layout_of(path: Path) -> str:
    """Which layout ``path`` is (one line naming the three when it is none of them)."""
    require(path.exists(), f"data not found: {path}")
    if path.is_file():
        require(path.suffix.lower() == ".npz",
                f"{path}: a data file must be an .npz with arrays x and y (or name a directory "
                "holding x.npy and y.npy, or an image folder with one sub-folder per class)")
        return "npz"
    if any((path / name).exists() for name in _NPY):
        return "npy"
    return "images"


def read_user_data(path) -> UserData:
    """The samples in ``path`` (module docstring for the layouts and the checks)."""
    path = Path(path).expanduser().resolve()
    layout = layout_of(path)
    if layout == "images":
        x, y, classes, digest = _read_image_folder(path)
    else:
        (x, y), digest, classes = _read_arrays(path, layout), None, None
        x, y = _checked(path, x, y)
    return UserData(str(path), layout, digest or data_sha256(path, layout), x, y, classes)


def data_sha256(path: Path, layout: str) -> str:
    """sha256 of the data's files: the ``.npz`` file itself; for a directory, each file's
    name relative to ``path`` and its bytes, in sorted order (``x.npy``, ``y.npy``; or every
    image of every class folder)."""
    if layout == "npz":
        return _file_digest(path, hashlib.sha256()).hexdigest()
    files = [path / n for n in _NPY] if layout == "npy" else [f for _, fs in _class_files(path) for f in fs]
    return _files_digest(path, files)


def _files_digest(root: Path, files) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        _file_digest(f, h)
    return h.hexdigest()


def _file_digest(path: Path, h):
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h


# ---- arrays ---------------------------------------------------------------------------------


def _read_arrays(path: Path, layout: str) -> tuple[np.ndarray, np.ndarray]:
    if layout == "npy":
        missing = [n for n in _NPY if not (path / n).is_file()]
        require(not missing, f"{path}: {' and '.join(missing)} missing; a data directory holds x.npy and y.npy")
        return _load(path / "x.npy", path / "x.npy"), _load(path / "y.npy", path / "y.npy")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # not a zip, a pickle, truncated: numpy raises many types
        raise NettrimError(f"cannot read {path} as an .npz file: {_why(exc)}") from None
    require(isinstance(archive, np.lib.npyio.NpzFile),
            f"{path} is a single .npy array, not an .npz archive; save both arrays with np.savez(path, x=..., y=...)")
    with archive:
        missing = [k for k in ("x", "y") if k not in archive.files]
        require(not missing, f"{path} has no array {' or '.join(map(repr, missing))} (it holds "
                             f"{', '.join(map(repr, archive.files)) or 'nothing'}); save it with np.savez(path, x=..., y=...)")
        return _load(path, archive, "x"), _load(path, archive, "y")


def _load(path: Path, source, key: str | None = None) -> np.ndarray:
    """One array, read without unpickling."""
    try:
        return np.load(source, allow_pickle=False) if key is None else source[key]
    except Exception as exc:
        where = f"{path}" + (f" (array {key!r})" if key else "")
        raise NettrimError(f"cannot read {where}: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    if "allow_pickle" in str(exc):
        return ("it holds Python objects (a pickle), which nettrim never loads; save plain "
                "numeric arrays (np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64)))")
    return one_line(exc)


def _checked(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 inputs and int64 labels, after the checks every layout shares."""
    require(x.dtype.kind in "iuf", f"{path}: x must be numeric, got dtype {x.dtype}")
    require(x.ndim >= 2, f"{path}: x must be (n, ...) with at least one axis after the samples, "
                         f"got shape {tuple(x.shape)}")
    require(y.ndim == 1, f"{path}: y must be one label per sample, shape (n,), got {tuple(y.shape)}")
    require(len(x) == len(y), f"{path}: x has {len(x)} samples but y has {len(y)} labels")
    require(len(y) >= 2, f"{path} holds {len(y)} sample(s); at least 2 are needed")
    require(y.dtype.kind in "iu", f"{path}: y must hold integer class indices, got {y.dtype} values; "
                                  "save y.astype(np.int64)")
    require(int(y.min()) >= 0, f"{path}: y has negative labels ({int(y.min())}); class indices start at 0")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    require(bool(torch.isfinite(xt).all()), f"{path}: x contains NaN or Inf")
    return xt, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


# ---- image folders --------------------------------------------------------------------------


def _class_files(root: Path) -> list[tuple[str, list[Path]]]:
    """(class name, its files sorted) per sub-folder of ``root``, classes sorted by name;
    hidden entries and files directly in ``root`` are left out."""
    visible = lambda p: not p.name.startswith(".")
    classes = sorted((d for d in root.iterdir() if d.is_dir() and visible(d)), key=lambda d: d.name)
    return [(d.name, sorted((f for f in d.rglob("*") if f.is_file() and visible(f)
                             and all(visible(q) for q in f.relative_to(d).parents)), key=lambda f: f.as_posix()))
            for d in classes]


def _read_image_folder(root: Path):
    try:
        from PIL import Image
    except ImportError:
        raise NettrimError(f"reading the image folder {root} needs Pillow: "
                           "pip install 'nettrim[data]' (or pip install pillow)") from None
    classes = _class_files(root)
    require(len(classes) >= 2, f"{root}: an image folder needs one sub-folder per class, at least two; "
                               f"found {len(classes)}{' (' + classes[0][0] + ')' if classes else ''}")
    empty = next((name for name, files in classes if not files), None)
    require(empty is None, f"{root}: class folder {empty!r} holds no images")
    images, labels, first = [], [], None
    for label, (_, files) in enumerate(classes):
        for f in files:
            a = _image(Image, f)
            if first is None:
                first = (f, a.shape)
            require(a.shape == first[1], f"{root}: images differ in size: {f.relative_to(root)} is "
                                         f"{_chw(a.shape)}, {first[0].relative_to(root)} is {_chw(first[1])}; "
                                         "resize them to one size")
            images.append(a)
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).div_(255.0)
    digest = _files_digest(root, [f for _, fs in classes for f in fs])
    return x, torch.tensor(labels, dtype=torch.int64), tuple(n for n, _ in classes), digest


def _image(Image, path: Path) -> np.ndarray:
    """One image as float32 (C, H, W) in 0..255."""
    try:
        with Image.open(path) as im:
            im = im.convert("L" if im.mode in _GRAY else "RGB")
            a = np.asarray(im, dtype=np.float32)
    except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, ValueError, ...
        raise NettrimError(f"cannot read image {path}: {one_line(exc)}") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy()


def _chw(shape) -> str:
    return "x".join(str(s) for s in shape)
