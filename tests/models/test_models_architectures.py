import pytest
import torch
from torch import nn

from nettrim.errors import NettrimError
from nettrim.models import ARCHITECTURES, build_model, count_nonzero

SHAPES = {"cifar-cnn": (3, 32, 32)}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_builds_and_runs(name):
    torch.manual_seed(0)
    model = build_model(name)
    assert isinstance(model, nn.Sequential)
    # standard torch modules, or the small blocks of nettrim's graph models (ResNet, ViT)
    assert all(type(m).__module__.startswith("torch.nn") or type(m).__module__ == "nettrim.models.architectures"
               for m in model.modules())
    out = model.eval()(torch.randn(3, *SHAPES.get(name, (1, 28, 28))))
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_mlp_layer_sizes():
    linears = [m for m in build_model("lenet-300-100") if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 300), (300, 100), (100, 10)]
    deep = [m for m in build_model("mlp-deep") if isinstance(m, nn.Linear)]
    assert len(deep) - 1 >= 5
    lenet5 = [m for m in build_model("lenet5") if isinstance(m, nn.Linear)]
    assert lenet5[0].in_features == 400
    demo = [m for m in build_model("lenet-demo") if isinstance(m, nn.Linear)]
    assert demo[0].in_features == 3136


def test_dropout_only_when_requested():
    assert not any(isinstance(m, nn.Dropout) for m in build_model("lenet-300-100"))
    drops = [m for m in build_model("lenet-300-100", dropout=0.3) if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(d.p == 0.3 for d in drops)
    demo = [m for m in build_model("lenet-demo", dropout=0.2) if isinstance(m, nn.Dropout)]
    assert [d.p for d in demo] == [0.2]


def test_in_features_and_shapes_override():
    model = build_model("mlp-100-100", in_features=50, n_classes=3)
    assert model(torch.randn(4, 50)).shape == (4, 3)
    model = build_model("mlp-60-60", in_shape=(3, 8, 8))
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    model = build_model("cifar-cnn", in_shape=(1, 16, 16), n_classes=4, width=8)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    model = build_model("lenet5", in_shape=[3, 32, 32])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_count_nonzero_counts_weights_and_biases():
    model = build_model("mlp-60-60", in_features=20)
    counts = count_nonzero(model)
    assert list(counts["layers"]) == ["1", "3", "5"]
    total = 20 * 60 + 60 + 60 * 60 + 60 + 60 * 10 + 10
    assert counts["total"] == counts["nonzero"] == total and counts["density"] == 1.0
    with torch.no_grad():
        model[1].weight[:, :10] = 0
        model[5].bias[:4] = 0
    counts = count_nonzero(model)
    assert counts["layers"]["1"] == {"weight": 600, "bias": 60, "nonzero": 660, "total": 1260}
    assert counts["layers"]["5"]["bias"] == 6
    assert counts["nonzero"] == total - 604


@pytest.mark.parametrize("name, kw", [("no-such-net", {}), ("mlp-60-60", {"bogus": 1}),
                                      ("mlp-60-60", {"dropout": 1.5}),
                                      ("lenet5", {"in_shape": (1, 4, 4)}),
                                      ("lenet5", {"in_shape": (28, 28)})])
def test_bad_requests_raise_nettrim_error(name, kw):
    with pytest.raises(NettrimError):
        build_model(name, **kw)
