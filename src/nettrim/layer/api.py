"""``trim_layer``: the public entry point for one layer, with validation at the boundary."""
from __future__ import annotations

import math
import time
from dataclasses import replace

import torch

from ..errors import NettrimError, require
from .admm import ADMMSettings, Progress, solve_admm
from .refit import refit_on_support
from .problem import LayerProblem, append_ones, constraints_hold, split_budget
from .result import INFEASIBLE, MAX_ITERATIONS, SOLVED, LayerResult


def trim_layer(
    X: torch.Tensor,
    Y: torch.Tensor,
    epsilon: float | torch.Tensor,
    *,
    V: torch.Tensor | None = None,
    relu: bool = True,
    bias: bool = True,
    per_neuron: bool = False,
    settings: ADMMSettings | None = None,
    warm_start: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    reweight: int = 0,
    refit: bool = False,
    hinge: bool = False,
    support_only: bool = False,
    solve_rows: int | None = None,
    progress: Progress | None = None,
    groups: torch.Tensor | None = None,
) -> LayerResult:
    """Solve the Net-Trim program for one layer.

        minimize ||U||_1  s.t.  ||(U^T X - Y)_Omega||_F <= epsilon,  (U^T X)_{Omega^c} <= V

    Args:
        X: (P, N) layer inputs, samples as rows.
        Y: (P, M) original layer outputs (after the ReLU when ``relu``).
        epsilon: ABSOLUTE tolerance, the paper's eps. With ``per_neuron`` it is split as
            eps_m = epsilon ||Y_m|| / ||Y||_F (same layer total, independent neurons), or it
            is an (M,) tensor of the radii eps_m themselves.
        V: (P, M) slack on the inactive entries; None means zeros (the exact program, for
            which Proposition 1 gives ||relu(U^T X) - Y||_F <= epsilon).
        relu: False for a layer without ReLU (the logits): sparse least squares.
        bias: append a ones row to X; the bias is then pruned like any weight.
        per_neuron: one ball per neuron instead of one for the layer.
        settings: ADMM settings.
        warm_start: (weight (M, N), bias (M,) or None) to start from, e.g. the original layer.
        reweight: extra rounds of reweighted l1 (Candes, Wakin, Boyd 2008), each a convex
            Net-Trim program with weights 1 / (|U| + delta); sparser at the same epsilon.
        hinge: solve the hinge program instead (``problem.py``): the inactive entries' excess
            ||(U^T X - V)_{Omega^c,+}|| shares the ball with the discrepancy, so
            sqrt(discrepancy^2 + hinge_residual^2) <= epsilon; Proposition 1 still holds for
            V = 0, and it is sparser at the same epsilon.
        support_only: the caller uses only the support of the answer (its values are set
            afterwards): every solve stops at ``settings.support_rel_tol`` or once its support
            has settled. ``refit`` implies it.
        solve_rows: with ``refit``, choose the support on at most this many rows of X (drawn
            with a fixed seed; each ball scaled by the ratio of its target's norm on them to
            its norm on all rows), then refit the values and measure the constraints on every
            row. The ADMM iterations cost O(P N M); the refit and the measurement are cheap
            in P, so a large calibration set is used where it decides the answer.
        progress: called as progress(iteration, neurons done, neurons total).
        groups: (N,) integer group of each input feature (column of X): the objective becomes
            the group l1 norm sum_g sqrt(|g|) ||U_g||_F over the rows of U in group g (all M
            outputs; |g| its number of rows), so an input is kept or dropped by every neuron
            at once (structured Net-Trim, docs/structured.md). The bias row is in no group:
            it is not penalized. ``reweight`` then reweights the groups, 1 / (||U_g|| + delta).
    """
    settings = settings or ADMMSettings()
    _validate(X, Y, V, epsilon, relu, warm_start, per_neuron)
    group_ids = None if groups is None else _group_ids(groups, X.shape[1], bias)
    start = time.perf_counter()
    dev, dt = X.device, settings.dtype
    A = append_ones(X.to(dt)) if bias else X.to(dt)
    Yt = Y.to(dt)
    Vt = torch.zeros_like(Yt) if V is None else V.to(dt)
    active = Yt > 0 if relu else torch.ones_like(Yt, dtype=torch.bool)
    if isinstance(epsilon, torch.Tensor) and epsilon.ndim == 1:
        eps, epsilon = epsilon.to(dt).to(dev), float(epsilon.double().norm())
    elif per_neuron:
        eps = split_budget(float(epsilon), Yt, active)
    else:
        eps = torch.tensor([float(epsilon)], dtype=dt, device=dev)
    problem = LayerProblem(A, Yt, Vt, eps, relu, bias, per_neuron, hinge=hinge and relu)
    if not relu:
        fit = _least_squares_if_infeasible(problem)
        if fit is not None:
            return _result(problem, fit, INFEASIBLE, 0, epsilon, settings, start)
    U0 = None if warm_start is None else _stack(warm_start, bias).to(dt)
    solved_on = _row_sample(problem, solve_rows) if refit and solve_rows else problem
    U, out = _solve_on_live_features(solved_on, settings, U0, reweight, progress,
                                     loose_last=refit or support_only, groups=group_ids)
    if refit:
        measured = replace(problem, hinge=problem.relu)  # the refit is certified by the hinge ball
        refitted = refit_on_support(measured, U)
        if not _within_hinge(measured, refitted, settings) and (
                settings.support_rel_tol is not None or solved_on is not problem):
            # the support did not certify (loose solves, or chosen on a sample of the rows):
            # solve again on every row at rel_tol, from the refit values, and refit again
            U, out = _solve_on_live_features(problem, replace(settings, support_rel_tol=None),
                                             refitted, reweight, progress, groups=group_ids)
            refitted = refit_on_support(measured, U)
        problem, U = measured, refitted
    status = SOLVED if bool(out.converged.all()) else MAX_ITERATIONS
    result = _result(problem, U, status, int(out.iterations.max()), epsilon, settings, start)
    result.primal_residual = float(out.primal_residual.norm())
    result.dual_residual = float(out.dual_residual.norm())
    result.rho = float(out.rho.median())
    return result


