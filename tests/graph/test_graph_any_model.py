"""The model graph (``nettrim.graph``) of any model: every Linear/Conv2d that runs is listed,
ReLU layers are exactly those whose output only a ReLU reads, unknown modules pass through,
bad models get one line; BatchNorm folding; a layer's rows streamed with leading dims flattened."""
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nettrim.errors import NettrimError
from nettrim.graph.batchnorm import fold_batchnorm as fold_pairs
from nettrim.graph.model import ModelGraph
from nettrim.graph.trace import analyse, fx_ops, is_prunable, record_ops
from nettrim.stream import Batches, RowPlan, layer_stats


def trace_layers(model, x):
    return ModelGraph.build(model, x).layers


def is_chain(model, x):
    return ModelGraph.build(model, x).is_chain


def fold_batchnorm(model, example):
    """(the folded copy, the pairs the graph folds)."""
    pairs = ModelGraph.build(model, example).bn_pairs
    return fold_pairs(model, pairs), pairs


def rows(model, name, x):
    """Layer ``name``'s held rows (A with the ones column, Y its pre-activation targets)."""
    stats = layer_stats(model, name, Batches(x, 1024, model), relu=False, hold=True, plan=RowPlan())
    return stats.A, stats.Y


def flags(model, x):
    return [(s.name, s.relu) for s in trace_layers(model, x)]


class Act(nn.Module):
    """a -> act -> b: ``act`` is any callable on a's output."""

    def __init__(self, act, n=6):
        super().__init__()
        self.a, self.b, self.act = nn.Linear(n, n), nn.Linear(n, 3), act

    def forward(self, x):
        return self.b(self.act(self.a(x)))


def _inplace_method(h):
    h.relu_()
    return h


@pytest.mark.parametrize("act, relu", [
    (nn.ReLU(), True), (nn.ReLU(inplace=True), True), (F.relu, True), (torch.relu, True),
    (torch.relu_, True), (lambda h: F.relu(h, inplace=True), True), (lambda h: h.relu(), True),
    (_inplace_method, True), (lambda h: F.relu(F.dropout(h, 0.5, False)), True),
    (lambda h: torch.relu(h.view(h.shape[0], -1)), True), (nn.Sequential(nn.Dropout(), nn.ReLU()), True),
    (nn.GELU(), False), (F.gelu, False), (nn.SiLU(), False), (torch.tanh, False), (nn.LayerNorm(6), False),
    (nn.ReLU6(), False), (lambda h: F.relu(h) + h, False), (lambda h: F.relu(h) * 1 + 0 * h.sum(), False),
    (lambda h: F.relu(F.relu(h)), True), (lambda h: F.relu(h[:, :6]), False), (nn.Identity(), False),
])
def test_relu_is_found_through_modules_functions_and_inplace_ops(act, relu):
    model = Act(act)
    assert flags(model, torch.randn(2, 6)) == [("a", relu), ("b", False)]


def test_a_read_before_an_inplace_relu_is_a_use_of_the_pre_activation():
    class UseBefore(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x):
            h = self.a(x)
            z = h * 2
            F.relu(h, inplace=True)
            return self.b(h) + z[:, :3]

    assert flags(UseBefore(), torch.randn(2, 6)) == [("a", False), ("b", False)]


class Block(nn.Module):
    """A residual block with the ReLU after the add (BasicBlock layout, no BN)."""

    def __init__(self, n=6, functional=False):
        super().__init__()
        self.fc1, self.fc2, self.relu, self.functional = nn.Linear(n, n), nn.Linear(n, n), nn.ReLU(), functional

    def forward(self, x):
        h = self.relu(self.fc1(x))
        out = self.fc2(h) + x
        return F.relu(out) if self.functional else self.relu(out)


@pytest.mark.parametrize("functional", [False, True])
def test_layer_before_a_residual_add_is_linear(functional):
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), Block(functional=functional), nn.Linear(6, 2))
    specs = trace_layers(model, torch.randn(2, 4))
    assert [(s.name, s.relu) for s in specs] == [("0", True), ("2.fc1", True), ("2.fc2", False), ("3", False)]
    # the ReLU output of layer 0 feeds fc1 AND the skip: no dead-unit cleanup across it
    assert [s.feeds_next for s in specs] == [False, True, False, False]
    assert specs[2].users == ("add",) and not is_chain(model, torch.randn(2, 4))


