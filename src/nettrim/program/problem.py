"""The Net-Trim layer program as a value object, built from streamed statistics.

Paper notation (Aghasi et al. 2017): inputs ``X`` (N' x P, a ones row for the bias), targets
``Y = relu(W^T X)`` (M x P), active set ``Omega = {Y > 0}``. In code samples are rows:
``A = X^T`` (P x N') and every M x P quantity is stored transposed, P x M.

    minimize   penalty(U)                                (||U||_1, weighted or group l1)
    subject to ||(U^T X - Y)_Omega||_F <= eps            (one ball, or one per neuron)
               (U^T X)_{Omega^c} <= V_{Omega^c}          (or charged to the ball: hinge)

V = relu(Z) + theta min(Z, 0) with Z = W^T X the original weights on the layer's inputs
(``theta = 1`` is the cascade program's V = W^T Xhat, ``None`` gives V = 0). A layer without
its own ReLU (the linear program) has Omega = everything and no inactive side: its program
needs only the Gram statistics G, C, t of :mod:`nettrim.program.stats`; a ReLU layer's
program holds its rows.

The hinge program charges the inactive entries' excess to the same budget,
||(U^T X - Y)_Omega||_F^2 + ||(U^T X - V)_{Omega^c,+}||_F^2 <= eps^2; its feasible set contains
the exact program's, and with V = 0 Proposition 1 still holds: on Omega (y > 0)
|relu(z) - y| <= |z - y|, off Omega relu(z) = (z - 0)_+.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import torch

from .constraint import Constraint, Measurement
from .stats import ROW_CHUNK, LayerStats


def slack(Z: torch.Tensor, theta: float | None) -> torch.Tensor | None:
    """V = relu(Z) + theta min(Z, 0) for the original pre-activation Z, or None (V = 0) when
    ``theta`` is None: the inactive entries stay below theta times their original (negative)
    value; theta = 1 gives V = Z."""
    return None if theta is None else torch.relu(Z) + theta * Z.clamp(max=0)


@dataclass(frozen=True)
class LayerProblem:
    """One layer's program (module docstring).

    Attributes:
        stats: the layer's calibration statistics (rows held for a ReLU program).
        constraint: the ball(s) and the inactive side.
        weight: (N', M) the original weights as U (bias last row): V is computed from them,
            and solvers may start from them.
        relu: the layer ends in its own ReLU (active set and inactive side).
        theta: the slack margin of V, None for V = 0.
    """

    stats: LayerStats
    constraint: Constraint
    weight: torch.Tensor
    relu: bool
    theta: float | None = None

    def __post_init__(self):
        assert not self.relu or self.stats.held, "a ReLU program needs its rows"

    @property
    def n_inputs(self) -> int:
        return self.stats.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.stats.n_outputs

    @property
    def A(self) -> torch.Tensor:
        return self.stats.A

    @property
    def Y(self) -> torch.Tensor:
        return self.stats.Y

    @cached_property
    def active(self) -> torch.Tensor:
        """Boolean (P, M) mask of Omega (held rows only)."""
        return self.Y > 0 if self.relu else torch.ones_like(self.Y, dtype=torch.bool)

    @cached_property
    def V(self) -> torch.Tensor:
        """(P, M) slack of the inactive entries (zeros for V = 0; held rows only)."""
        if not self.relu:
            return torch.zeros_like(self.Y)
        V = slack(self.A @ self.weight.to(self.A), self.theta)
        return torch.zeros_like(self.Y) if V is None else V

    def with_eps(self, eps: torch.Tensor) -> "LayerProblem":
        return replace(self, constraint=replace(self.constraint, eps=eps))

    def measure(self, U: torch.Tensor) -> Measurement:
        """d_m and h_m of weights U (N', M), in float64 (on the held rows, else from G, C, t)."""
        norm = self.stats.target_norm
        if not self.stats.held:
            d = self.stats.residual_sq(U).sqrt()
            return Measurement(d, torch.zeros_like(d), norm)
        U64 = U.double()
        d2 = torch.zeros(self.n_outputs, dtype=torch.float64, device=U.device)
        h2 = torch.zeros_like(d2)
        for s in range(0, self.A.shape[0], ROW_CHUNK):
            rows = slice(s, s + ROW_CHUNK)
            Z = self.A[rows].double() @ U64
            on = self.active[rows]
            d2 += ((Z - self.Y[rows].double()) * on).square().sum(0)
            if self.relu:
                h2 += (Z - self.V[rows].double()).masked_fill(on, 0).clamp_min(0).square().sum(0)
        return Measurement(d2.sqrt(), h2.sqrt(), norm)

    def certified(self, U: torch.Tensor) -> bool:
        """Whether U is certified for this program (``Constraint.holds``)."""
        return self.constraint.holds(self.measure(U))