def _solve_on_live_features(problem, settings, U0, reweight, progress, loose_last=False, groups=None):
    """ADMM on the features that are not identically zero, then reweighted rounds; returns U
    and the last solve's output (its iterations summed over the rounds).

    A feature (column of A) that is zero on every sample leaves every constraint unchanged,
    so its weights are 0 at the optimum: it is dropped before solving (MNIST border pixels).
    With ``settings.support_rel_tol`` every solve that only chooses a support stops at that
    looser relative tolerance: the reweighting rounds before the last, and with ``loose_last``
    (the values are refit afterwards) the last one too.
    """
    live = problem.A.abs().amax(dim=0) > 0
    sub = compress_rows(replace(problem, A=problem.A[:, live]))
    loose = settings if settings.support_rel_tol is None else \
        replace(settings, rel_tol=max(settings.rel_tol, settings.support_rel_tol))
    last = loose if loose_last else settings
    grouped = {} if groups is None else _live_groups(groups[live])
    out = solve_admm(sub, loose if reweight else last,
                     warm_start=None if U0 is None else U0[live], progress=progress,
                     support_only=bool(reweight) or loose_last, **grouped)
    iterations = out.iterations.clone()
    for r in range(reweight):
        if grouped:
            grouped = _reweighted_groups(out.U, grouped)
            out = solve_admm(sub, last if r == reweight - 1 else loose, warm_start=out.U,
                             progress=progress, support_only=r < reweight - 1 or loose_last, **grouped)
            iterations += out.iterations
            continue
        nonzero = out.U[out.U != 0]
        delta = 0.1 * float(nonzero.abs().mean()) if nonzero.numel() else 1.0
        w = 1.0 / (out.U.abs() + delta)
        out = solve_admm(sub, last if r == reweight - 1 else loose, warm_start=out.U,
                         l1_weights=w / w.mean(), progress=progress,
                         support_only=r < reweight - 1 or loose_last)
        iterations += out.iterations
    U = torch.zeros(problem.A.shape[1], problem.Y.shape[1], dtype=out.U.dtype, device=out.U.device)
    U[live] = out.U
    out.iterations = iterations
    return U, out


