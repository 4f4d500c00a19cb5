"""DC ("smart") pruning, FeTa (Pitas, Davies, Vandergheynst: "FeTa: a DCA pruning algorithm with
generalization error guarantees").

For one layer with inputs a_i = [x_i, 1] (rows of A, P = n samples) and targets y_i (rows of Y),
U = [W^T; b] ((N+1) x M), and the softplus surrogate of the ReLU

    s(z) = log(1 + exp(theta z)) / theta,   s'(z) = sigmoid(theta z),   theta = 10,

FeTa minimizes

    F(U) = (1/n) sum_i ||s(U^T a_i) - y_i||^2 + lambda ||U||_1
         = g(U) - h(U) + (1/n) sum_i ||y_i||^2 + lambda ||U||_1,
    g(U) = (1/n) sum_i sum_m s(u_m^T a_i)^2,   h(U) = (2/n) sum_i sum_m y_im s(u_m^T a_i),

both convex (s >= 0 convex and increasing, y >= 0). DCA (difference of convex algorithm): at
U_k, linearize h, G_k = grad h(U_k) = (2/n) A^T (Y * s'(A U_k)), and solve the convex program

    U_{k+1} = argmin_U  g(U) - <G_k, U> + lambda ||U||_1

by accelerated proximal SVRG (Nitanda 2014): per stage a snapshot U~ and its full gradient
mu = grad g(U~) - G_k, then n / b steps of

    v   = grad g_B(Y_t) - grad g_B(U~) + mu           (minibatch B of b samples)
    X_t = soft_threshold(Y_t - eta v, eta lambda)     (prox of eta lambda ||.||_1)
    Y_t+1 = X_t + beta (X_t - X_t-1)                   (momentum beta = 0.95)

with grad g = (2/n) A^T (s(AU) * s'(AU)). The convex model majorizes F and touches it at U_k,
so a subproblem step that lowers the model lowers F; a step that does not is rejected (U_k is
kept and eta halved), which makes F monotone over the outer iterations.

Without a ReLU (the logits layer) s(z) = z: g and h are quadratic/linear and the subproblem is
a Lasso, solved the same way.

Step size. The paper's eta = 1e-3 is tied to its data scaling. Here eta = min(step, 1 / L^)
with L^ = 2 c lambda_max(A^T A / n), c = max_z (s'^2 + s s'') = 1.045 for the softplus (1 for
the linear map); lambda_max by power iteration. Which one applies depends on the data scale:
on a 785-input layer with pixel-like inputs in [0, 1] (the benchmark of the report) 1 / L^ =
4.1e-3 and 1e-3 is used; larger hidden activations get the cap, which prevents divergence.
``step=None`` uses 1 / L^ (faster per iteration: lower F after the same 4 outer steps).
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..errors import require
from ..status import Status
from .base import LayerJob, LayerOutcome, PruningMethod, Target, method_options
from .lobs import one_thread
from .threshold import keep_count, threshold_layer

Params = tuple[torch.Tensor, torch.Tensor | None]
CURVATURE = 1.05  # max_z s'(z)^2 + s(z) s''(z) for the softplus, any theta (1.0453 at theta z = 3.1)


def dc_layer(weight: torch.Tensor, bias: torch.Tensor | None, X: torch.Tensor, Y: torch.Tensor,
             lam: float, *, relu: bool = True, theta: float = 10.0, outer: int = 4, stages: int = 3,
             batch_size: int = 200, step: float | None = 1e-3, momentum: float = 0.95, seed: int = 0,
             history: list | None = None) -> Params:
    """FeTa on one layer at a fixed lambda, warm-started from the original (weight, bias).

    Args:
        weight (M, N), bias (M,) or None, X (P, N) inputs, Y (P, M) original outputs (>= 0
        after the ReLU when ``relu``). lam: the l1 weight lambda. outer: DCA iterations.
        stages, batch_size, step, momentum: the Acc-Prox-SVRG subproblem solver (see module
        docstring; the step is capped at 1 / L^, ``None`` means 1 / L^). seed: minibatch order.
        history: if a list, F(U) is appended at the start and after every outer iteration.
    Returns new (weight, bias) with exact zeros from the prox.
    """
    A, Yt, U0 = _setup(weight, bias, X, Y, relu)
    cfg = _config(A, relu, theta, outer, stages, batch_size, step, momentum, seed)
    U = _dca(A, Yt, U0, float(lam), cfg, history)
    return _split(U, weight, bias)


def dc_objective(weight: torch.Tensor, bias: torch.Tensor | None, X: torch.Tensor, Y: torch.Tensor,
                 lam: float, *, relu: bool = True, theta: float = 10.0) -> float:
    """F(U) = (1/n) sum_i ||s(U^T a_i) - y_i||^2 + lambda ||U||_1."""
    A, Yt, U = _setup(weight, bias, X, Y, relu)
    return _objective(A, Yt, U, float(lam), relu, float(theta))


def dc_layer_at_sparsity(weight: torch.Tensor, bias: torch.Tensor | None, X: torch.Tensor,
                         Y: torch.Tensor, sparsity: float, *, relu: bool = True, tol: float = 0.01,
                         max_search: int = 12, exact: bool = True, warm_start: bool = False,
                         factor: float = 4.0, **kw) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """FeTa at a target fraction of exact zeros (weights and bias), by a search on lambda.

    lambda starts at the diagonal-model guess lambda0 = 2 mean(diag A^T A / n) q, q the
    ``sparsity`` quantile of |U0|; it is bracketed geometrically (x/÷ ``factor``) and then
    bisected in log space. It stops when the achieved sparsity is within ``tol`` or after
    ``max_search`` solves, keeping the solution closest to the target.

    warm_start: start each solve from the earlier solution whose lambda is closest (in log)
        instead of from the original weights. Off by default: the solver runs a fixed budget
        (outer x stages x n/b steps) and is not converged, so a warm start from a sparser
        solution keeps its zeros and the achieved sparsity stops being monotone in lambda;
        measured on the teacher layers of the tests, 12 solves then missed tol = 0.01 in 3 of
        8 searches, against 0 of 8 (4 to 7 solves) from the original weights. Cold starts also
        make the answer a function of lambda alone.
    exact: if the DC solution still has more non-zeros than k = round(total (1 - sparsity)),
        it is hard-thresholded to exactly k (its smallest |u| dropped, survivors unchanged) so
        that methods compare at equal counts; with fewer non-zeros it is returned as is.

    ``kw`` goes to :func:`dc_layer` (theta, outer, stages, batch_size, step, momentum, seed).
    Returns (weight, bias, info), info = {lambda, sparsity (returned), dc_sparsity (of the DC
    solution), reached (within tol), solves, thresholded}.
    """
    require(0.0 <= float(sparsity) < 1.0, f"sparsity must lie in [0, 1), got {sparsity!r}")
    require(float(tol) >= 0.0 and int(max_search) >= 1, "tol must be >= 0 and max_search >= 1")
    require(float(factor) > 1.0, f"factor must be > 1, got {factor!r}")
    require("history" not in kw, "history is not available in the sparsity search")
    A, Yt, U0 = _setup(weight, bias, X, Y, relu)
    cfg = _config(A, relu, **_solver_kw(kw))
    target = float(sparsity)
    solves = _search(A, Yt, U0, target, cfg, float(tol), int(max_search), float(factor), warm_start)
    lam, U, sp = min(solves, key=lambda s: abs(s[2] - target))
    new_w, new_b = _split(U, weight, bias)
    total = U.numel() if bias is not None else weight.numel()
    keep = keep_count(total, target)
    thresholded = exact and int(torch.count_nonzero(U)) > keep
    if thresholded:
        new_w, new_b = threshold_layer(new_w, new_b, keep, include_bias=True)
    nnz = int(torch.count_nonzero(new_w)) + (0 if new_b is None else int(torch.count_nonzero(new_b)))
    info = {"lambda": lam, "sparsity": 1.0 - nnz / total, "dc_sparsity": sp,
            "reached": abs(sp - target) <= tol, "solves": len(solves), "thresholded": thresholded}
    return new_w, new_b, info


def _search(A, Y, U0, target, cfg, tol, max_search, factor, warm_start):
    """Geometric bracketing then log-space bisection on lambda; returns [(lambda, U, sparsity)]."""
    solves: list[tuple[float, torch.Tensor, float]] = []
    lo = hi = None
    lam = _initial_lambda(A, U0, target)
    while len(solves) < max_search:
        start = U0
        if warm_start and solves:
            start = min(solves, key=lambda s: abs(math.log(s[0] / lam)))[1]
        U = _dca(A, Y, start, lam, cfg, None)
        sp = 1.0 - int(torch.count_nonzero(U)) / U.numel()
        solves.append((lam, U, sp))
        if abs(sp - target) <= tol:
            break
        if sp < target:
            lo = lam
            lam = lam * factor if hi is None else math.sqrt(lo * hi)
        else:
            hi = lam
            lam = lam / factor if lo is None else math.sqrt(lo * hi)
    return solves


def _initial_lambda(A: torch.Tensor, U0: torch.Tensor, target: float) -> float:
    """lambda at which a diagonal quadratic model would zero the ``target`` fraction of U0."""
    curv = 2.0 * float((A * A).mean(dim=0).mean())
    mags = U0.abs().reshape(-1)
    q = float(mags.kthvalue(max(1, math.ceil(target * mags.numel()))).values)
    return max(curv * q, 1e-12)


def _dca(A, Y, U0, lam, cfg, history):
    """DCA outer loop with the monotone safeguard of the module docstring."""
    U, eta = U0.clone(), cfg["eta"]
    if history is not None:
        history.append(_objective(A, Y, U, lam, cfg["relu"], cfg["theta"]))
    for k in range(cfg["outer"]):
        G = _grad_h(A, Y, U, cfg)
        model = lambda V: _g(A, V, cfg) - float((G * V).sum()) + lam * float(V.abs().sum())
        cand = _prox_svrg(A, G, U, lam, eta, cfg, seed=cfg["seed"] + k)
        if model(cand) <= model(U):
            U = cand
        else:
            eta /= 2
        if history is not None:
            history.append(_objective(A, Y, U, lam, cfg["relu"], cfg["theta"]))
    return U


def _prox_svrg(A, G, U0, lam, eta, cfg, seed):
    """Acc-Prox-SVRG on min_U g(U) - <G, U> + lam ||U||_1 from U0 (module docstring)."""
    n, b = A.shape[0], min(cfg["batch"], A.shape[0])
    gen = torch.Generator().manual_seed(int(seed))
    x = U0.clone()
    with _threads_for(b * A.shape[1] * U0.shape[1], A.device):
        for _ in range(cfg["stages"]):
            x_prev, y = x, x
            snap = _inner(A @ x, cfg)  # per-sample s * s' at the snapshot, reused by every batch
            mu = (2.0 / n) * (A.T @ snap) - G
            perm = torch.randperm(n, generator=gen).to(A.device)
            for t in range(max(1, n // b)):
                rows = perm[t * b:(t + 1) * b]
                Ab = A[rows]
                v = (2.0 / rows.numel()) * (Ab.T @ (_inner(Ab @ y, cfg) - snap[rows])) + mu
                x = soft_threshold(y - eta * v, eta * lam)
                y = x + cfg["momentum"] * (x - x_prev)
                x_prev = x
    return x


def _threads_for(work: int, device: torch.device):
    """One intra-op thread when a minibatch product is tiny (< 2^21 multiply-adds), else as set."""
    return one_thread(device) if work < 2**21 else nullcontext()


def soft_threshold(V: torch.Tensor, t: float) -> torch.Tensor:
    """prox of t ||.||_1: sign(v) max(|v| - t, 0), with exact (+0.0) zeros."""
    return torch.where(V.abs() > t, V - t * torch.sign(V), torch.zeros_like(V))


def _s(Z, cfg):
    return F.softplus(Z, beta=cfg["theta"]) if cfg["relu"] else Z


def _inner(Z, cfg):
    """s(Z) * s'(Z), so that grad g = (2/n) A^T _inner(AU)."""
    return F.softplus(Z, beta=cfg["theta"]) * torch.sigmoid(cfg["theta"] * Z) if cfg["relu"] else Z


