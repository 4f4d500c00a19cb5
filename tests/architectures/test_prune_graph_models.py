"""nettrim.prune on networks with a real graph: a ResNet-18-shaped network (BatchNorm, residual
adds, ReLU after the add), PyTorch's own nn.TransformerEncoderLayer and nettrim's small ViT.
Random weights, small widths, random inputs: the checks are structural (every layer listed with
the right activation, the pruned model runs, each layer's certificate holds where the solver
converged), plus the cascade's inputs through the residual graph."""
from typing import ClassVar

import pytest
import torch
from torch import nn

import nettrim
from nettrim import ADMMSettings, RunOptions, Threshold
from nettrim.graph.batchnorm import fold_batchnorm
from nettrim.graph.model import ModelGraph
from nettrim.graph.trace import plain_forward
from nettrim.models import build_model
from nettrim.options import options
from nettrim.stream import Batches, RowPlan, layer_stats

torch.set_num_threads(1)
FAST = ADMMSettings(max_iterations=1500)
QUIET = RunOptions(progress=False)


def trace_layers(model, x):
    """The model graph's prunable layers, in execution order."""
    return ModelGraph.build(model, x).layers


def folded(model, x):
    """``model`` with the BatchNorms its graph folds folded in (what prune does first)."""
    return fold_batchnorm(model, ModelGraph.build(model, x).bn_pairs)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock layout: conv-bn-relu-conv-bn, + identity or 1x1 downsample, relu."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """ResNet-18's layout (stem, 4 stages x 2 BasicBlocks, avgpool, fc) at small widths."""

    def __init__(self, widths=(4, 8, 8, 16), n_classes=5):
        super().__init__()
        w = widths[0]
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, c = [], w
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(c, width, stride), BasicBlock(width, width, 1)))
            c = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(seed=0):
    torch.manual_seed(seed)
    model = ResNet18()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def modules_that_run(model, x):
    """Names of the Linear/Conv2d modules whose forward runs on ``x`` (fast path off)."""
    ran = []
    hooks = [m.register_forward_hook(lambda *a, n=n: ran.append(n)) for n, m in model.named_modules()
             if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad(), plain_forward():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return ran


def check_certificates(report):
    for layer in report.layers:
        if layer.status == "solved":
            assert layer.certified, layer.name
        if layer.certified:
            assert layer.discrepancy <= layer.certificate.epsilon * 1.05, layer.name


def test_resnet18_layers_and_activations():
    model = resnet18()
    assert not trace_layers(model, torch.randn(2, 3, 32, 32))[0].relu  # conv1 -> BN -> ReLU
    model = folded(model, torch.randn(2, 3, 32, 32))  # what prune does first
    specs = trace_layers(model, torch.randn(2, 3, 32, 32))
    names = [s.name for s in specs]
    assert names == modules_that_run(model, torch.randn(2, 3, 32, 32)) and len(names) == 21
    relu = {s.name: s.relu for s in specs}
    assert relu["conv1"] and not relu["fc"]
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}"
            assert relu[f"{p}.conv1"] and not relu[f"{p}.conv2"]  # conv2's output meets the skip
    assert [n for n in names if "downsample" in n] == [f"layer{s}.0.downsample.0" for s in (2, 3, 4)]
    assert not any(relu[n] for n in names if "downsample" in n)
    assert not any(s.feeds_next for s in specs)


def test_resnet18_pruned_with_nettrim():
    model, x = resnet18(), torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    res = nettrim.prune(model, x, nettrim.NetTrim(epsilon=0.1, settings=FAST),
                        run=RunOptions(max_rows=1500, progress=False))
    rep = res.report
    assert len(rep.run["folded_batchnorm"]) == 20  # every BN folded into its conv
    specs = trace_layers(folded(model, x[:2]), x[:2])
    assert [(r.name, r.relu) for r in rep.layers] == [(s.name, s.relu) for s in specs]
    assert sum(r.relu for r in rep.layers) == 9  # the stem and every block's conv1
    check_certificates(rep)
    # most layers meet their constraints within FAST's cap (17 of 21 here with NetTrim()'s
    # margins); check_certificates has checked that every certified claim holds
    assert sum(r.certified for r in rep.layers) >= len(rep.layers) - 5
    assert rep.nnz_after < rep.nnz_before and rep.bound is None  # not a chain: no network bound
    with torch.no_grad():
        out, before = res.model(x), model(x)
    assert out.shape == (24, 5) and torch.isfinite(out).all()
    assert float((out - before).norm()) == pytest.approx(rep.output_error, rel=1e-4)


