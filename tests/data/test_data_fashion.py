from pathlib import Path

import pytest
import torch

from nettrim.data import load_dataset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed (make fashion-mnist)")
def test_debian_fashion_mnist():
    x, y = load_dataset("fashion-mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert torch.bincount(y).tolist() == [1000] * 10
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    assert load_dataset("fashion-mnist", "train", DEBIAN_DIR)[0].shape == (60000, 1, 28, 28)
