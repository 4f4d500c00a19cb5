"""Reference solver: the same layer program handed to cvxpy (interior point, Clarabel or SCS).

Slow and exact; used by the tests and benchmarks to check that ADMM reaches the optimum.
cvxpy is a development dependency, imported only here.
"""
from __future__ import annotations

import numpy as np
import torch

from .problem import LayerProblem, append_ones, split_budget


def solve_reference(X, Y, epsilon, *, V=None, relu=True, bias=True, per_neuron=False,
                    hinge=False, groups=None, solver: str = "CLARABEL") -> np.ndarray:
    """Exact optimum U (N', M) of the Net-Trim program (or with ``hinge`` the hinge program)
    with the same conventions as trim_layer; with ``groups`` ((N,) group of each input) the
    objective is trim_layer's group l1 norm, sum_g sqrt(|g|) ||U_g||_F, the bias row free."""
    import cvxpy as cp

    A = (append_ones(X.double()) if bias else X.double()).cpu().numpy()
    Yn = Y.double().cpu().numpy()
    Vn = np.zeros_like(Yn) if V is None else V.double().cpu().numpy()
    mask = Yn > 0 if relu else np.ones_like(Yn, dtype=bool)
    eps = (split_budget(epsilon, torch.from_numpy(Yn), torch.from_numpy(mask)).numpy()
           if per_neuron else None)
    U = cp.Variable((A.shape[1], Yn.shape[1]))
    AU = A @ U
    cons, resid = [], []
    for m in range(Yn.shape[1]):
        on, off = np.flatnonzero(mask[:, m]), np.flatnonzero(~mask[:, m])
        r = AU[on, m] - Yn[on, m]
        if hinge and relu and off.size:  # t >= (u^T x - v)_+ keeps the norm DCP
            t = cp.Variable(off.size, nonneg=True)
            cons.append(t >= AU[off, m] - Vn[off, m])
            r = cp.hstack([r, t])
        if per_neuron:
            cons.append(cp.norm(r, 2) <= eps[m])
        else:
            resid.append(r)
        if relu and off.size and not hinge:
            cons.append(AU[off, m] <= Vn[off, m])
    if not per_neuron:
        cons.append(cp.norm(cp.hstack(resid), 2) <= float(epsilon))
    if groups is None:
        objective = cp.sum(cp.abs(U))
    else:
        ids = np.asarray(groups)
        objective = sum(np.sqrt((ids == g).sum()) * cp.norm(U[np.flatnonzero(ids == g), :], "fro")
                        for g in np.unique(ids))
    prob = cp.Problem(cp.Minimize(objective), cons)
    prob.solve(solver=solver)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"reference solver returned {prob.status}")
    return U.value
