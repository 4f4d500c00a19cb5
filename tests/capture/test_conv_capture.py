"""ConvAdapter (patch form of a Conv2d), position sampling, and BatchNorm folding."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nettrim.capture import ConvAdapter, adapter_for, capture_layer, fold_batchnorm, trace_layers
from nettrim.errors import NettrimError


CASES = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=1, padding=2, dilation=2),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1), bias=False),
    dict(kernel_size=3, padding="same", dilation=2),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
]


def _conv(**kw):
    torch.manual_seed(0)
    return nn.Conv2d(3, 5, **kw).eval()


@pytest.mark.parametrize("kw", CASES)
def test_patch_rows_reproduce_the_conv_output(kw):
    conv = _conv(**kw)
    x = torch.randn(6, 3, 11, 9)
    with torch.no_grad():
        out = conv(x)
    ad = ConvAdapter(conv, n_images=6, max_rows=40)
    X, Z = ad.matrices(x, out)
    W, b = ad.get()
    assert X.shape == (40, 3 * conv.kernel_size[0] * conv.kernel_size[1]) and Z.shape == (40, 5)
    assert W.shape == (5, X.shape[1])
    pred = X @ W.T + (0 if b is None else b)
    torch.testing.assert_close(pred, Z, atol=1e-5, rtol=1e-5)
    # every row is a real output position: Z rows are found in the conv output
    flat = out.permute(0, 2, 3, 1).reshape(-1, 5)
    d = (Z[:, None, :] - flat[None]).abs().amax(-1).min(dim=1).values
    assert float(d.max()) == 0.0


@pytest.mark.parametrize("kw", CASES[:2])
def test_all_positions_match_unfold(kw):
    conv = _conv(**kw)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        out = conv(x)
    X, Z = ConvAdapter(conv, n_images=4, max_rows=10 ** 9).matrices(x, out)
    ref = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                   stride=conv.stride).transpose(1, 2).reshape(-1, X.shape[1])
    torch.testing.assert_close(X, ref)
    torch.testing.assert_close(Z, out.permute(0, 2, 3, 1).reshape(-1, 5))


def test_sampling_is_deterministic_budgeted_and_independent_of_batching():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))
    x = torch.randn(23, 2, 8, 8)
    X1, Z1 = capture_layer(model, "0", x, batch_size=5, max_rows=101, seed=3)
    X2, Z2 = capture_layer(model, "0", x, batch_size=23, max_rows=101, seed=3)
    X3, _ = capture_layer(model, "0", x, batch_size=5, max_rows=101, seed=4)
    assert X1.shape[0] == 101
    assert torch.equal(X1, X2) and torch.equal(Z1, Z2)
    assert not torch.equal(X1, X3)
    # the same positions in a different network (cascade: original vs pruned)
    other = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))
    Xo, _ = capture_layer(other, "0", x, batch_size=7, max_rows=101, seed=3)
    assert torch.equal(Xo, X1)
    # linear layers ignore conv options
    Xl, _ = capture_layer(model, "3", x, max_rows=5)
    assert Xl.shape == (23, 4 * 64)


def test_rows_are_spread_over_images():
    conv = _conv(kernel_size=3, padding=1)
    x = torch.randn(10, 3, 6, 6)
    with torch.no_grad():
        out = conv(x)
    ad = ConvAdapter(conv, n_images=10, max_rows=37)
    X, _ = ad.matrices(x, out)
    assert X.shape[0] == 37 == ad.rows
    # count rows per image: patches identify their image
    per = F.unfold(x, 3, padding=1).transpose(1, 2)  # (10, 36, 27)
    owner = (X[:, None, :] - per.reshape(1, -1, 27)).abs().amax(-1).argmin(1) // 36
    counts = torch.bincount(owner, minlength=10)
    assert set(counts.tolist()) <= {3, 4} and int(counts.sum()) == 37


def test_default_budget_and_errors():
    conv = nn.Conv2d(3, 4, 3)
    assert ConvAdapter(conv).max_rows == 2 * 1024 ** 3 // (4 * 27)
    assert ConvAdapter(conv, max_bytes=27 * 4 * 10).max_rows == 10
    assert ConvAdapter(conv, max_rows="auto").max_rows == 5000  # the floor: 30 * 28 < 5000
    assert ConvAdapter(nn.Conv2d(64, 8, 5), max_rows="auto").max_rows == 30 * (64 * 25 + 1)
    assert ConvAdapter(conv, max_rows="auto", max_bytes=27 * 4 * 10).max_rows == 10
    with pytest.raises(NettrimError, match="max_rows"):
        ConvAdapter(conv, max_rows="many")
    with pytest.raises(NettrimError, match="groups"):
        ConvAdapter(nn.Conv2d(4, 4, 3, groups=2))
    ad = ConvAdapter(conv, max_rows=10)  # no n_images: a call is budgeted alone, total enforced
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        out = conv(x)
    assert ad.matrices(x, out)[0].shape[0] == 10
    with pytest.raises(NettrimError, match="max_rows"):
        ad.matrices(x, out)


def test_set_restores_kernel_shape():
    conv = nn.Conv2d(3, 4, (3, 2))
    ad = adapter_for(conv, "c", max_rows=5)
    assert isinstance(ad, ConvAdapter) and ad.max_rows == 5
    W, b = ad.get()
    ad.set(torch.zeros_like(W), torch.ones_like(b))
    assert conv.weight.shape == (4, 3, 3, 2) and not conv.weight.detach().any()
    assert torch.equal(conv.bias.detach(), torch.ones(4))


def _bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.Conv2d(6, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 36, 5))
    net.train()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for _ in range(3):
            net(torch.randn(16, 3, 8, 8) * 2 + 1)
        for m in net:
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


def test_fold_batchnorm_keeps_outputs():
    net = _bn_net()
    x = torch.randn(8, 3, 8, 8)
    folded, pairs = fold_batchnorm(net)
    assert pairs == [("0", "1"), ("3", "4")]
    assert isinstance(folded[1], nn.Identity) and isinstance(net[1], nn.BatchNorm2d)
    assert folded[3].bias is not None and net[3].bias is None
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)
    specs = trace_layers(folded, x[:2])
    assert [s.relu for s in specs] == [True, True, False]


class _Custom(nn.Module):
    """Not a Sequential; the second BN's conv output is also used elsewhere (no fold)."""

    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.b, self.bn_b = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x):
        h = torch.relu(self.bn_a(self.a(x)))
        z = self.b(h)
        return torch.relu(self.bn_b(z)) + z


def test_fold_batchnorm_follows_the_graph():
    torch.manual_seed(0)
    net = _Custom().eval()
    with torch.no_grad():
        net.bn_a.running_mean.uniform_(-1, 1)
        net.bn_a.running_var.uniform_(0.5, 2)
    folded, pairs = fold_batchnorm(net)
    assert pairs == [("a", "bn_a")]
    assert isinstance(folded.bn_b, nn.BatchNorm2d)
    x = torch.randn(3, 2, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


def test_image_capture_for_the_operator_form():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 16, 3))
    x = torch.randn(9, 2, 8, 8)
    inp, out = capture_layer(model, "0", x, batch_size=4, images=True)
    assert torch.equal(inp, x)
    with torch.no_grad():
        torch.testing.assert_close(out, model[0](x))
