import numpy as np
import pytest
import scipy.io
import torch

from nettrim.data import load_dataset, load_raw
from nettrim.errors import NettrimError


def _write(path, n=6, labels=None):
    """Official layout: X (32, 32, 3, n) uint8 and y (n, 1) with digit 0 stored as 10."""
    x = np.zeros((32, 32, 3, n), np.uint8)
    x[3, 9, 2, 4] = 77                                # row 3, column 9, channel B, sample 4
    y = np.array(labels if labels is not None else [10, 1, 2, 9, 10, 5], np.uint8).reshape(n, 1)
    scipy.io.savemat(path, {"X": x, "y": y})


def test_svhn_layout_and_label_mapping(tmp_path):
    _write(tmp_path / "train_32x32.mat")
    raw, y = load_raw("svhn", "train", tmp_path)
    assert raw.shape == (6, 3, 32, 32) and raw.dtype == torch.uint8
    assert raw[4, 2, 3, 9] == 77 and int(raw.sum()) == 77
    assert y.dtype == torch.int64 and y.tolist() == [0, 1, 2, 9, 0, 5]
    x, _ = load_dataset("svhn", "train", tmp_path)
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32


def test_svhn_missing(tmp_path):
    _write(tmp_path / "train_32x32.mat")
    with pytest.raises(NettrimError) as err:
        load_dataset("svhn", "test", tmp_path)
    assert "test_32x32.mat" in str(err.value) and "\n" not in str(err.value)


def test_svhn_corrupt(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB garbage" * 20)
    with pytest.raises(NettrimError) as err:
        load_raw("svhn", "train", tmp_path)
    assert "train_32x32.mat" in str(err.value) and "\n" not in str(err.value)


def test_svhn_bad_labels_and_keys(tmp_path):
    _write(tmp_path / "train_32x32.mat", labels=[0, 1, 2, 3, 4, 5])
    with pytest.raises(NettrimError, match="1..10"):
        load_raw("svhn", "train", tmp_path)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"images": np.zeros((2, 2), np.uint8)})
    with pytest.raises(NettrimError, match="malformed SVHN"):
        load_raw("svhn", "test", tmp_path)
