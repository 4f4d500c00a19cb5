"""Structured Net-Trim on networks: the units no layer reads removed on the model graph (chains,
functional forwards, the cuttable layers of a residual model), the smaller network computes what
the zeroed one computes, widths reported, every claim measured again on the smaller network;
models where no unit can go are refused in one line."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nettrim
from nettrim.errors import NettrimError
from nettrim.graph.surgery import magnitude_units, plan_units, remove_dead_units

QUIET = nettrim.RunOptions(progress=False)


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


def _inputs_of(model, name, x):
    got = {}
    h = model.get_submodule(name).register_forward_pre_hook(lambda m, a: got.__setitem__("x", a[0]))
    with torch.no_grad():
        model(x)
    h.remove()
    return got["x"]


def _discrepancy(original, small, name, units, relu, x, source):
    """||(Z~ - Y)_Omega||_F of the small network's layer on its measured units, from scratch:
    Y the original layer's response (after its ReLU for a ReLU layer), Z~ the small layer on
    ``source`` (its inputs)."""
    with torch.no_grad():
        z = original.get_submodule(name)(_inputs_of(original, name, x))[:, units]
        y = torch.relu(z) if relu else z
        zt = small.get_submodule(name)(source)  # every unit it keeps is measured (no placeholder)
        on = y > 0 if relu else torch.ones_like(y, dtype=torch.bool)
        return float(((zt - y) * on).double().norm())


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_mlp_units_removed_exactly_and_claims_hold_on_the_smaller_network(mode):
    m = _teacher_mlp()
    x = torch.randn(400, 20)
    method = nettrim.NetTrim(structure="units", epsilon=0.1, layer_epsilon={"5": 0.1, "7": 0.1})
    res = nettrim.prune(m, x, method, mode=mode, run=QUIET)
    small, surgery = res.model, res.report.surgery
    assert [type(mod) for mod in small] == [type(mod) for mod in m]  # same classes, fewer features
    widths = surgery["widths"]
    assert widths["1"] == [40, small[1].out_features] and widths["5"] == [30, small[5].out_features]
    assert widths["7"] == [5, 5] and "model's output" in surgery["fixed"]["7"]
    assert small[1].out_features < 40 and small[5].out_features < 30
    assert small[4].num_features == small[1].out_features == small[5].in_features
    assert surgery["output_max_abs_diff"] < 1e-5
    with torch.no_grad():  # on fresh data too: the cut is exact, not fitted
        fresh = torch.randn(64, 20)
        zeroed = _zeroed_like(m, small, surgery["kept"])
        torch.testing.assert_close(small(fresh), zeroed(fresh), atol=1e-5, rtol=1e-5)
    relu = {"1": True, "5": True, "7": False}
    for rep in res.report.layers:  # every claim measured again on the smaller network
        cert, cut = rep.certificate, rep.info["cut"]
        assert rep.certified and cert.measured <= cert.limit and cut["before"]["holds"]
        assert cut["response_max_abs_diff"] < 1e-4
        assert cut["shape"] == list(small.get_submodule(rep.name).weight.shape)
        units = surgery["kept"].get(rep.name, list(range(5)))
        if mode == "cascade" or rep.name == "1":
            source = _inputs_of(small, rep.name, x)
        else:  # parallel: the original network's inputs, restricted to the kept input units
            source = _inputs_of(m, rep.name, x)[:, surgery["kept"][{"5": "1", "7": "5"}[rep.name]]]
        want = _discrepancy(m, small, rep.name, units, relu[rep.name], x, source)
        assert cert.discrepancy == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert res.report.bound is None  # a BatchNorm between the layers: no network bound
    with torch.no_grad():
        assert res.report.output_error == pytest.approx(float((small(x) - m(x)).double().norm()), rel=1e-5)


def _zeroed_like(m, small, kept):
    """The full-width network computing what ``small`` computes: its weights written back at
    the kept units (zeros elsewhere), the BatchNorm's kept entries too."""
    import copy

    full = copy.deepcopy(m)
    with torch.no_grad():
        for name, prev in (("1", None), ("5", "1"), ("7", "5")):
            layer, s = full.get_submodule(name), small.get_submodule(name)
            rows = kept.get(name, list(range(layer.out_features)))
            cols = kept[prev] if prev else list(range(layer.in_features))
            layer.weight.zero_()
            layer.weight[torch.tensor(rows)[:, None], torch.tensor(cols)] = s.weight
            layer.bias.zero_()
            layer.bias[rows] = s.bias
    return full


