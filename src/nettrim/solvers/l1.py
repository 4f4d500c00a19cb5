"""The l1 route to a support: ADMM on the Net-Trim program, then rounds of reweighted l1.

Round 0 solves the program with the plain l1 objective; each further round (Candes, Wakin,
Boyd 2008) solves it again with weights w_ij = 1 / (|U_ij| + delta), delta a tenth of the mean
|U| of the non-zeros, normalised to mean 1 (group l1: t_g = sqrt(|g|) / (||U_g|| + delta),
scaled to the mean of sqrt(|g|)), each round a convex Net-Trim program, sparser at the same
eps. Rounds whose answer only serves as a support (every round before the last, and the last
too when the values are refit afterwards) stop at the looser ``support_rel_tol`` or once
their support has settled; a refit answer that does not certify is solved again at
``rel_tol`` from the refit values (``l1_support``).
"""
from __future__ import annotations

import torch

from ..program import LayerProblem, Penalty
from ..status import Status
from .admm import ADMMSettings, Progress, Solution, solve
from .refit import refit


def reweighted_l1(problem: LayerProblem, settings: ADMMSettings, *, rounds: int, start=None,
                  penalty: Penalty = Penalty(), loose_last: bool = False,
                  progress: Progress | None = None) -> Solution:
    """ADMM then ``rounds`` reweighted rounds (module docstring); iterations summed."""
    out = solve(problem, settings, start=start, penalty=penalty, support_only=bool(rounds) or loose_last,
                progress=progress)
    iterations = out.info.iterations
    for r in range(rounds):
        if out.info.status == Status.INFEASIBLE:
            break
        last = r == rounds - 1
        penalty = _reweighted(out.U, penalty)
        out = solve(problem, settings, start=out.U, penalty=penalty,
                    support_only=not last or loose_last, progress=progress)
        iterations += out.info.iterations
    out.info.iterations = iterations
    return out


def l1_support(problem: LayerProblem, settings: ADMMSettings, *, rounds: int,
               refit_on: LayerProblem | None = None, start=None, penalty: Penalty = Penalty(),
               progress: Progress | None = None) -> Solution:
    """The l1 route: ``reweighted_l1`` on ``problem`` (the exact program), then, with
    ``refit_on`` (the same program under the claim it is certified by, the hinge ball for a
    ReLU layer), the values refit on the support; a refit that does not certify after loose
    solves is solved again at ``settings.rel_tol`` from the refit values and refit again."""
    out = reweighted_l1(problem, settings, rounds=rounds, start=start, penalty=penalty,
                        loose_last=refit_on is not None, progress=progress)
    if refit_on is None or out.info.status == Status.INFEASIBLE:
        return out
    values = refit(refit_on, out.U)
    if not refit_on.certified(values) and settings.support_rel_tol is not None:
        again = reweighted_l1(problem, settings.replace(support_rel_tol=None), rounds=rounds,
                              start=values, penalty=penalty, progress=progress)
        again.info.iterations += out.info.iterations
        out, values = again, refit(refit_on, again.U)
    return Solution(values, out.info, out.converged)


def _reweighted(U: torch.Tensor, penalty: Penalty) -> Penalty:
    """The next round's penalty from the current answer (module docstring)."""
    if penalty.grouped:
        ids = penalty.groups
        inside = ids >= 0
        base = torch.bincount(ids[inside], minlength=len(penalty.group_weights)).double().sqrt()
        norms = torch.zeros_like(base).index_add_(0, ids[inside], U[inside].double().square().sum(1)).sqrt()
        nonzero = norms[norms > 0]
        delta = 0.1 * float(nonzero.mean()) if nonzero.numel() else 1.0
        t = base / (norms + delta)
        return Penalty(groups=ids, group_weights=t * (base.mean() / t.mean()))
    nonzero = U[U != 0]
    delta = 0.1 * float(nonzero.abs().mean()) if nonzero.numel() else 1.0
    w = 1.0 / (U.abs() + delta)
    return Penalty(weights=w / w.mean())


def group_penalty(groups: torch.Tensor, bias: bool) -> Penalty:
    """The group-l1 penalty of a layer's (N,) input groups: ids renumbered 0..G-1, the bias row
    in no group (-1), t_g = sqrt(|g|)."""
    ids = groups.long()
    uniq, inverse = torch.unique(ids, return_inverse=True)
    ids = torch.cat([inverse, inverse.new_full((1,), -1)]) if bias else inverse
    sizes = torch.bincount(inverse, minlength=len(uniq)).double()
    return Penalty(groups=ids, group_weights=sizes.sqrt())
