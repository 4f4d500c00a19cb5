import pytest
import torch

from nettrim.data import make_loader, subset
from nettrim.errors import NettrimError


def _data(n=1000, k=10):
    labels = torch.arange(n) % k
    labels[: n // 2] = 0                                   # imbalanced: half are class 0
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), labels


def test_subset_reproducible_and_stratified():
    x, y = _data()
    xs, ys = subset(x, y, 50, seed=3)
    xs2, ys2 = subset(x, y, 50, seed=3)
    assert torch.equal(xs, xs2) and torch.equal(ys, ys2)
    assert torch.bincount(ys, minlength=10).tolist() == [5] * 10
    assert torch.equal(y[xs.view(-1).long()], ys)          # images and labels stay paired
    assert len(torch.unique(xs)) == 50
    assert not torch.equal(subset(x, y, 50, seed=4)[0], xs)


def test_subset_class_runs_out():
    y = torch.tensor([0] * 20 + [1] * 2)
    _, ys = subset(torch.zeros(22, 1), y, 10, seed=0)
    assert torch.bincount(ys).tolist() == [8, 2]


def test_subset_random_and_bounds():
    x, y = _data()
    _, ys = subset(x, y, 100, seed=0, stratified=False)
    assert len(ys) == 100
    assert subset(x, y, None)[0] is x
    for bad in (0, 1001):
        with pytest.raises(NettrimError, match="1..1000"):
            subset(x, y, bad)


def test_make_loader():
    x, y = _data(10)
    batches = list(make_loader(x, y, batch_size=4, shuffle=False))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    order = lambda s: torch.cat([b[0].view(-1) for b in make_loader(x, y, 4, True, s)])
    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))
    assert sorted(order(1).tolist()) == x.view(-1).tolist()
    with pytest.raises(NettrimError):
        make_loader(x, y, 0)
