"""``nettrim.load`` reads files without unpickling anything."""
import pickle

import pytest
import torch

import nettrim.export as ex
from nettrim.errors import NettrimError


def forbidden(*args, **kwargs):
    raise AssertionError("nettrim.load unpickled something")


@pytest.fixture
def no_pickle(monkeypatch):
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


@pytest.mark.parametrize("fmt", ["sparse", "dense"])
def test_load_never_unpickles(sparse_model, fmt, tmp_path, request):
    model = sparse_model("lenet5", 0.9)
    path = ex.export(model, tmp_path / "m", fmt).path
    request.getfixturevalue("no_pickle")
    loaded = ex.load(path)
    assert torch.equal(loaded[0].weight, model[0].weight)


def test_a_pickle_file_is_refused_unread(sparse_model, tmp_path, request):
    path = tmp_path / "state.pt"
    torch.save(sparse_model("mlp-60-60", 0.5).state_dict(), path)
    request.getfixturevalue("no_pickle")
    with pytest.raises(NettrimError, match="torch.save file"):
        ex.load(path)
