"""Structured Net-Trim on networks: unread units removed from plain chains, the smaller
network computes what the zeroed one computes, widths reported, certificates measured again;
other models keep their zero groups."""
import pytest
import torch
from torch import nn

import nettrim
from nettrim.capture import trace_layers
from nettrim.pruners.structured import magnitude_units, plain_chain, remove_units


def _teacher_mlp():
    """An MLP whose hidden units are partly redundant (so the group program drops some),
    with dropout and a BatchNorm1d after a ReLU (not foldable: it stays between the layers)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(20, 40), nn.ReLU(), nn.Dropout(0.1),
                      nn.BatchNorm1d(40), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 5))
    with torch.no_grad():
        m[4].running_mean.uniform_(-0.1, 0.1)
        m[4].running_var.uniform_(0.5, 2.0)
        m[4].weight.uniform_(0.5, 1.5)
        m[4].bias.uniform_(-0.2, 0.2)
        m[5].weight[:, 25:] *= 0.02  # units 25.. of the first layer barely read
        m[7].weight[:, 20:] *= 0.02
    return m.eval()


def _teacher_cnn():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Sequential(nn.Conv2d(8, 10, 3), nn.BatchNorm2d(10), nn.ReLU()), nn.Flatten(),
                      nn.Linear(10 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        m[3][0].weight[:, 5:] *= 0.02  # channels 5.. of the first conv barely read
        m[5].weight.view(16, 10, 4)[:, 7:] *= 0.02  # channels 7.. of the second conv, behind the Flatten
        bn = m[3][1]
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


EPS = dict(epsilon=0.1)


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_mlp_units_removed_exactly_and_recertified(mode):
    m = _teacher_mlp()
    x = torch.randn(400, 20)
    method = nettrim.NetTrim(structure="units", **EPS, layer_epsilon={"5": 0.1, "7": 0.1})
    res = nettrim.prune(m, x, method=method, mode=mode, progress=False)
    widths = res.report.settings["widths"]
    assert widths["layers"] == ["1", "5", "7"] and widths["before"] == [20, 40, 30, 5]
    small = res.model
    assert [type(mod) for mod in small] == [type(mod) for mod in m]  # same classes, fewer features
    assert widths["after"] == [20, small[1].out_features, small[5].out_features, 5]
    assert small[1].out_features < 40 and small[5].out_features < 30
    assert small[4].num_features == small[1].out_features == small[5].in_features
    structure = res.report.settings["structure"]
    assert structure["surgery"] and structure["output_max_abs_diff"] < 1e-5
    assert sorted(structure["kept"]) == ["1", "5", "7"]
    for rep in res.report.layers:  # every claim measured again on the smaller network
        check = rep.info["units_check"]
        assert rep.certified and check["measured"] <= check["limit"]
        assert check["response_max_abs_diff"] < 1e-4
        assert rep.info["shape_after"] == list(small.get_submodule(rep.name).weight.shape)
    assert res.report.bound is None  # a BatchNorm between the layers: no network bound (is_chain)
    assert torch.isfinite(small(torch.randn(3, 20))).all()


def test_conv_chain_channels_removed_through_pooling_batchnorm_and_flatten():
    m = _teacher_cnn()
    x = torch.randn(200, 2, 8, 8)
    names = {"3.0": 0.1, "5": 0.1, "7": 0.1}
    res = nettrim.prune(m, x, method=nettrim.NetTrim(structure="units", **EPS, layer_epsilon=names),
                        progress=False, capture={"max_rows": 3000})
    small = res.model
    after = res.report.settings["widths"]["after"]
    assert after == [2, small[0].out_channels, small[3][0].out_channels, small[5].out_features, 4]
    assert small[0].out_channels < 8 and small[3][0].out_channels < 10
    assert small[3][0].in_channels == small[0].out_channels
    assert small[3][1].num_features == small[3][0].out_channels  # the BatchNorm lost the channels
    assert small[5].in_features == 4 * small[3][0].out_channels  # 2x2 features per channel
    assert res.report.settings["structure"]["output_max_abs_diff"] < 1e-5
    assert all(r.certified for r in res.report.layers)


def _zeroed_chain():
    """A chain with zero groups set by hand: the smaller model must compute the same function."""
    m = _teacher_cnn()
    with torch.no_grad():
        m[3][0].weight[:, [1, 4]] = 0  # conv channels 1 and 4 read by nothing
        m[5].weight.view(16, 10, 4)[:, [0, 9]] = 0  # conv2 channels 0 and 9 read by nothing
        m[7].weight[:, 3] = 0
        m[5].weight[6] = 0  # unit 6 of the first Linear: constant relu(b) > 0, read
        m[5].bias[6] = 0.7
        m[0].weight[2] = 0  # conv channel 2: the constant relu(b), max-pooled, read by a conv
        m[0].bias[2] = 0.3  # without padding: folded into its bias
    return m


def test_surgery_is_exact_and_folds_constant_units():
    m = _zeroed_chain()
    x = torch.randn(64, 2, 8, 8)
    chain = plain_chain(m, trace_layers(m, x[:2]), x[:2])
    cut = remove_units(m, chain)
    assert cut.widths["before"] == [2, 8, 10, 16, 4]
    assert cut.widths["after"] == [2, 5, 8, 14, 4]  # the constants folded, then removed
    assert cut.folded == {"0": [2], "5": [6]}
    assert cut.kept["0"].tolist() == [0, 3, 5, 6, 7]
    with torch.no_grad():
        torch.testing.assert_close(cut.model(x), m(x), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in cut.model.parameters()) < sum(p.numel() for p in m.parameters())


def test_a_constant_map_read_through_padding_is_kept():
    """Zero padding makes a constant channel non-constant at the borders of the next conv's
    input: not foldable, so the unit stays."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1),
                      nn.ReLU(), nn.Flatten(), nn.Linear(2 * 5 * 5, 3)).eval()
    with torch.no_grad():
        m[0].weight[0] = 0
        m[0].bias[0] = 0.5
        m[0].weight[1] = 0
        m[0].bias[1] = -0.5  # relu(-0.5) = 0: its outgoing weights are dropped, the unit removed
    x = torch.randn(16, 1, 5, 5)
    cut = remove_units(m, plain_chain(m, trace_layers(m, x[:2]), x[:2]))
    assert cut.kept["0"].tolist() == [0, 2] and cut.folded == {"0": [1]}
    with torch.no_grad():
        torch.testing.assert_close(cut.model(x), m(x), atol=1e-5, rtol=1e-5)


