"""Where the independent solves run: in this process (``LocalBackend``) or as Ray tasks
(``RayBackend``), and the split of a per-neuron layer into blocks of output neurons.

A backend has one method, ``map(fn, items, shared)``: ``fn(item, shared)`` for every item,
returned in the order of ``items``. ``run_scheme`` maps the layer method over the layers of a
parallel run (each layer's job is independent once the original network's captures are
taken); a layer with one ball per neuron maps ``trim_layer`` over blocks of its output
neurons (same X, each block its columns of Y and V and its radii). The blocks are a function
of the layer's shape alone, never of the backend, so every backend solves the same programs.

Ray is imported only by ``RayBackend``; nettrim works without it installed.
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Iterable, Iterator, Protocol

import torch

from ..errors import NettrimError, require
from ..layer import trim_layer
from ..layer.problem import split_budget
from ..layer.result import INFEASIBLE, MAX_ITERATIONS, SOLVED, LayerResult

BACKENDS = ("local", "ray")
BLOCK_NEURONS = 128  # the fewest output neurons in a block
INPUTS_PER_NEURON = 8  # and at least N / 8 of them: each ADMM iteration of a block reads X
MAX_BLOCKS = 16


class Backend(Protocol):
    """Runs independent pieces of work: ``map`` yields ``fn(item, shared)`` in item order."""

    name: ClassVar[str]
    in_process: ClassVar[bool]

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable, shared: Any) -> Iterator: ...


@dataclass(frozen=True)
class LocalBackend:
    """The pieces one after the other in this process, with torch's current thread count; an
    item is taken from ``items`` only when the previous answer has been consumed."""

    name: ClassVar[str] = "local"
    in_process: ClassVar[bool] = True

    def map(self, fn, items, shared):
        for item in items:
            yield fn(item, shared)


@dataclass(frozen=True)
class RayBackend:
    """Each piece a Ray task. ``address``: the cluster to join (None: a local Ray with
    os.cpu_count() CPUs, started on first use; a Ray already initialized in this process is
    used as it is). ``max_retries``: times Ray runs a task again whose worker died.
    ``threads``: CPUs (and torch threads) per task; None: the cluster's CPUs over the tasks of
    one map (``_cpu_share``). The solvers' last bits depend on the thread count, so a fixed
    ``threads`` gives the answer of a local run with that many threads, bit for bit."""

    address: str | None = None
    max_retries: int = 1
    threads: int | None = None
    name: ClassVar[str] = "ray"
    in_process: ClassVar[bool] = False

    def __post_init__(self):
        require(self.address is None or isinstance(self.address, str) and self.address.strip(),
                f"address must be a Ray address such as 'host:6379', got {self.address!r}")
        require(isinstance(self.max_retries, int) and not isinstance(self.max_retries, bool)
                and self.max_retries >= 0, f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        require(self.threads is None or isinstance(self.threads, int) and not isinstance(self.threads, bool)
                and self.threads >= 1, f"threads must be an integer >= 1 or None, got {self.threads!r}")

    def connect(self):
        """The ``ray`` module, connected: imported, and initialized unless it already is (then
        ``address``, if any, must be the cluster this process is connected to)."""
        ray = _import_ray()
        if self.address is not None:
            _check_reachable(self.address)
        if not ray.is_initialized():
            _init(ray, self.address)
        elif self.address not in (None, "auto") and "://" not in self.address:
            _check_same_cluster(ray, self.address)
        return ray

    def map(self, fn, items, shared):
        ray = _import_ray()
        if not ray.is_initialized():  # (inside a task, and after make_backend, it is)
            self.connect()
        items = list(items)
        if not items:
            return iter(())
        nodes = _node_cpus(ray)
        threads = self.threads or _cpu_share(nodes, len(items))
        require(threads <= max(nodes, default=0), f"threads={threads} per task, but no Ray node "
                                                  f"has that many CPUs ({max(nodes, default=0):g} at most)")
        task = _remote(ray).options(num_cpus=threads, max_retries=self.max_retries)
        shared_ref = ray.put(shared)  # once, read by every task
        refs = [task.remote(fn, ray.put(item), shared_ref, threads) for item in items]
        return _gather(ray, refs)


def make_backend(backend: str | Backend = "local", address: str | None = None) -> Backend:
    """The backend named ``backend`` ("local" or "ray"), connected; ``address`` only with "ray".
    A ``LocalBackend`` or ``RayBackend`` object is returned as it is (connected)."""
    if isinstance(backend, (LocalBackend, RayBackend)):
        require(address is None, "address goes into RayBackend(address=...) when a backend object is given")
        chosen = backend
    else:
        require(isinstance(backend, str) and backend in BACKENDS,
                f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        require(address is None or backend == "ray",
                f"address names a Ray cluster: it needs backend='ray', got backend={backend!r}")
        chosen = LocalBackend() if backend == "local" else RayBackend(address=address)
    if isinstance(chosen, RayBackend):
        chosen.connect()
    return chosen


def _import_ray():
    """``import ray``, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise NettrimError("backend 'ray' needs Ray, which is not installed: "
                           "pip install 'nettrim[ray]' (or 'ray>=2.9')") from None
    return ray


