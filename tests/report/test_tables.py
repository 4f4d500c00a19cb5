"""The terminal table says what each layer's status means."""
import torch
from torch import nn

from nettrim import ADMMSettings, NetTrim, RunOptions, prune
from nettrim.report.tables import LINEAR_NOTE, layer_table
from recompute import all_hold

QUIET = RunOptions(progress=False)


def test_capped_but_feasible_layers_are_shown_as_such():
    """A layer whose claim holds says "certified", whatever its solver's status; one whose
    claim does not says its status (a capped solve: max_iterations)."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5)).double()
    x = torch.randn(200, 20, generator=g, dtype=torch.float64)
    capped = ADMMSettings(dtype="float64", max_iterations=10)
    rep = prune(net, x, NetTrim.paper(epsilon=0.1, settings=capped), run=QUIET).report
    table = layer_table(rep)
    for r in rep.layers:
        line = next(t for t in table.splitlines() if t.startswith(r.name + " "))
        if r.certified:
            assert "certified" in line and r.status not in line
        else:
            assert r.status in line and "certified" not in line
    assert any(r.status == "max_iterations" for r in rep.layers)


def test_each_layer_says_which_program_and_what_its_tolerance_bounds():
    """A layer followed by its own ReLU is a "relu" layer; the logits layer and a layer before
    a GELU are "linear", their table row and their certificate's claim say the bound is on the
    pre-activation, and the footnote says what it implies downstream."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 30), nn.GELU(),
                        nn.Linear(30, 5)).double()
    x = torch.randn(300, 20, generator=g, dtype=torch.float64)
    res = prune(net, x, NetTrim(epsilon=0.2), run=QUIET)
    table = layer_table(res.report).splitlines()
    programs = {r.name: next(t for t in table if t.startswith(r.name + " ")).split()[2]
                for r in res.report.layers}
    assert programs == {"0": "relu", "2": "linear", "4": "linear"}
    assert table[-1] == LINEAR_NOTE and table[-1].startswith("linear: eps bounds the pre-activation")
    assert all(r.certified for r in res.report.layers)
    assert all_hold(net, res.model, x, res.report)  # every claim, recomputed from the models
    claims = {r.name: r.certificate.claim for r in res.report.layers}
    assert [n for n, c in claims.items() if "pre-activation" in c] == ["2", "4"]
    assert res.report.bound is None  # a GELU between layers: no plain ReLU chain
