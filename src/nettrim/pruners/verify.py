"""``verify``: recompute every certified claim of a prune report on its calibration inputs.

Each certified layer's constraints (``certificate.check_layer``) on its inputs under the scheme
(the pruned network's in cascade, the original network's in parallel and for the first layer),
and, when the report gives a bound, ||Yhat_L - Y_L||_F <= bound. A check that fails means the
report claims more than the model delivers on those inputs.
"""
from __future__ import annotations

import torch
from torch import nn

from ..capture import adapter_for, network_output, trace_layers
from ..capture.batchnorm import fold_batchnorm
from ..errors import require
from .certificate import Check, check_layer
from .network import _has_batchnorm, _make_job


def verify(original: nn.Module, pruned: nn.Module, inputs: torch.Tensor, report: dict,
           batch_size: int = 1024, subset: bool = False) -> list[Check]:
    """The checks of every certified layer of ``report`` (a ``PruneReport.to_dict()``) and of
    its network bound, recomputed on ``inputs``: the calibration draw, or with ``subset`` its
    first rows (every claim is a norm over samples, so it holds on any subset of the samples
    it holds on; Conv2d layers, whose patch rows are sampled from the whole draw, are then
    not checked)."""
    require(not (report.get("surgery") or ((report.get("settings") or {}).get("structure") or {}).get("surgery")),
            "this model was cut to fewer units (NetTrim(structure='units')): its claims were measured "
            "on the smaller network when it was pruned (each layer's certificate); verify "
            "recomputes the claims of full-width pruned models only")
    if _has_batchnorm(original):  # both as they were pruned: BatchNorms folded into their layers
        original = fold_batchnorm(original, inputs[:2])[0]
        pruned = fold_batchnorm(pruned, inputs[:2])[0]
    specs = trace_layers(original, inputs[:2])
    by_name = {s.name: s for s in specs}
    claimed = [r for r in report["layers"] if r.get("certified")
               and not (subset and r["kind"] != "linear")]
    require(all(r["name"] in by_name for r in report["layers"]),
            "the report names layers this model does not have: it belongs to another model")
    other = [r["name"] for r in report["layers"]
             if _weight_shape(original, r["name"]) != _weight_shape(pruned, r["name"])]
    require(not other, f"layer '{other[0] if other else ''}' has weights of shape "
                       f"{_weight_shape(original, other[0]) if other else ''} in the original but "
                       f"{_weight_shape(pruned, other[0]) if other else ''} in the pruned model: they "
                       "are different architectures (pass the model it was pruned from)")
    capture = {"max_rows": "auto", **report["settings"].get("capture", {})}
    checks = [_layer_check(original, pruned, by_name[r["name"]], specs, inputs, report["mode"],
                           batch_size, capture, r) for r in claimed]
    if report.get("bound") is not None:
        out = network_output(pruned, inputs, batch_size) - network_output(original, inputs, batch_size)
        checks.append(Check("network", "||Yhat_L - Y_L||_F <= bound", float(out.norm()),
                            float(report["bound"])))
    return checks


def _layer_check(original, pruned, spec, specs, inputs, mode, batch_size, capture, claim) -> Check:
    job = _make_job(original, pruned, spec, specs, inputs, mode, batch_size, capture)
    return check_layer(job, *adapter_for(pruned.get_submodule(spec.name), spec.name).get(), claim)


def _weight_shape(model: nn.Module, name: str):
    try:
        return tuple(model.get_submodule(name).weight.shape)
    except AttributeError:
        return None