SEEN: dict[str, torch.Tensor] = {}


@options
class RecordedThreshold(Threshold):
    """Hard thresholding that keeps each job's input Gram matrix X^T X (in SEEN)."""

    name: ClassVar[str] = "recorded-threshold"

    def at_count(self, job, keep):
        SEEN[job.name] = job.stats.gram.clone()
        return super().at_count(job, keep)


def input_gram(model, name, x, plan):
    """X^T X of layer ``name``'s input rows in ``model`` (the same rows as a prune's)."""
    return layer_stats(model, name, Batches(x, 1024, model), relu=False, hold=False, plan=plan).gram


def test_cascade_layers_see_the_pruned_network_through_the_residual_graph():
    """Each cascade job's inputs are the pruned network's inputs to that layer: what a capture of
    the final pruned model gives (layers run later cannot change it), not the original's."""
    model, x = resnet18(2), torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    SEEN.clear()
    run = RunOptions(max_rows=400, seed=0, progress=False)
    res = nettrim.prune(model, x, RecordedThreshold(), sparsity=0.5, run=run)
    pruned, original = folded(res.model, x[:2]), folded(model, x[:2])
    for name in ("layer2.0.conv1", "layer3.1.conv1", "layer4.0.downsample.0", "fc"):
        torch.testing.assert_close(SEEN[name], input_gram(pruned, name, x, run.row_plan()))
        assert not torch.allclose(SEEN[name], input_gram(original, name, x, run.row_plan()), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("activation, relu1", [("relu", True), ("gelu", False)])
def test_transformer_encoder_layer_pruned(activation, relu1):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, activation=activation, batch_first=True).eval()
    x = torch.randn(48, 6, 16, generator=torch.Generator().manual_seed(3))
    specs = trace_layers(layer, x[:2])
    assert [s.name for s in specs] == modules_that_run(layer, x[:2]) == ["linear1", "linear2"]
    assert [s.relu for s in specs] == [relu1, False] and specs[0].feeds_next == relu1
    res = nettrim.prune(layer, x, nettrim.NetTrim.paper(epsilon=0.1, settings=FAST), run=QUIET)
    rep = res.report
    assert [r.relu for r in rep.layers] == [relu1, False] and rep.nnz_after < rep.nnz_before
    check_certificates(rep)
    assert all(r.certified for r in rep.layers)
    assert res.model.linear1.weight.eq(0).any() and res.model.linear2.weight.eq(0).any()
    with torch.no_grad():  # the pruned copy runs, with the fused fast path too (same weights)
        slow = res.model(x)
        with plain_forward():
            torch.testing.assert_close(res.model(x), slow)
    assert torch.isfinite(slow).all()


def test_vit_tiny_pruned_with_the_linear_program():
    torch.manual_seed(0)
    model = build_model("vit-tiny", dim=16, depth=1, heads=2).eval()
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    specs = trace_layers(model, x[:2])
    assert [s.name for s in specs] == modules_that_run(model, x[:2]) == [
        "0.proj", "1.attn.q", "1.attn.k", "1.attn.v", "1.attn.out", "1.fc1", "1.fc2", "4"]
    assert not any(s.relu for s in specs) and specs[-1].to_output
    assert specs[5].users == ("GELU '1.act'",)
    res = nettrim.prune(model, x, nettrim.NetTrim(epsilon=0.1, settings=FAST),
                        run=RunOptions(max_rows=2000, progress=False))
    check_certificates(res.report)
    assert sum(r.certified for r in res.report.layers) >= 6 and res.report.nnz_after < res.report.nnz_before
    with torch.no_grad():
        assert torch.isfinite(res.model(x)).all()