def _init(ray, address: str | None) -> None:
    """Start a local Ray (``address`` None) or join the cluster at ``address``."""
    import logging

    try:
        if address is None:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except NettrimError:
        raise
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
        where = "start a local Ray" if address is None else f"join the Ray cluster at {address!r}"
        raise NettrimError(f"could not {where}: {_first_line(exc)}") from None


def _check_reachable(address: str) -> None:
    """A TCP connection to ``host:port`` (``ray://`` stripped) within 5 s, so that a wrong
    address fails at once instead of in Ray's long connection retries; "auto" is left to Ray."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    require(sep and host and port.isdigit(),
            f"address must be 'host:port' (or 'ray://host:port', or 'auto'), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise NettrimError(f"cannot reach the Ray cluster at {address!r}: "
                           f"{exc.strerror or type(exc).__name__}") from None


def _check_same_cluster(ray, address: str) -> None:
    """Ray is initialized in this process already: ``address`` must name its cluster."""
    current = ray.get_runtime_context().gcs_address
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    ip = socket.gethostbyname(host)
    require(current in (f"{host}:{port}", f"{ip}:{port}"),
            f"Ray is already initialized in this process, connected to {current}, not {address!r}: "
            f"call ray.shutdown() first, or drop address")


def _node_cpus(ray) -> list[float]:
    """The CPUs of each live node of the cluster."""
    return [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]


def _cpu_share(nodes: list[float], n_tasks: int) -> int:
    """CPUs (and torch threads) per task: the cluster's CPUs over the tasks, at least 1 and at
    most one node's CPUs."""
    return int(max(1, min(sum(nodes) // n_tasks, max(nodes, default=1))))


_REMOTE = {}


def _remote(ray):
    """``_run_task`` as a Ray remote function, registered once per process."""
    if "task" not in _REMOTE:
        _REMOTE["task"] = ray.remote(_run_task)
    return _REMOTE["task"]


def _run_task(fn, item, shared, threads: int):
    """Inside a Ray task: torch uses the task's CPU share, then ``fn(item, shared)``."""
    torch.set_num_threads(threads)
    return fn(item, shared)


def _gather(ray, refs) -> Iterator:
    """The tasks' answers in order; a failed task cancels the others and raises one line."""
    try:
        for i, ref in enumerate(refs):
            yield ray.get(ref)
            refs[i] = None  # the answer belongs to the caller now
    except ray.exceptions.RayTaskError as exc:
        _cancel(ray, refs)
        cause = getattr(exc, "cause", None)
        if isinstance(cause, NettrimError):
            raise NettrimError(str(cause)) from None
        raise NettrimError(f"a Ray task failed: {type(cause or exc).__name__}: "
                           f"{_first_line(cause or exc)}") from None
    except ray.exceptions.RayError as exc:
        _cancel(ray, refs)
        raise NettrimError(f"a Ray task was lost ({type(exc).__name__}: {_first_line(exc)}); "
                           f"nothing was written: run again") from None
    except BaseException:
        _cancel(ray, refs)
        raise


def _cancel(ray, refs) -> None:
    for ref in refs:
        if ref is not None:
            try:
                ray.cancel(ref)
            except Exception:  # already finished or gone
                pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def neuron_blocks(n_outputs: int, n_inputs: int) -> list[tuple[int, int]]:
    """Contiguous blocks [lo, hi) of a layer's output neurons, sizes within one of each
    other: as many as fit blocks of max(128, n_inputs / 8) neurons, 1 to 16 of them. Every
    ADMM iteration of a block reads the layer's (P, N) and (N, N) matrices whatever its width,
    so a block is kept wide against N (docs/distributed.md has the measured cost)."""
    least = max(BLOCK_NEURONS, math.ceil(n_inputs / INPUTS_PER_NEURON))
    n = max(1, min(MAX_BLOCKS, n_outputs // least))
    bounds = [i * n_outputs // n for i in range(n + 1)]
    return list(zip(bounds, bounds[1:]))


def solve_neuron_blocks(backend: Backend, X: torch.Tensor, Y: torch.Tensor,
                        epsilon: float | torch.Tensor, *, V=None, relu: bool = True,
                        warm_start=None, **options) -> LayerResult:
    """``trim_layer(X, Y, epsilon, per_neuron=True, ...)`` solved block by block of output
    neurons (``neuron_blocks``) on ``backend`` and put back together. A float ``epsilon`` is
    split over the neurons as ``trim_layer`` splits it (``split_budget``); the radii of a block
    are its slice. ``options``: the other keywords of ``trim_layer``."""
    dt = (options.get("settings") or _default_settings()).dtype
    if isinstance(epsilon, torch.Tensor) and epsilon.ndim == 1:
        radii, total = epsilon, float(epsilon.double().norm())
    else:
        Yt = Y.to(dt)
        active = Yt > 0 if relu else torch.ones_like(Yt, dtype=torch.bool)
        radii, total = split_budget(float(epsilon), Yt, active), float(epsilon)
    blocks = neuron_blocks(Y.shape[1], X.shape[1])
    shared = dict(X=X, Y=Y, V=V, radii=radii, warm_start=warm_start,
                  options=dict(options, relu=relu, per_neuron=True))
    parts = list(backend.map(_solve_block, blocks, shared))
    return merge_blocks(parts, total)


def _default_settings():
    from ..layer import ADMMSettings

    return ADMMSettings()


def _solve_block(block: tuple[int, int], shared: dict) -> LayerResult:
    """``trim_layer`` on the output neurons [lo, hi) of ``shared``'s layer."""
    lo, hi = block
    cols = lambda t: None if t is None else t[:, lo:hi].contiguous()
    warm = shared["warm_start"]
    if warm is not None:
        weight, bias = warm[0], warm[1] if len(warm) > 1 else None
        warm = (weight[lo:hi].contiguous(), None if bias is None else bias[lo:hi].contiguous())
    return trim_layer(shared["X"], cols(shared["Y"]), shared["radii"][lo:hi].contiguous(),
                      V=cols(shared["V"]), warm_start=warm, **shared["options"])


def merge_blocks(parts: list[LayerResult], epsilon: float) -> LayerResult:
    """One layer's ``LayerResult`` from its blocks' (in neuron order): weights stacked, norms
    over neurons combined as root sums of squares, the worst status, the most iterations, the
    seconds summed and rho the median of the blocks' medians; ``epsilon`` the layer's total."""
    if len(parts) == 1:
        return replace(parts[0], epsilon=epsilon)
    rss = lambda name: math.sqrt(sum(getattr(p, name) ** 2 for p in parts))
    statuses = {p.status for p in parts}
    status = INFEASIBLE if INFEASIBLE in statuses else SOLVED if statuses == {SOLVED} else MAX_ITERATIONS
    biases = [p.bias for p in parts]
    return LayerResult(
        weight=torch.cat([p.weight for p in parts]),
        bias=None if biases[0] is None else torch.cat(biases),
        status=status, iterations=max(p.iterations for p in parts),
        discrepancy=rss("discrepancy"), epsilon=epsilon,
        max_violation=max(p.max_violation for p in parts), tolerance=parts[0].tolerance,
        seconds=sum(p.seconds for p in parts), nnz=sum(p.nnz for p in parts),
        per_neuron_discrepancy=torch.cat([p.per_neuron_discrepancy for p in parts]),
        hinge_residual=rss("hinge_residual"), within=all(p.within for p in parts),
        primal_residual=rss("primal_residual"), dual_residual=rss("dual_residual"),
        rho=float(torch.tensor([p.rho for p in parts]).median()))


def solve_job(job, method) -> tuple[Any, float]:
    """A layer method on one job (a map function of ``run_scheme``): (outcome, seconds)."""
    start = time.perf_counter()
    outcome = method(job)
    return outcome, time.perf_counter() - start
