"""The reference graph models: ResNet-20 (residual, BatchNorm) and vit-tiny (attention, GELU)."""
import pytest
import torch
from torch import nn

from nettrim.capture import fold_batchnorm, trace_layers
from nettrim.errors import NettrimError
from nettrim.models import build_model, load_checkpoint, save_checkpoint, train


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_resnet20_layout(shape):
    model = build_model("resnet20", in_shape=shape).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 + 2  # 19 3x3 convs + 2 projection shortcuts; the fc makes 20 + 2
    assert [c.out_channels for c in convs if c.kernel_size == (1, 1)] == [32, 64]
    assert sum(p.numel() for p in model.parameters()) < 280_000
    x = torch.randn(2, *shape)
    folded, pairs = fold_batchnorm(model, x)
    assert len(pairs) == 21
    specs = trace_layers(folded, x)
    assert len(specs) == 22 and specs[-1].kind == "linear" and specs[-1].to_output
    assert [s.name for s in specs if s.relu] == ["0"] + [f"{b}.conv1" for b in range(3, 12)]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_vit_tiny_layout():
    model = build_model("vit-tiny").eval()
    assert model[0].proj.kernel_size == (7, 7) and model[0].position.shape == (1, 16, 64)
    specs = trace_layers(model, torch.randn(2, 1, 28, 28))
    assert len(specs) == 1 + 4 * 6 + 1 and not any(s.relu for s in specs)
    assert [s.name for s in specs[1:7]] == ["1.attn.q", "1.attn.k", "1.attn.v", "1.attn.out", "1.fc1", "1.fc2"]
    assert specs[4].users == ("add",) and specs[5].users == ("GELU '1.act'",)
    cifar = build_model("vit-tiny", in_shape=(3, 32, 32), n_classes=4, dim=32, heads=2, depth=2)
    assert cifar[0].proj.kernel_size == (8, 8) and cifar(torch.randn(3, 3, 32, 32)).shape == (3, 4)


@pytest.mark.parametrize("name, kw, match", [
    ("vit-tiny", {"patch": 5}, "patch"), ("vit-tiny", {"dim": 30, "heads": 4}, "multiple of heads"),
    ("vit-tiny", {"dropout": 1.0}, "dropout"), ("resnet20", {"width": 0}, "positive"),
    ("resnet20", {"in_shape": (28, 28)}, "in_shape"), ("resnet20", {"depth": 3}, "bad arguments"),
])
def test_bad_arguments(name, kw, match):
    with pytest.raises(NettrimError, match=match):
        build_model(name, **kw)


@pytest.mark.parametrize("name, kw", [("resnet20", {"width": 4, "blocks": 1}), ("vit-tiny", {"dim": 16, "depth": 1})])
def test_train_step_and_checkpoint_round_trip(tmp_path, name, kw):
    torch.manual_seed(0)
    model = build_model(name, **kw)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    log = train(model, x, y, epochs=2, batch_size=32, progress=False)
    assert len(log.loss) == 2 and all(torch.isfinite(torch.tensor(log.loss)))
    path = save_checkpoint(tmp_path / "m.pt", model, name, kw)
    loaded, info = load_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
    assert info["arch"] == name