def _grad_h(A, Y, U, cfg):
    """G = grad h = (2/n) A^T (Y * s'(AU)); (2/n) A^T Y for the linear map."""
    weighted = Y * torch.sigmoid(cfg["theta"] * (A @ U)) if cfg["relu"] else Y
    return (2.0 / A.shape[0]) * (A.T @ weighted)


def _g(A, U, cfg):
    return float((_s(A @ U, cfg) ** 2).sum()) / A.shape[0]


def _objective(A, Y, U, lam, relu, theta):
    cfg = {"relu": relu, "theta": theta}
    return float(((_s(A @ U, cfg) - Y) ** 2).sum()) / A.shape[0] + lam * float(U.abs().sum())


def _lipschitz(A: torch.Tensor, relu: bool, iters: int = 50) -> float:
    """L^ = 2 c lambda_max(A^T A / n) (power iteration), c = CURVATURE with the ReLU, else 1."""
    C = A.T @ A / A.shape[0]
    v = torch.ones(C.shape[0], dtype=C.dtype, device=C.device) / math.sqrt(C.shape[0])
    for _ in range(iters):
        v = C @ v
        v = v / v.norm().clamp_min(1e-30)
    return 2.0 * (CURVATURE if relu else 1.0) * float(v @ (C @ v))


