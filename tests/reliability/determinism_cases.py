"""The runs the determinism tests repeat: every method in both modes (and Net-Trim at a count,
on a conv net, and a shrink search), on fixed small networks and inputs. ``run_all()`` returns
every pruned state dict (flattened to ``case/key``) and every report without its timings.

Run as a script (``python determinism_cases.py OUT THREADS``) it writes both to OUT.safetensors
and OUT.json, for the comparison across processes.
"""
from __future__ import annotations

import json
import sys

import torch
from torch import nn

import nettrim
from nettrim import ADMMSettings, NetTrim

SETTINGS = ADMMSettings(max_iterations=600)


def timeless(obj):
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, (list, tuple)):
        return [timeless(v) for v in obj]
    return obj


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 5)).eval()


def _conv():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).eval()


CASES = {  # name: (method factory, prune keywords)
    "nettrim": (lambda: NetTrim(settings=SETTINGS), {}),
    "nettrim-paper": (lambda: NetTrim.paper(settings=SETTINGS), {}),
    "nettrim-count": (lambda: NetTrim(settings=SETTINGS, max_solves=4), {"sparsity": 0.7}),
    "threshold": (lambda: "threshold", {"sparsity": 0.7}),
    "lobs": (lambda: "lobs", {"sparsity": 0.7}),
    "dc": (lambda: nettrim.DC(outer=2, stages=2), {"sparsity": 0.7}),
}


def run_all() -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(150, 20, generator=g)
    images = torch.randn(40, 1, 8, 8, generator=g)
    tensors, reports = {}, {}

    def keep(name, model, report):
        for k, v in model.state_dict().items():
            tensors[f"{name}/{k}"] = v.detach().clone().contiguous()
        reports[name] = timeless(json.loads(json.dumps(report, default=str)))

    for mode in ("cascade", "parallel"):
        for name, (make, kw) in CASES.items():
            res = nettrim.prune(_mlp(), x, method=make(), mode=mode, progress=False, **kw)
            keep(f"{name}-{mode}", res.model, res.report.to_dict())
        res = nettrim.prune(_conv(), images, method=NetTrim(settings=SETTINGS), mode=mode,
                            capture={"max_rows": 500}, progress=False)
        keep(f"conv-nettrim-{mode}", res.model, res.report.to_dict())
    net = _mlp()
    xv = torch.randn(300, 20, generator=g)
    yv = net(xv).argmax(1)
    yv[:30] = (yv[:30] + 1) % 5
    res = nettrim.shrink(net, x, (xv, yv), 0.02, NetTrim(settings=SETTINGS, reweight=0), max_trials=3,
                         progress=False)
    keep("shrink", res.model, res.to_dict())
    return tensors, reports


if __name__ == "__main__":
    from safetensors.torch import save_file

    out, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    tensors, reports = run_all()
    save_file(tensors, out + ".safetensors")
    with open(out + ".json", "w") as f:
        json.dump(reports, f, sort_keys=True)
