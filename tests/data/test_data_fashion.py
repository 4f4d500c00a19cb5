import sys
from pathlib import Path

import torch

from nettrim.data import load_dataset, readers

ENV_DIR = Path(sys.prefix, "share", "datasets", "fashion-mnist")


def test_make_installs_fashion_mnist_into_the_environment(fashion_mnist):
    """`make test` and `make demo` install the data into the environment themselves: on a new
    machine (a fresh .venv, nothing under /usr/share/datasets) this is where it must be, so a
    missing install step fails here, in CI, rather than on a user's machine."""
    assert readers.FASHION_DIRS[0] == ENV_DIR
    names = sorted(p.name for p in ENV_DIR.iterdir())
    assert names == sorted(["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])


def test_fashion_mnist_loads(fashion_mnist):
    x, y = load_dataset("fashion-mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert torch.bincount(y).tolist() == [1000] * 10
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    assert load_dataset("fashion-mnist", "train", readers.fashion_mnist_dir())[0].shape == (60000, 1, 28, 28)
