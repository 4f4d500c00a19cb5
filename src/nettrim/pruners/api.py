"""``nettrim.prune``: one entry point for Net-Trim and every rival."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..capture import parse_memory, trace_layers
from ..errors import NettrimError, require
from .backend import Backend, make_backend
from .base import PruningMethod, Target
from .network import MODES, PruneResult, run_scheme
from .registry import METHODS, resolve_method


def prune(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str | PruningMethod = "nettrim",
    mode: str = "cascade",
    epsilon: float | None = None,
    gamma: float | None = None,
    kappa: float | None = None,
    sparsity: float | None = None,
    counts: dict[str, int] | None = None,
    layers: list[str] | None = None,
    batch_size: int = 1024,
    cleanup: bool = False,
    progress: bool = True,
    capture: dict | None = None,
    max_memory: int | str | None = None,
    store=None,
    backend: str | Backend = "local",
    address: str | None = None,
    **options,
) -> PruneResult:
    """Prune a trained network; returns ``.model`` (a pruned deep copy) and ``.report``.

    Args:
        model: any nn.Module that runs on ``inputs``; its Linear and Conv2d layers are pruned
            (a layer followed by a ReLU gets the ReLU program, any other the linear one; see
            docs/any-model.md). It is not modified.
        inputs: (P, ...) network inputs the layer responses are kept on (training samples).
        method: a method object (``nettrim.NetTrim(...)``, ``nettrim.Threshold()``,
            ``nettrim.DC(...)``, ``nettrim.LOBS(...)``) holding its options, or a registered
            name ("nettrim", "threshold", "dc", "lobs"), which means that method's default
            object; with "nettrim", ``epsilon``, ``gamma`` and ``kappa`` set its numbers
            (``prune(model, x, epsilon=0.1)`` is ``prune(model, x, method=NetTrim(epsilon=0.1))``).
        mode: "cascade" (layer l sees the pruned network's inputs; sparser) or "parallel"
            (every layer on the original network; independent jobs).
        sparsity: fraction of zeros per pruned layer (weights and biases), in (0, 1); required
            by the rivals, optional for Net-Trim (whose own control is its tolerance).
        counts: exact non-zero counts per layer name (overrides ``sparsity`` for those layers),
            e.g. another method's counts, to compare at equal size.
        layers: names of the layers to prune (default all; the others are reported skipped,
            and the network bound is then not given).
        cleanup: remove dead units between consecutive Linear layers: a unit whose outgoing
            weights are all zero loses its incoming ones (``cleanup``). The network's function
            is unchanged, but a layer's own response is not, so every layer's certificate is
            measured again afterwards and usually lost; off by default.
        capture: capture options, e.g. ``{"max_rows": 20000, "seed": 0}`` for the patch rows
            sampled from each Conv2d layer (default ``max_rows="auto"``: max(5000, 30 N') rows,
            within 2 GiB; see ``nettrim.capture.conv``). Each layer reports the rows it used.
        max_memory: bytes (an int, or a size such as "2GiB", "512MB") that bound what is held
            for one layer's rows (its captured X, Z, Y and the solver's copies of them:
            16 N + 33 M + 12 bytes a row, ``nettrim.capture.memory``); a layer with more rows
            is solved and certified on a seeded uniform sample of floor(max_memory / that)
            of them (its report's info: rows_kept, rows_total, rows_limit). The certificate
            then holds on the rows kept, not on the others. Stored as ``capture["max_memory"]``
            (the same as passing it there). A budget below a layer's minimum (1,000 rows, or
            all of a smaller layer's) is a one-line error before any work.
        store: a ``nettrim.pruners.resume.RunStore``: finished layers are kept there and an
            interrupted run resumes after its last finished layer (bit-identical result).
        backend: "local" (this process) or "ray": each layer of a parallel run, and each block
            of output neurons of a per-neuron Net-Trim layer, becomes a Ray task; the answer is
            the local one, bit for bit, at the same torch thread count (docs/distributed.md).
            ``address``: the Ray cluster to join (with "ray" only); without it a local Ray is
            started. A ``nettrim.pruners.backend.RayBackend`` object may be passed instead.

    Any other keyword is an error: options live on the method object.
    """
    if options:
        raise NettrimError(f"prune() has no option {', '.join(map(repr, sorted(options)))}: method "
                           f"options live on the method object, e.g. "
                           f"method=nettrim.NetTrim({sorted(options)[0]}=...)")
    validate_inputs(model, inputs, mode)
    require(isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1,
            f"batch_size must be an integer >= 1, got {batch_size!r}")
    require(counts is None or isinstance(counts, dict),
            f"counts must be a dict of layer name -> count, got {type(counts).__name__}")
    if sparsity is not None:
        require(isinstance(sparsity, (int, float)) and math.isfinite(sparsity) and 0 < sparsity < 1,
                f"sparsity must lie in (0, 1), got {sparsity}")
    method = resolve_method(method, epsilon=epsilon, gamma=gamma, kappa=kappa)
    target = None if sparsity is None and not counts else Target(sparsity, dict(counts or {}))
    require(target is not None or not method.needs_target,
            f"method {method.name!r} needs a target: pass sparsity=... (or counts=...)")
    names = getattr(method, "layer_names", lambda: set())() | set(counts or ()) | set(layers or ())
    if names:
        _check_layer_names(model, inputs, names)
    if max_memory is not None:
        capture = {**(capture or {}), "max_memory": parse_memory(max_memory)}
    backend = make_backend(backend, address)  # checked, and Ray joined, before any work
    record = dict(method=method.record(), sparsity=sparsity, counts=counts,
                  samples=int(inputs.shape[0]), capture=dict(capture or {}))
    return run_scheme(model, inputs, method.layer_method(mode, target), mode=mode,
                      method_name=method.name, settings=record, batch_size=batch_size,
                      cleanup=cleanup, progress=progress, layers=layers, capture=capture,
                      store=store, backend=backend)


def validate_inputs(model, inputs, mode) -> None:
    """The checks every entry point makes on the model, the calibration inputs and the mode."""
    require(isinstance(model, nn.Module), f"model must be a torch.nn.Module, got {type(model).__name__}")
    require(isinstance(inputs, torch.Tensor) and inputs.ndim >= 2 and inputs.shape[0] > 0,
            "inputs must be a non-empty tensor of samples, shape (P, ...)")
    require(inputs.is_floating_point(), f"inputs must be floating point, got {inputs.dtype}")
    require(inputs.device.type != "meta", "inputs are on the meta device (no values): pass real tensors")
    require(bool(torch.isfinite(inputs).all()), "inputs contain NaN or Inf")
    for name, p in [*model.named_parameters(), *model.named_buffers()]:
        require(p.device.type != "meta", f"'{name}' of the model is on the meta device (no values): "
                                         "load its weights first")
    for name, p in model.named_parameters():
        require(bool(torch.isfinite(p).all()), f"parameter '{name}' contains NaN or Inf")
    require(mode in MODES, f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def _check_layer_names(model, inputs, names) -> None:
    """One line naming the names that are no prunable layer of ``model``."""
    prunable = [s.name for s in trace_layers(model, inputs[:2])]
    unknown = sorted(set(names) - set(prunable))
    require(not unknown, f"no prunable layer named {', '.join(unknown)}; "
                         f"prunable layers: {', '.join(prunable)}")


__all__ = ["prune", "METHODS"]
