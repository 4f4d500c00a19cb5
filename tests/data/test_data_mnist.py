import sys

import pytest
import torch

from nettrim.data import DATASETS, DatasetInfo, clear_cache, load_dataset, load_raw
from nettrim.errors import NettrimError


@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_bundled_mnist(split, n):
    x, y = load_dataset("mnist", split)
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert int(y.min()) == 0 and int(y.max()) == 9 and len(torch.unique(y)) == 10
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02


def test_raw_mnist_and_fresh_tensors():
    raw, y = load_raw("mnist", "test")
    assert raw.dtype == torch.uint8 and raw.shape == (10000, 1, 28, 28)
    assert y[:5].tolist() == [7, 2, 1, 0, 4]
    raw[:] = 0                                            # must not poison the cache
    assert int(load_raw("mnist", "test")[0].max()) == 255


def test_pureml_never_imported():
    if "pureml" in sys.modules:
        pytest.skip("pureml was imported by something else in this session")
    clear_cache()
    load_raw("mnist", "test")
    assert "pureml" not in sys.modules


def test_registry():
    assert set(DATASETS) == {"mnist", "fashion-mnist", "cifar10", "svhn"}
    info = DATASETS["cifar10"]
    assert isinstance(info, DatasetInfo) and info.shape == (3, 32, 32) and info.n_classes == 10
    assert len(info.mean) == len(info.std) == 3
    with pytest.raises(AttributeError):
        info.n_classes = 3


@pytest.mark.parametrize("args,allowed", [(("imagenet",), "mnist, fashion-mnist, cifar10, svhn"),
                                          (("mnist", "val"), "train, test")])
def test_unknown_name_or_split(args, allowed):
    with pytest.raises(NettrimError) as err:
        load_dataset(*args)
    assert allowed in str(err.value)
