"""A sparse file of a 95 %-zero 784-300-100-10 MLP is at least 15x smaller than dense."""
import io

import torch

import nettrim.export as ex


def test_sparse_is_15x_smaller_than_the_dense_state_dict(mlp95, tmp_path):
    buffer = io.BytesIO()
    torch.save(mlp95.state_dict(), buffer)
    dense = ex.export(mlp95, tmp_path / "m.dense", "dense").bytes
    sparse = ex.export(mlp95, tmp_path / "m.sparse", "sparse").bytes
    assert dense <= buffer.getbuffer().nbytes
    assert buffer.getbuffer().nbytes / sparse >= 15
    assert dense / sparse >= 15


def test_dense_tensors_are_stored_plainly(sparse_model, tmp_path):
    """Biases with no zeros cost no more than in the dense file (plus the layout record)."""
    model = sparse_model("lenet-300-100", 0.0)
    dense = ex.export(model, tmp_path / "m.dense", "dense").bytes
    sparse = ex.export(model, tmp_path / "m.sparse", "sparse").bytes
    assert sparse < dense + 1024
