import gzip
import struct

import numpy as np
import pytest

from nettrim.data import load_dataset, load_raw, read_idx
from nettrim.errors import NettrimError


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: 0x00 0x00 0x08 nd, big-endian int32 dims, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return header + dims + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path, array: np.ndarray, gz: bool = False):
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, images, gz):
    labels = np.arange(7, dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "img", images, gz)), images)
    assert np.array_equal(read_idx(write_idx(tmp_path / "lbl", labels, gz)), labels)


def test_header_is_the_official_layout(images):
    data = idx_bytes(images)
    assert data[:16].hex() == "00000803" + "00000007" + "0000001c" + "0000001c"


@pytest.mark.parametrize("mangle", [
    lambda b: b"\x00\x00\x0d\x03" + b[4:],            # float32 type code
    lambda b: b"\x01" + b[1:],                          # bad leading zero
    lambda b: b[:-1],                                   # truncated payload
    lambda b: b + b"\x00",                              # trailing bytes
    lambda b: b[:10],                                   # truncated header
    lambda b: b"",                                      # empty file
    lambda b: gzip.compress(b)[:-8],                    # broken gzip stream
])
def test_malformed_idx_raises_one_line(tmp_path, images, mangle):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mangle(idx_bytes(images)))
    with pytest.raises(NettrimError) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(NettrimError, match="cannot read IDX file"):
        read_idx(tmp_path / "nope")


def _write_split(root, prefix, n, gz, rng):
    imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", imgs, gz)
    write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", labels, gz)
    return imgs, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_dir(tmp_path, gz):
    rng = np.random.default_rng(1)
    imgs, labels = _write_split(tmp_path, "t10k", 5, gz, rng)
    raw, y = load_raw("mnist", "test", tmp_path)
    assert raw.shape == (5, 1, 28, 28) and raw.dtype.is_floating_point is False
    assert np.array_equal(raw[:, 0].numpy(), imgs) and np.array_equal(y.numpy(), labels)
    x, _ = load_dataset("fashion-mnist", "test", tmp_path)
    assert x.dtype.is_floating_point and x.shape == (5, 1, 28, 28)


def test_dotted_names_accepted(tmp_path):
    imgs = np.zeros((2, 28, 28), np.uint8)
    write_idx(tmp_path / "train-images.idx3-ubyte", imgs)
    write_idx(tmp_path / "train-labels.idx1-ubyte", np.array([3, 4], np.uint8))
    assert load_raw("mnist", "train", tmp_path)[1].tolist() == [3, 4]


def test_mismatched_counts(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(NettrimError, match="do not match"):
        load_raw("mnist", "train", tmp_path)


def test_labels_out_of_range(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((1, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([10], np.uint8))
    with pytest.raises(NettrimError, match="labels outside 0..9"):
        load_raw("mnist", "train", tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_missing_idx_files(tmp_path, name):
    for where in (tmp_path, tmp_path / "absent"):
        with pytest.raises(NettrimError) as err:
            load_dataset(name, "train", where)
        msg = str(err.value)
        assert "\n" not in msg and str(where) in msg and "--data-dir" in msg
