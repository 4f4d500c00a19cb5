"""A layer's calibration data as streamed statistics: what its program needs, batch by batch.

A layer sees rows ``a_p = [x_p, 1]`` (the ones entry when it has a bias, so N' = N + 1) and
has targets ``y_p`` (M,): the original network's response (its ReLU output for a ReLU layer,
its pre-activation otherwise). In the papers' notation ``X`` is N' x P with columns a_p and
``Y`` is M x P. The programs need

    G = sum_p a_p a_p^T = X X^T  (N' x N'),   C = sum_p a_p y_p^T = X Y^T  (N' x M),
    t_m = sum_p y_pm^2 = ||Y_m||^2,

accumulated in float64 as the batches stream past (SparseGPT's ``add_batch`` habit): a layer
without its own ReLU (a linear program: the logits, a layer before a GELU or a residual add)
needs nothing else, so its memory and its solver's per-iteration cost do not grow with the
number of calibration rows. A ReLU layer's constraints are per entry (the active set Omega,
the inactive side), so its program also holds the rows themselves (A: R x N', Y: R x M),
either all of them or a seeded uniform sample when a memory budget asks for fewer; G, C and t
then describe exactly the rows held, so that every part of the program speaks of the same rows.

Every ``CHECK_EVERY``-th row (by its order among the layer's rows, the same in every run) is
also summed apart: ``LayerStats.check`` holds the statistics of those rows alone and
``LayerStats.fit()`` those of the others, so that a method can choose among its own settings
on rows it did not fit (the damping of an OBS pass at a count, ``nettrim.solvers.obs_search``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

ROW_CHUNK = 8192  # rows per float64 product when statistics are formed from held rows
CHECK_EVERY = 8  # one row in CHECK_EVERY is also summed into the check statistics


@dataclass(frozen=True)
class LayerStats:
    """One layer's calibration statistics (module docstring).

    Attributes:
        gram: (N', N') float64, G = sum_p a_p a_p^T over the program's rows.
        cross: (N', M) float64, C = sum_p a_p y_p^T.
        target_sq: (M,) float64, t_m = ||Y_m||^2.
        rows: P, the number of rows the statistics cover.
        rows_total: the rows the layer produced on the calibration inputs (P when none were
            left out by sampling).
        bias: whether a_p ends with the ones entry.
        A: (P, N') the rows themselves (computation dtype), or None for a Gram-only program.
        Y: (P, M) their targets, or None.
        check: the statistics of the check rows alone (every CHECK_EVERY-th row; their rows
            held when these are), or None.
    """

    gram: torch.Tensor
    cross: torch.Tensor
    target_sq: torch.Tensor
    rows: int
    rows_total: int
    bias: bool
    A: torch.Tensor | None = None
    Y: torch.Tensor | None = None
    check: "LayerStats | None" = None

    @property
    def n_inputs(self) -> int:
        return self.gram.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.cross.shape[1]

    @property
    def held(self) -> bool:
        """Whether the rows themselves are held (a ReLU program)."""
        return self.A is not None

    @property
    def target_norm(self) -> float:
        """||Y||_F."""
        return float(self.target_sq.sum().sqrt())

    def residual_sq(self, U: torch.Tensor) -> torch.Tensor:
        """Per neuron (M,), ||A u_m - y_m||^2 = u^T G u - 2 u^T c + t, in float64, from the
        statistics alone (clamped at 0 against rounding)."""
        U = U.to(self.gram)
        return ((U * (self.gram @ U)).sum(0) - 2 * (U * self.cross).sum(0) + self.target_sq).clamp_min(0)

    def fit(self) -> "LayerStats":
        """The statistics of the rows that are not check rows (Gram only; rows held when these
        are): what a choice validated on ``check`` is fitted on."""
        c = self.check
        if self.held:
            keep = ~check_mask(self.rows, self.A.device)
            return stats_of_rows(self.A[keep], self.Y[keep], bias=self.bias)
        return LayerStats(self.gram - c.gram, self.cross - c.cross, self.target_sq - c.target_sq,
                          self.rows - c.rows, self.rows_total, self.bias)


def check_mask(rows: int, device=None) -> torch.Tensor:
    """Which of ``rows`` rows are check rows."""
    return torch.arange(rows, device=device) % CHECK_EVERY == CHECK_EVERY - 1


class _Sums:
    """Running G, C, t and row count in float64."""

    def __init__(self):
        self.gram = self.cross = self.target_sq = None
        self.rows = 0

    def add(self, A: torch.Tensor, Y: torch.Tensor) -> None:
        A64, Y64 = A.double(), Y.double()
        if self.gram is None:
            n, m, dev = A.shape[1], Y.shape[1], A.device
            self.gram = torch.zeros(n, n, dtype=torch.float64, device=dev)
            self.cross = torch.zeros(n, m, dtype=torch.float64, device=dev)
            self.target_sq = torch.zeros(m, dtype=torch.float64, device=dev)
        self.gram.addmm_(A64.T, A64)
        self.cross.addmm_(A64.T, Y64)
        self.target_sq += Y64.square().sum(0)
        self.rows += A.shape[0]

    def stats(self, rows_total: int, bias: bool, A=None, Y=None, check=None) -> LayerStats:
        return LayerStats(self.gram, self.cross, self.target_sq, self.rows, rows_total, bias, A, Y, check)


class StatsBuilder:
    """Accumulates :class:`LayerStats` from batches of (inputs X (r, N), targets Y (r, M)).

    ``hold``: keep the rows (a ReLU program), else only G, C, t (and those of the check rows).
    ``dtype``: the dtype the held rows are kept in (the solvers' computation dtype). Rows
    arrive already sampled: the caller passes only the rows the program keeps, and
    ``rows_total`` the rows there were in all.
    """

    def __init__(self, *, bias: bool, hold: bool, dtype: torch.dtype = torch.float32):
        self.bias, self.hold, self.dtype = bias, hold, dtype
        self.all, self.checked = _Sums(), _Sums()
        self.parts_A: list[torch.Tensor] = []
        self.parts_Y: list[torch.Tensor] = []
        self.rows = 0

    def add(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """One batch of rows."""
        A = with_ones(X) if self.bias else X
        if self.hold:
            self.parts_A.append(A.to(self.dtype))
            self.parts_Y.append(Y.to(self.dtype))
        else:
            self.all.add(A, Y)
            pick = (torch.arange(self.rows, self.rows + A.shape[0], device=A.device) % CHECK_EVERY) == CHECK_EVERY - 1
            if bool(pick.any()):
                self.checked.add(A[pick], Y[pick])
        self.rows += A.shape[0]

    def finish(self, rows_total: int | None = None) -> LayerStats:
        """The statistics of every row added (G, C, t formed from the held rows when held)."""
        total = self.rows if rows_total is None else int(rows_total)
        if self.hold:
            A, Y = torch.cat(self.parts_A), torch.cat(self.parts_Y)
            self.parts_A, self.parts_Y = [], []
            return stats_of_rows(A, Y, bias=self.bias, rows_total=total)
        assert self.all.gram is not None, "finish() before any rows"
        check = self.checked.stats(self.checked.rows, self.bias) if self.checked.rows else None
        return self.all.stats(total, self.bias, check=check)


def stats_of_rows(A: torch.Tensor, Y: torch.Tensor, *, bias: bool, rows_total: int | None = None,
                  hold: bool = True, check: bool = True) -> LayerStats:
    """The statistics of rows A (ones column included when ``bias``) and targets Y, formed in
    float64 chunk by chunk; the rows are kept when ``hold``; with ``check`` the check rows'
    statistics too."""
    sums = _Sums()
    for s in range(0, A.shape[0], ROW_CHUNK):
        sums.add(A[s:s + ROW_CHUNK], Y[s:s + ROW_CHUNK])
    if sums.gram is None:  # no rows at all
        sums.add(A.new_zeros(0, A.shape[1]), Y.new_zeros(0, Y.shape[1]))
    sub = None
    mask = check_mask(A.shape[0], A.device)
    if check and bool(mask.any()):
        sub = stats_of_rows(A[mask], Y[mask], bias=bias, hold=hold, check=False)
    total = A.shape[0] if rows_total is None else rows_total
    return sums.stats(total, bias, A if hold else None, Y if hold else None, sub)


def with_ones(X: torch.Tensor) -> torch.Tensor:
    """[X, 1]: the ones column that turns the bias into the last row of U."""
    return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)