def test_feeds_next_only_straight_into_the_next_linear():
    x = torch.randn(2, 8)
    chain = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Dropout(), nn.Identity(), nn.Linear(6, 4),
                          nn.ReLU(), nn.Linear(4, 2))
    specs = trace_layers(chain, x)
    assert [s.feeds_next for s in specs] == [True, True, False] and specs[-1].to_output and is_chain(chain, x)

    class Tap(nn.Module):  # the ReLU output also leaves the model
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.b(h), h

    specs = trace_layers(Tap(), x)
    assert [(s.relu, s.feeds_next) for s in specs] == [(True, False), (False, False)]
    convs = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    assert [s.feeds_next for s in trace_layers(convs, torch.randn(2, 1, 4, 4))] == [False, False]


class Controlled(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it; the recorded pass still works."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if x.sum() > -1e9:
            h = F.gelu(self.b(h))
        return self.c(h)


def test_untraceable_model_falls_back_to_the_recorded_pass():
    with pytest.raises(Exception):
        fx_ops(Controlled())
    specs = trace_layers(Controlled(), torch.randn(2, 6))
    assert [(s.name, s.relu, s.feeds_next) for s in specs] == [("a", True, True), ("b", False, False),
                                                               ("c", False, False)]


class Attention(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.emb = nn.Embedding(10, d)
        self.norm = nn.LayerNorm(d)
        self.mha = nn.MultiheadAttention(d, 2, batch_first=True)
        self.head = nn.Linear(d, 3)

    def forward(self, tokens):
        x = self.emb(tokens)
        y, _ = self.mha(x, x, x, need_weights=False)
        return self.head(self.norm(x + y)).mean(1)


def test_multihead_attention_passes_through_and_its_out_proj_is_not_listed():
    model = Attention().eval()
    specs = trace_layers(model, torch.randint(0, 10, (2, 5)))
    assert [(s.name, s.relu) for s in specs] == [("head", False)]
    assert isinstance(model.mha.out_proj, nn.Linear)  # present, but applied functionally


def _fx_and_recorded(model, x):
    model.eval()
    ops, storage, calls = record_ops(model, x)
    names = [n for n in calls if is_prunable(model.get_submodule(n))]
    run, graph = analyse(ops, storage, names), analyse(*fx_ops(model), names)
    return [(run[n].relu, run[n].feeds, run[n].to_output) for n in names], \
        [(graph[n].relu, graph[n].feeds, graph[n].to_output) for n in names]


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)), (1, 4, 4)),
    (lambda: nn.Sequential(nn.Linear(4, 6), nn.ReLU(), Block(), nn.Linear(6, 2)), (4,)),
    (lambda: Act(torch.relu_), (6,)), (lambda: Act(nn.GELU()), (6,)), (lambda: Act(_inplace_method), (6,)),
    (lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(),
                           nn.Linear(3, 2)), (1, 4, 4)),
])
def test_fx_and_the_recorded_pass_agree(make, shape):
    torch.manual_seed(0)
    run, graph = _fx_and_recorded(make(), torch.randn(2, *shape))
    assert run == graph


def test_tokens_linear_is_captured_with_leading_dims_flattened():
    model = nn.Sequential(nn.Linear(8, 5), nn.GELU(), nn.Linear(5, 3))
    x = torch.randn(4, 7, 8)
    X, Z = rows(model, "2", x)
    assert X.shape == (28, 6) and Z.shape == (28, 3) and bool((X[:, -1] == 1).all())
    with torch.no_grad():
        torch.testing.assert_close(Z, model(x).reshape(-1, 3))


def test_transformer_encoder_layer_fast_path_does_not_hide_its_linears():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.1).eval()
    x = torch.randn(3, 5, 8)
    specs = trace_layers(layer, x)
    assert [(s.name, s.relu, s.feeds_next) for s in specs] == [("linear1", True, True),
                                                               ("linear2", False, False)]
    X, Z = rows(layer, "linear1", x)
    assert X.shape == (15, 9) and Z.shape == (15, 16)


