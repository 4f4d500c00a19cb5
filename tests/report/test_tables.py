"""The terminal table says what each layer's status means."""
import torch
from torch import nn

from nettrim import NetTrim, prune
from nettrim.layer import ADMMSettings
from nettrim.report.tables import layer_table


def test_capped_but_feasible_layers_are_shown_as_such():
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5)).double()
    x = torch.randn(200, 20, generator=g, dtype=torch.float64)
    capped = ADMMSettings(dtype=torch.float64, max_iterations=10)
    rep = prune(net, x, method=NetTrim.paper(epsilon=0.1, settings=capped), progress=False).report
    table = layer_table(rep)
    for r in rep.layers:
        line = next(t for t in table.splitlines() if t.startswith(r.name + " "))
        if r.status == "max_iterations":
            assert ("feasible, capped" in line) == r.certified
        else:
            assert r.status in line
    assert any(r.status == "max_iterations" for r in rep.layers)


def test_each_layer_says_which_program_and_what_its_tolerance_bounds():
    """A layer followed by its own ReLU is a "relu" layer; the logits layer and a layer before
    a GELU are "linear", their table row and their verify claim say the bound is on the
    pre-activation, and the footnote says what it implies downstream."""
    from nettrim.pruners.verify import verify

    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 30), nn.GELU(),
                        nn.Linear(30, 5)).double()
    x = torch.randn(300, 20, generator=g, dtype=torch.float64)
    res = prune(net, x, method=NetTrim(epsilon=0.2), progress=False)
    table = layer_table(res.report).splitlines()
    programs = {r.name: next(t for t in table if t.startswith(r.name + " ")).split()[2]
                for r in res.report.layers}
    assert programs == {"0": "relu", "2": "linear", "4": "linear"}
    assert table[-1].startswith("linear: eps bounds the pre-activation")
    checks = verify(net, res.model, x, res.report.to_dict())
    layer_checks = {c.layer: c for c in checks if c.layer != "network"}
    assert set(layer_checks) == {"0", "2", "4"} and all(c.holds for c in checks)
    assert [n for n, c in layer_checks.items() if "pre-activation" in c.claim] == ["2", "4"]
