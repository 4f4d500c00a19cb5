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