# --- bad models: one line naming the module ---------------------------------------------------

class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.fc(x)))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.dec = nn.Linear(4, 4), nn.Linear(4, 4)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.dec(torch.relu(self.enc(x)))


class ReadsWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return F.linear(torch.relu(self.fc(x)), self.fc.weight.t())


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > -1e9:  # not traceable either
            raise RuntimeError("custom failure\nwith a second line")
        return self.fc(x)


@pytest.mark.parametrize("model, x, match", [
    (Twice(), torch.randn(2, 4), r"^layer 'fc' \(Linear\) runs 2 times per forward pass"),
    (Tied(), torch.randn(2, 4), r"^layer 'enc' shares its parameters with module 'dec'"),
    (ReadsWeight(), torch.randn(2, 4), r"^layer 'fc' has its weight read outside the layer"),
    (nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), torch.randn(2, 3, 4, 4),
     r"^model Sequential does not run on inputs of shape \(2, 3, 4, 4\): layer '1' \(Linear\) raised"),
    (nn.Sequential(nn.Conv2d(3, 4, 3)), torch.randn(2, 1, 5, 5),
     r"^model Sequential does not run on inputs of shape \(2, 1, 5, 5\): layer '0' \(Conv2d\)"),
    (Broken(), torch.randn(2, 4), r"^model Broken does not run .*Broken.forward raised RuntimeError: "
                                  r"custom failure with a second line"),
    (nn.Sequential(nn.ReLU()), torch.randn(2, 4), r"^model Sequential has no Linear or Conv2d layer"),
])
def test_bad_models_get_one_line_naming_the_module(model, x, match):
    with pytest.raises(NettrimError, match=match) as info:
        trace_layers(model, x)
    assert "\n" not in str(info.value)


def test_prune_names_a_missing_layer_option():
    import nettrim

    with pytest.raises(NettrimError, match=re.escape("no prunable layer named nope; prunable layers: a, b")):
        nettrim.prune(Act(nn.GELU()), torch.randn(20, 6), run=nettrim.RunOptions(layers=["nope"], progress=False))


# --- BatchNorm folding ------------------------------------------------------------------------

def _randomize_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.3, 3)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_linear_batchnorm1d_fold_is_exact():
    torch.manual_seed(0)
    model = _randomize_bn(nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(),
                                        nn.Linear(7, 3, bias=False), nn.BatchNorm1d(3)).double())
    x = torch.randn(11, 5, dtype=torch.float64)
    folded, pairs = fold_batchnorm(model, x[:2])
    assert pairs == [("0", "1"), ("3", "4")] and folded[3].bias is not None
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-12, atol=1e-12)
    assert [s.relu for s in trace_layers(folded, x[:2])] == [True, False]


def test_batchnorm1d_over_tokens_is_not_folded():
    """(N, T, F) with T == F: BatchNorm1d normalizes the T axis, not the Linear's features."""
    model = _randomize_bn(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)))
    x = torch.randn(2, 6, 4)
    folded, pairs = fold_batchnorm(model, x)
    assert pairs == [] and isinstance(folded[1], nn.BatchNorm1d)


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, gate=False):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.gate = gate

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.gate and out.mean() > -1e9:  # data-dependent: not fx-traceable
            out = out * 1.0
        return F.relu(out + self.short(x))


@pytest.mark.parametrize("gate", [False, True])
def test_residual_conv_batchnorm_fold_is_exact(gate):
    torch.manual_seed(0)
    model = _randomize_bn(nn.Sequential(ResBlock(2, 4, 2, gate), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(4, 3)).double())
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    folded, pairs = fold_batchnorm(model, x[:2])
    assert sorted(pairs) == [("0.conv1", "0.bn1"), ("0.conv2", "0.bn2"), ("0.short.0", "0.short.1")]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-12, atol=1e-12)
    specs = trace_layers(folded, x[:2])
    assert [(s.name, s.relu) for s in specs] == [("0.conv1", True), ("0.conv2", False),
                                                 ("0.short.0", False), ("3", False)]
