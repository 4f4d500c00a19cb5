import pickle

import numpy as np
import pytest
import torch

from nettrim.data import DATASETS, load_dataset, load_raw
from nettrim.errors import NettrimError


def write_cifar_batch(path, data: np.ndarray, labels: list[int], label: bytes) -> None:
    """A batch as in the 'python version' archive: a protocol-2 pickle of a dict with bytes keys."""
    batch = {b"batch_label": label, b"labels": list(labels), b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)


@pytest.mark.parametrize("nested", [False, True])
def test_cifar_layout_and_labels(tmp_path, nested, cifar_batches):
    root = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    root.mkdir(exist_ok=True)
    written = cifar_batches(root, write_cifar_batch)
    data, labels = written["test_batch"]
    data[2, :] = 0
    data[2, 1 * 1024 + 5 * 32 + 7] = 201          # channel G, row 5, column 7
    write_cifar_batch(root / "test_batch", data, labels, b"testing batch 1 of 1")
    raw, y = load_raw("cifar10", "test", tmp_path)
    assert raw.shape == (4, 3, 32, 32) and raw.dtype == torch.uint8 and y.dtype == torch.int64
    assert raw[2, 1, 5, 7] == 201 and int(raw[2].sum()) == 201
    assert y.tolist() == labels
    train_raw, train_y = load_raw("cifar10", "train", tmp_path)
    assert train_raw.shape == (20, 3, 32, 32)
    assert train_y.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert np.array_equal(train_raw[4].reshape(-1).numpy(), written["data_batch_2"][0][0])


def test_cifar_normalization(tmp_path, cifar_batches):
    cifar_batches(tmp_path, write_cifar_batch)
    raw, _ = load_raw("cifar10", "test", tmp_path)
    x, _ = load_dataset("cifar10", "test", tmp_path)
    info = DATASETS["cifar10"]
    mean, std = torch.tensor(info.mean).view(1, 3, 1, 1), torch.tensor(info.std).view(1, 3, 1, 1)
    assert x.dtype == torch.float32
    assert torch.allclose(x, (raw.float() / 255 - mean) / std, atol=1e-5)


def test_cifar_missing(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"")
    with pytest.raises(NettrimError) as err:
        load_dataset("cifar10", "train", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and "data_batch_2" in msg and "test_batch" in msg
    with pytest.raises(NettrimError, match="--data-dir"):
        load_dataset("cifar10")


@pytest.mark.parametrize("payload", [b"not a pickle", b"", b"\x80\x02}q\x00."])
def test_cifar_corrupt_batch(tmp_path, payload, cifar_batches):
    cifar_batches(tmp_path, write_cifar_batch)
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(NettrimError) as err:
        load_raw("cifar10", "test", tmp_path)
    assert "test_batch" in str(err.value) and "\n" not in str(err.value)


def test_cifar_wrong_shape(tmp_path, cifar_batches):
    cifar_batches(tmp_path, write_cifar_batch)
    write_cifar_batch(tmp_path / "test_batch", np.zeros((2, 3000), np.uint8), [0, 1], b"x")
    with pytest.raises(NettrimError, match="malformed CIFAR-10 batch"):
        load_raw("cifar10", "test", tmp_path)