def test_a_layer_nobody_reads_keeps_one_placeholder_unit():
    m = _teacher_mlp()
    with torch.no_grad():
        m[7].weight.zero_()  # the logits are the bias alone
    x = torch.randn(32, 20)
    cut = remove_units(m, plain_chain(m, trace_layers(m, x[:2]), x[:2]))
    assert cut.widths["after"] == [20, 1, 1, 5] and sorted(cut.placeholders) == ["1", "5"]
    with torch.no_grad():
        torch.testing.assert_close(cut.model(x), m(x))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(12, 12), nn.Linear(12, 12), nn.Linear(12, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.out(torch.relu(self.b(h)) + h)


def test_other_models_keep_zero_groups_and_say_why():
    torch.manual_seed(0)
    m = Residual().eval()
    x = torch.randn(300, 12)
    res = nettrim.prune(m, x, method=nettrim.NetTrim(structure="units", epsilon=0.3,
                                                      layer_epsilon={"b": 0.3, "out": 0.3}), progress=False)
    structure = res.report.settings["structure"]
    assert structure["surgery"] is False and "nn.Sequential" in structure["reason"]
    assert res.report.settings["widths"] is None
    assert [p.shape for p in res.model.parameters()] == [p.shape for p in m.parameters()]
    w = res.model.out.weight  # the group program ran: whole input columns are zero
    assert bool(((w == 0).all(0)).any())


def test_magnitude_units_keep_the_largest_outgoing_norms():
    m = _teacher_mlp()
    x = torch.randn(8, 20)
    cut = magnitude_units(m, x, {"1": 25, "5": 20})
    assert cut.widths["after"] == [20, 25, 20, 5]
    assert cut.kept["1"].tolist() == list(range(25))  # the others were scaled down by 50x
    assert cut.kept["5"].tolist() == list(range(20))
    inc = magnitude_units(m, x, {"1": 10}, norm="incoming")
    assert inc.widths["after"] == [20, 10, 30, 5]


def test_the_callers_model_is_left_as_it_was():
    m = _teacher_mlp().train()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    nettrim.prune(m, torch.randn(200, 20), method=nettrim.NetTrim(structure="units", epsilon=0.2),
                  progress=False)
    assert all(mod.training for mod in m.modules())
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())


def test_the_accuracy_budget_search_runs_with_units():
    """``shrink`` warm-starts each trial from the nearest earlier one, which is narrower with
    structure="units": that start is skipped, not an error."""
    from nettrim.pruners.shrink import shrink

    m = _teacher_mlp()
    x, xv = torch.randn(300, 20), torch.randn(300, 20)
    with torch.no_grad():
        yv = m(xv).argmax(1)
    found = shrink(m, x, (xv, yv), 0.05, nettrim.NetTrim(structure="units", layer_epsilon={"5": 0.1}),
                   max_trials=3, progress=False)
    assert len(found.search) >= 2 and all(t.certified for t in found.search)
    if found.report is not None:
        assert found.report.settings["widths"]["after"][1] <= 40