def _group_ids(groups, n_features: int, bias: bool) -> torch.Tensor:
    """The (N',) group of each row of U: ``groups`` checked, then -1 (no group) for the bias."""
    require(isinstance(groups, torch.Tensor) and groups.shape == (n_features,)
            and not groups.is_floating_point() and not groups.is_complex(),
            f"groups must be an integer tensor with one entry per input feature ({n_features},), "
            f"got {getattr(groups, 'dtype', type(groups).__name__)} {tuple(getattr(groups, 'shape', ()))}")
    require(bool((groups >= 0).all()), "groups must be >= 0 (the bias row is in no group by itself)")
    ids = groups.long()
    return torch.cat([ids, ids.new_full((1,), -1)]) if bias else ids


def _live_groups(groups: torch.Tensor) -> dict:
    """``solve_admm``'s group arguments: ids renumbered 0..G-1 (-1 kept) and t_g = sqrt(|g|)."""
    inside = groups >= 0
    ids = groups.clone()
    uniq, ids[inside] = torch.unique(groups[inside], return_inverse=True)
    sizes = torch.bincount(ids[inside], minlength=len(uniq)).double()
    return {"groups": ids, "group_weights": sizes.sqrt()}


def _reweighted_groups(U: torch.Tensor, grouped: dict) -> dict:
    """Reweighted group l1: t_g = sqrt(|g|) / (||U_g||_F + delta), delta a tenth of the mean
    norm of the non-zero groups, scaled to the mean of sqrt(|g|)."""
    ids = grouped["groups"]
    inside = ids >= 0
    base = torch.bincount(ids[inside], minlength=len(grouped["group_weights"])).double().sqrt()
    norms = torch.zeros_like(base).index_add_(0, ids[inside], U[inside].double().square().sum(1)).sqrt()
    nonzero = norms[norms > 0]
    delta = 0.1 * float(nonzero.mean()) if nonzero.numel() else 1.0
    t = base / (norms + delta)
    return {"groups": ids, "group_weights": t * (base.mean() / t.mean())}


def _stack(warm_start, bias: bool) -> torch.Tensor:
    weight, b = warm_start
    U = weight.T
    if bias:
        col = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device) if b is None else b
        U = torch.cat([U, col.reshape(1, -1)], dim=0)
    return U


def _least_squares_if_infeasible(problem: LayerProblem) -> torch.Tensor | None:
    """Without ReLU the program is feasible iff the least-squares residual is within eps.

    Returns the least-squares U when it is not (so the caller can report how close it gets),
    else None. Uses float64 normal equations with a tiny ridge for rank-deficient inputs.
    """
    A, Y = problem.A.double(), problem.Y.double()
    K = A.T @ A
    K.diagonal().add_(1e-10 * float(K.diagonal().mean()) + 1e-12)
    U = torch.linalg.solve(K, A.T @ Y)
    resid = (A @ U - Y).norm(dim=0)
    slack = 1e-6 * float(Y.norm()) + 1e-12
    excess = problem.ball_excess(resid)
    if bool((excess > slack).any()):
        return U.to(problem.A.dtype)
    return None


def _result(problem, U, status, iterations, epsilon, settings, start) -> LayerResult:
    """Measure the returned U in float64 and package it; downgrade status if the check fails."""
    U64 = U.double()
    p64 = replace(problem, A=problem.A.double(), Y=problem.Y.double(), V=problem.V.double(),
                  eps=problem.eps.double())
    disc = p64.discrepancy(U64)
    viol = p64.violation(U64)
    hinge = p64.hinge_residual(U64) if p64.hinge else torch.zeros_like(disc)
    tol = settings.feasibility_tol
    within = _within(p64, U64, disc, tol)
    if status == SOLVED and not within:
        status = MAX_ITERATIONS
    weight = U[:-1].T.contiguous() if problem.bias else U.T.contiguous()
    b = U[-1].clone() if problem.bias else None
    nnz = int((weight != 0).sum()) + (int((b != 0).sum()) if b is not None else 0)
    return LayerResult(
        weight=weight, bias=b, status=status, iterations=iterations,
        discrepancy=float(disc.norm()), epsilon=float(epsilon), max_violation=float(viol.max()),
        tolerance=tol, seconds=time.perf_counter() - start, nnz=nnz,
        per_neuron_discrepancy=disc.float(), hinge_residual=float(hinge.norm()), within=within)