def test_conv_chain_channels_removed_through_pooling_batchnorm_and_flatten():
    m = _teacher_cnn()
    x = torch.randn(200, 2, 8, 8)
    names = {"3.0": 0.1, "5": 0.1, "7": 0.1}
    res = nettrim.prune(m, x, nettrim.NetTrim(structure="units", epsilon=0.1, layer_epsilon=names),
                        run=nettrim.RunOptions(progress=False, max_rows=3000))
    small, widths = res.model, res.report.surgery["widths"]
    assert widths == {"0": [8, small[0].out_channels], "3.0": [10, small[3][0].out_channels],
                      "5": [16, small[5].out_features], "7": [4, 4]}
    assert small[0].out_channels < 8 and small[3][0].out_channels < 10
    assert small[3][0].in_channels == small[0].out_channels
    assert small[3][1].num_features == small[3][0].out_channels  # the BatchNorm lost the channels
    assert small[5].in_features == 4 * small[3][0].out_channels  # 2x2 features per channel
    assert res.report.surgery["output_max_abs_diff"] < 1e-5
    assert all(r.certified and r.certificate.measured <= r.certificate.limit for r in res.report.layers)
    # a group behind the Flatten is a whole channel (its 2x2 features in every row): kept as a whole
    assert bool((small[5].weight != 0).all()) and bool((small[3][0].weight != 0).all())


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
    cut = remove_dead_units(m, x[:2])
    assert cut.widths == {"0": (8, 5), "3.0": (10, 8), "5": (16, 14), "7": (4, 4)}  # constants folded, removed
    assert cut.folded == {"0": [2], "5": [6]}
    assert cut.kept["0"] == [0, 3, 5, 6, 7]
    with torch.no_grad():
        torch.testing.assert_close(cut.model(x), m(x), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in cut.model.parameters()) < sum(p.numel() for p in m.parameters())
    assert m[0].out_channels == 8 and m[0].weight.shape[0] == 8  # the caller's model is untouched


def test_a_constant_map_read_through_zero_padding_is_kept():
    """Zero padding makes a constant channel non-constant at the borders of the next conv's
    input: not foldable, so the unit stays; a constant 0 goes."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1),
                      nn.ReLU(), nn.Flatten(), nn.Linear(2 * 5 * 5, 3)).eval()
    with torch.no_grad():
        m[0].weight[0] = 0
        m[0].bias[0] = 0.5
        m[0].weight[1] = 0
        m[0].bias[1] = -0.5  # relu(-0.5) = 0: its outgoing weights are dropped, the unit removed
    x = torch.randn(16, 1, 5, 5)
    cut = remove_dead_units(m, x[:2])
    assert cut.kept["0"] == [0, 2] and cut.folded == {"0": [1]}
    with torch.no_grad():
        torch.testing.assert_close(cut.model(x), m(x), atol=1e-5, rtol=1e-5)


def test_a_layer_nobody_reads_keeps_one_placeholder_unit():
    m = _teacher_mlp()
    with torch.no_grad():
        m[7].weight.zero_()  # the logits are the bias alone
    x = torch.randn(32, 20)
    cut = remove_dead_units(m, x[:2])
    assert cut.widths == {"1": (40, 1), "5": (30, 1), "7": (5, 5)} and cut.placeholders == {"1": 0, "5": 0}
    with torch.no_grad():
        torch.testing.assert_close(cut.model(x), m(x))


class Functional(nn.Module):
    """Not an nn.Sequential: functional ReLU and pooling, a view, a replicate-padded conv."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 3), nn.Conv2d(6, 8, 3, padding=1, padding_mode="replicate")
        self.bn, self.fc1, self.fc2 = nn.BatchNorm2d(8), nn.Linear(8 * 3 * 3, 12), nn.Linear(12, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.bn(self.conv2(x)))
        x = x.view(x.size(0), -1)
        return self.fc2(torch.tanh(self.fc1(x)))