def _solver_kw(kw: dict) -> dict:
    allowed = {"theta", "outer", "stages", "batch_size", "step", "momentum", "seed"}
    bad = sorted(set(kw) - allowed)
    require(not bad, f"unknown DC options: {', '.join(bad)}")
    return kw


def check_options(theta=10.0, outer=4, stages=3, batch_size=200, step=1e-3, momentum=0.95,
                  seed=0) -> None:
    """One-line errors for bad solver options."""
    require(float(theta) > 0, f"theta must be > 0, got {theta!r}")
    require(int(outer) >= 1 and int(stages) >= 1 and int(batch_size) >= 1,
            "outer, stages and batch_size must be positive integers")
    require(step is None or float(step) > 0, f"step must be > 0 or None, got {step!r}")
    require(0.0 <= float(momentum) < 1.0, f"momentum must lie in [0, 1), got {momentum!r}")


def _config(A, relu, theta=10.0, outer=4, stages=3, batch_size=200, step=1e-3, momentum=0.95, seed=0):
    """Validated solver settings with the capped step eta = min(step, 1 / L^)."""
    check_options(theta, outer, stages, batch_size, step, momentum, seed)
    cap = 1.0 / max(_lipschitz(A, relu), 1e-30)
    eta = cap if step is None else min(float(step), cap)
    return {"relu": bool(relu), "theta": float(theta), "outer": int(outer), "stages": int(stages),
            "batch": int(batch_size), "eta": eta, "momentum": float(momentum), "seed": int(seed)}