def _row_sample(problem: LayerProblem, rows: int) -> LayerProblem:
    """``problem`` on ``rows`` of its samples (a seeded draw), each ball scaled by the ratio of
    its target's norm (on Omega) on those rows to its norm on all of them."""
    P = problem.A.shape[0]
    if P <= rows:
        return problem
    pick = torch.randperm(P, generator=torch.Generator().manual_seed(0))[:rows].sort().values
    pick = pick.to(problem.A.device)
    target = problem.Y * problem.active
    part = target[pick]
    if problem.per_neuron:
        ratio = part.norm(dim=0) / target.norm(dim=0).clamp_min(1e-30)
    else:
        ratio = (part.norm() / target.norm().clamp_min(1e-30)).reshape(1)
    return replace(problem, A=problem.A[pick], Y=problem.Y[pick], V=problem.V[pick],
                   eps=problem.eps * ratio.to(problem.eps.dtype))


def compress_rows(problem: LayerProblem) -> LayerProblem:
    """A linear-program layer (no ReLU) with more rows than features, on N' rows instead of P.

    With the reduced QR factorization A = Q R (Q: P x N' with orthonormal columns),
    ||A U - Y||_F^2 = ||R U - Q^T Y||_F^2 + ||(I - Q Q^T) Y||_F^2 for every U, so the ball
    ||A U - Y||_F <= eps is the ball ||R U - Q^T Y||_F <= sqrt(eps^2 - ||(I - Q Q^T) Y||_F^2)
    (per neuron: column by column). Same feasible set, same l1 objective, same solution; an
    ADMM iteration costs O(N'^2 M) instead of O(P N' M). A ReLU layer's constraints are per
    row (Omega, the inequalities) and are left as they are, and so is a ball that does not
    reach the range of A (eps below the residual: the least-squares fit decides that case).
    """
    P, N = problem.A.shape
    if problem.relu or P <= 2 * N:
        return problem
    R, QtY, rest = _range_part(problem.A.double(), problem.Y.double())
    rest = rest if problem.per_neuron else rest.sum().reshape(1)
    radius2 = problem.eps.double().square() - rest
    if not bool((radius2 > 0).all()):
        return problem
    dt = problem.A.dtype
    return replace(problem, A=R.to(dt), Y=QtY.to(dt), V=torch.zeros(N, QtY.shape[1], dtype=dt,
                   device=problem.A.device), eps=radius2.sqrt().to(problem.eps.dtype))


def _range_part(A: torch.Tensor, Y: torch.Tensor):
    """(R, Q^T Y, ||(I - Q Q^T) y_m||^2 per column) for A = Q R: R from the Cholesky factor of
    A^T A (one Gram product, far cheaper than a QR of a tall A), a QR when A^T A is singular."""
    L, info = torch.linalg.cholesky_ex(A.T @ A)
    if int(info) == 0:
        QtY = torch.linalg.solve_triangular(L, A.T @ Y, upper=False)
        return L.T, QtY, (Y.square().sum(0) - QtY.square().sum(0)).clamp_min(0)
    Q, R = torch.linalg.qr(A)
    QtY = Q.T @ Y
    return R, QtY, (Y - Q @ QtY).square().sum(0)


def _within_hinge(problem: LayerProblem, U, settings) -> bool:
    """Whether U meets ``problem``'s constraints to ``settings.feasibility_tol``, in float64."""
    p64 = replace(problem, A=problem.A.double(), Y=problem.Y.double(), V=problem.V.double(),
                  eps=problem.eps.double())
    U64 = U.double()
    return _within(p64, U64, p64.discrepancy(U64), settings.feasibility_tol)