def test_units_are_removed_from_a_functional_forward():
    torch.manual_seed(0)
    m = Functional().eval()
    with torch.no_grad():
        m.bn.running_var.uniform_(0.5, 2.0)
        m.conv2.weight[:, [1, 3]] = 0
        m.fc1.weight.view(12, 8, 9)[:, [0, 5]] = 0
        m.fc2.weight[:, 4] = 0
        m.conv1.weight[2] = 0  # a constant map, padded by replication: still constant, folded
        m.conv1.bias[2] = 0.4
    x = torch.randn(32, 1, 8, 8)
    plan = plan_units(m, x[:2])
    assert sorted(plan.links) == ["conv1", "conv2", "fc1"] and plan.groups()["fc1"].tolist() == \
        torch.arange(72).div(9, rounding_mode="floor").tolist()
    cut = remove_dead_units(m, x[:2])
    assert cut.widths == {"conv1": (6, 3), "conv2": (8, 6), "fc1": (12, 11), "fc2": (3, 3)}
    assert cut.folded == {"conv1": [2]} and cut.model.bn.num_features == 6 and cut.model.fc1.in_features == 54
    with torch.no_grad():
        torch.testing.assert_close(cut.model(x), m(x), atol=1e-5, rtol=1e-5)


class Block(nn.Module):
    """A residual block: the layers whose outputs reach the add keep their units, the inner one not."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b, self.head = nn.Linear(10, 16), nn.Linear(16, 24), nn.Linear(24, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = h + self.b(torch.relu(self.a(h)))
        return self.head(torch.relu(h))


def test_only_the_layers_whose_units_reach_nothing_else_are_cut():
    torch.manual_seed(0)
    m = Block().eval()
    with torch.no_grad():
        m.b.weight[:, [2, 7]] = 0
        m.head.weight[:, 5] = 0  # read by the add too: stays
    x = torch.randn(40, 10)
    cut = remove_dead_units(m, x[:2])
    assert cut.widths == {"stem": (16, 16), "a": (24, 22), "b": (16, 16), "head": (3, 3)}
    assert "add" in cut.fixed["stem"] and "add" in cut.fixed["b"] and sorted(cut.fixed) == ["b", "head", "stem"]
    with torch.no_grad():
        torch.testing.assert_close(cut.model(x), m(x), atol=1e-5, rtol=1e-5)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(12, 12), nn.Linear(12, 12), nn.Linear(12, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.out(torch.relu(self.b(h)) + h)


class Sometimes(nn.Module):
    """Data-dependent control flow: the fx trace fails, and the branch not taken on the example
    would read the hidden units another way."""

    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Linear(6, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if float(x.sum()) > 1e6:
            return self.out(h) + h[:, :2]
        return self.out(h)


@pytest.mark.parametrize("model, why", [(Residual, "read by add"), (Sometimes, "torch.fx")])
def test_models_where_no_unit_can_go_are_refused_in_one_line(model, why):
    torch.manual_seed(0)
    m = model().eval()
    x = torch.randn(300, m.a.in_features)
    for call in (lambda: remove_dead_units(m, x[:2]),
                 lambda: nettrim.prune(m, x, nettrim.NetTrim(structure="units"), run=QUIET)):
        with pytest.raises(NettrimError) as exc:
            call()
        msg = str(exc.value)
        assert "\n" not in msg and "no layer of this model can lose units" in msg and why in msg


def test_magnitude_units_keep_the_largest_outgoing_norms():
    m = _teacher_mlp()
    x = torch.randn(8, 20)
    cut = magnitude_units(m, x, {"1": 25, "5": 20})
    assert cut.widths == {"1": (40, 25), "5": (30, 20), "7": (5, 5)}
    assert cut.kept["1"] == list(range(25))  # the others were scaled down by 50x
    assert cut.kept["5"] == list(range(20))
    inc = magnitude_units(m, x, {"1": 10}, norm="incoming")
    assert inc.widths["1"] == (40, 10) and inc.widths["5"] == (30, 30)


def test_the_callers_model_is_left_as_it_was():
    m = _teacher_mlp().train()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    method = nettrim.NetTrim(structure="units", epsilon=0.2, layer_epsilon={"5": 0.2, "7": 0.2})
    nettrim.prune(m, torch.randn(200, 20), method, run=QUIET)
    assert all(mod.training for mod in m.modules())
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())


def test_the_accuracy_budget_search_runs_with_units():
    m = _teacher_mlp()
    x, xv = torch.randn(300, 20), torch.randn(300, 20)
    with torch.no_grad():
        yv = m(xv).argmax(1)
    found = nettrim.shrink(m, x, (xv, yv), 0.05, nettrim.NetTrim(structure="units", layer_epsilon={"5": 0.1}),
                           search=nettrim.SearchOptions(max_trials=2), run=QUIET)
    assert len(found.search) >= 2 and all(t.certified for t in found.search)
    if found.report is not None:
        assert found.report.surgery["widths"]["1"][1] == found.model[1].out_features <= 40
