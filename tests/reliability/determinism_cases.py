"""The runs the determinism tests repeat: every method in both modes (and Net-Trim at a count
with either support, on a conv net, a Net-Trim shrink search and a sparsity search), on fixed
small networks and inputs. ``run_all()`` returns
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
from nettrim import ADMMSettings, NetTrim, RunOptions, SearchOptions

SETTINGS = ADMMSettings(max_iterations=600)
QUIET = RunOptions(progress=False)


def timeless(obj):
    """A report without what a run measures of the machine: its timings and peak memory."""
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items() if "seconds" not in k and k != "peak_memory_mb"}
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
    "nettrim-obs": (lambda: NetTrim(support="obs"), {}),
    "nettrim-count": (lambda: NetTrim(settings=ADMMSettings(max_iterations=200), max_solves=2), {"sparsity": 0.7}),
    "nettrim-obs-count": (lambda: NetTrim(support="obs"), {"sparsity": 0.7}),
    "threshold": (lambda: "threshold", {"sparsity": 0.7}),
    "lobs": (lambda: "lobs", {"sparsity": 0.7}),
    "dc": (lambda: nettrim.DC(outer=2, stages=2), {"sparsity": 0.7}),
    "sparsegpt": (lambda: "sparsegpt", {"sparsity": 0.7}),
    "wanda-owl": (lambda: nettrim.Wanda(allocation="owl"), {"sparsity": 0.7}),
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
            res = nettrim.prune(_mlp(), x, make(), mode=mode, run=QUIET, **kw)
            keep(f"{name}-{mode}", res.model, res.report.to_dict())
        res = nettrim.prune(_conv(), images, NetTrim(settings=SETTINGS), mode=mode,
                            run=QUIET.replace(max_rows=100))
        keep(f"conv-nettrim-{mode}", res.model, res.report.to_dict())
    net = _mlp()
    xv = torch.randn(300, 20, generator=g)
    yv = net(xv).argmax(1)
    yv[:30] = (yv[:30] + 1) % 5
    res = nettrim.shrink(net, x, (xv, yv), 0.02, NetTrim(settings=SETTINGS, reweight=0),
                         search=SearchOptions(max_trials=3), run=QUIET)
    keep("shrink", res.model, res.to_dict())
    res = nettrim.shrink(net, x, (xv, yv), 0.02, "sparsegpt", search=SearchOptions(max_trials=3), run=QUIET)
    keep("shrink-sparsity", res.model, res.to_dict())
    return tensors, reports


if __name__ == "__main__":
    from safetensors.torch import save_file

    out, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    tensors, reports = run_all()
    save_file(tensors, out + ".safetensors")
    with open(out + ".json", "w") as f:
        json.dump(reports, f, sort_keys=True)