def _within(p64: LayerProblem, U64, disc, tol) -> bool:
    """``constraints_hold`` on the float64 answer (floor 1e-6 ||Y||_F)."""
    floor = 1e-6 * float(p64.Y.norm()) + 1e-12
    excess = p64.hinge_residual(U64)
    return bool(constraints_hold(disc, excess, p64.eps, tol, floor, per_neuron=p64.per_neuron,
                                 hinge=p64.hinge).all())


def _validate(X, Y, V, epsilon, relu, warm_start, per_neuron=False) -> None:
    require(isinstance(X, torch.Tensor) and isinstance(Y, torch.Tensor),
            "X and Y must be torch tensors")
    require(X.ndim == 2 and Y.ndim == 2,
            f"X and Y must be 2-D (samples as rows), got X {tuple(X.shape)} and Y {tuple(Y.shape)}")
    require(X.shape[0] == Y.shape[0],
            f"X has {X.shape[0]} samples (rows) but Y has {Y.shape[0]}: pass them as (P, N) and (P, M)")
    require(X.shape[0] > 0 and X.shape[1] > 0 and Y.shape[1] > 0, "X and Y must not be empty")
    require(X.device.type != "meta" and Y.device.type != "meta",
            "X or Y is on the meta device (no values): pass real tensors")
    require(not X.is_complex() and not Y.is_complex(), f"X and Y must be real, got {X.dtype} and {Y.dtype}")
    require(bool(torch.isfinite(X).all()), "X contains NaN or Inf: clean the layer inputs first")
    require(bool(torch.isfinite(Y).all()), "Y contains NaN or Inf: clean the layer outputs first")
    if isinstance(epsilon, torch.Tensor) and epsilon.ndim == 1:
        require(per_neuron, "a tensor of per-neuron radii needs per_neuron=True")
        require(epsilon.shape == (Y.shape[1],),
                f"per-neuron radii must have shape (M,) = ({Y.shape[1]},), got {tuple(epsilon.shape)}")
        require(bool(torch.isfinite(epsilon).all()) and bool((epsilon >= 0).all())
                and (bool((epsilon > 0).any()) or not bool(Y.any())),
                "per-neuron radii must be finite, >= 0 and not all 0")
        epsilon = float(epsilon.double().norm())
    validate_targets(Y, V, epsilon, relu)
    if warm_start is not None:
        w = warm_start[0]
        require(w.shape == (Y.shape[1], X.shape[1]),
                f"warm-start weight must be (M, N) = {(Y.shape[1], X.shape[1])}, got {tuple(w.shape)}")
        b = warm_start[1] if len(warm_start) > 1 else None
        require(b is None or tuple(b.shape) == (Y.shape[1],),
                f"warm-start bias must be (M,) = ({Y.shape[1]},), got {tuple(getattr(b, 'shape', ()))}")
        require(bool(torch.isfinite(w).all()) and (b is None or bool(torch.isfinite(b).all())),
                "the warm start contains NaN or Inf")


def validate_targets(Y, V, epsilon, relu) -> None:
    """Checks shared by every layer solver: epsilon > 0, Y >= 0 under ReLU, V shaped like Y."""
    try:
        eps = float(epsilon)
    except (TypeError, ValueError):
        raise NettrimError(f"epsilon must be a positive number, got {epsilon!r}") from None
    # eps = 0 only for a target that is zero everywhere (a dead layer: eps = epsilon ||Y|| = 0)
    require(math.isfinite(eps) and (eps > 0 or eps == 0 and not bool(Y.any())),
            f"epsilon must be a positive finite number, got {epsilon}")
    if relu:
        require(bool((Y >= 0).all()),
                "Y has negative entries but relu=True: pass the ReLU output, or relu=False")
    if V is not None:
        require(isinstance(V, torch.Tensor) and V.shape == Y.shape,
                f"V must have Y's shape {tuple(Y.shape)}, got {tuple(getattr(V, 'shape', ()))}")
        require(bool(torch.isfinite(V).all()), "V contains NaN or Inf")