def _setup(weight, bias, X, Y, relu):
    """Validate; return A = [X, 1] (or X), Y and U0 = [W^T; b] in float32 at least."""
    for name, t in (("weight", weight), ("X", X), ("Y", Y)):
        require(isinstance(t, torch.Tensor) and t.dim() == 2, f"{name} must be a 2-D tensor")
    M, N = weight.shape
    require(X.shape[1] == N, f"X must have {N} columns (weight is {M}x{N}), got {X.shape[1]}")
    require(Y.shape == (X.shape[0], M), f"Y must have shape ({X.shape[0]}, {M}), got {tuple(Y.shape)}")
    require(X.device == weight.device == Y.device, "weight, X and Y must be on the same device")
    if bias is not None:
        require(isinstance(bias, torch.Tensor) and bias.shape == (M,), f"bias must have shape ({M},)")
        require(bias.device == weight.device, "weight and bias must be on the same device")
    dt = torch.promote_types(weight.dtype, torch.float32)
    A = X.to(dt)
    if bias is not None:
        A = torch.cat([A, torch.ones(A.shape[0], 1, dtype=dt, device=A.device)], dim=1)
    U = weight.to(dt).T if bias is None else torch.cat([weight.to(dt).T, bias.to(dt).unsqueeze(0)])
    Yt = Y.to(dt)
    require(bool(torch.isfinite(A).all() & torch.isfinite(Yt).all() & torch.isfinite(U).all()),
            "weights, X and Y must be finite")
    require(not relu or bool((Yt >= 0).all()),
            "Y must be >= 0 for a ReLU layer (pass relu=False for logits)")
    return A, Yt, U.contiguous()


def _split(U: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> Params:
    """U = [W^T; b] back to (weight, bias) in the caller's dtypes."""
    if bias is None:
        return U.T.to(weight.dtype).contiguous(), None
    return U[:-1].T.to(weight.dtype).contiguous(), U[-1].to(bias.dtype).contiguous()


@method_options
class DC(PruningMethod):
    """FeTa DC pruning (softplus surrogate with ``theta``, DCA with ``outer`` steps, each solved
    by accelerated proximal SVRG: ``stages``, minibatch ``batch_size``, ``step``, ``momentum``),
    lambda searched to the target count (within ``tol``, at most ``max_search`` solves)."""

    theta: float = 10.0
    outer: int = 4
    stages: int = 3
    batch_size: int = 200
    step: float | None = 1e-3
    momentum: float = 0.95
    seed: int = 0
    tol: float = 0.01
    max_search: int = 12
    name: ClassVar[str] = "dc"

    def __post_init__(self):
        check_options(self.theta, self.outer, self.stages, self.batch_size, self.step,
                      self.momentum, self.seed)
        require(float(self.tol) >= 0 and int(self.max_search) >= 1,
                "DC.tol must be >= 0 and DC.max_search >= 1")

    def layer_method(self, mode: str, target: Target | None):
        return DCLayer(target, asdict(self))


@dataclass
class DCLayer:
    """The layer method of :class:`DC`."""

    target: Target
    options: dict

    def __call__(self, job: LayerJob) -> LayerOutcome:
        total = job.weight.numel() + (0 if job.bias is None else job.bias.numel())
        sparsity = 1 - self.target.keep(job) / total
        w, b, info = dc_layer_at_sparsity(job.weight, job.bias, job.X, job.Y, sparsity,
                                          relu=job.spec.relu, **self.options)
        status = Status.THRESHOLDED if info["thresholded"] else (
            Status.FITTED if info["reached"] else Status.TARGET_MISSED)
        return LayerOutcome(w, b, status=status, info=info)
