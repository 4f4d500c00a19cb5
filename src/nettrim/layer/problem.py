"""The Net-Trim layer program as a value object, apart from any solver.

Paper notation (Aghasi et al. 2017): inputs ``X`` (N x P), outputs ``Y = relu(W^T X)`` (M x P),
active set ``Omega = {Y > 0}``. In code, samples are rows (the PyTorch convention):
``A`` is ``X^T`` (P x N, with a ones column appended when the layer has a bias) and every
M x P quantity of the paper is stored transposed, P x M.

    minimize   ||U||_1
    subject to ||(U^T X - Y)_Omega||_F <= eps            (one ball, or one per neuron)
               (U^T X)_{Omega^c} <= V_{Omega^c}

Without ReLU (the logits layer) ``Omega`` is every entry and there are no inequalities.

The hinge program (``hinge=True``) charges the inactive entries' excess to the same budget
instead of forbidding it:

    minimize   ||U||_1
    subject to ||(U^T X - Y)_Omega||_F^2 + ||(U^T X - V)_{Omega^c, +}||_F^2 <= eps^2

Its feasible set contains the exact program's, and with V = 0 Proposition 1 still holds:
on Omega (y > 0) |relu(z) - y| <= |z - y|, off Omega relu(z) = (z - 0)_+, so
||relu(U^T X) - Y||_F^2 is at most the left-hand side. It is the tightest convex bound of the
ReLU response error that keeps Omega's equality part; the exact program spends weights keeping
every inactive entry at or below zero, which at high sparsity is what limits it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LayerProblem:
    """One layer's convex program, already validated.

    Attributes:
        A: (P, N') inputs as rows, N' = N + 1 when a ones column carries the bias.
        Y: (P, M) target responses.
        V: (P, M) slack for the inactive entries (zeros in the exact program).
        eps: (M,) per-neuron radii when ``per_neuron``, else a 1-element tensor (the layer ball).
        relu: whether the layer ends in a ReLU (active set + inequalities) or not.
        bias: whether the last column of ``A`` is the ones column.
        per_neuron: one ball per neuron (independent problems) instead of one per layer.
        hinge: the hinge program (see the module docstring) instead of the exact one.
    """

    A: torch.Tensor
    Y: torch.Tensor
    V: torch.Tensor
    eps: torch.Tensor
    relu: bool
    bias: bool
    per_neuron: bool
    hinge: bool = False

    @property
    def active(self) -> torch.Tensor:
        """Boolean (P, M) mask of Omega."""
        if not self.relu:
            return torch.ones_like(self.Y, dtype=torch.bool)
        return self.Y > 0

    @property
    def n_inputs(self) -> int:
        return self.A.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.Y.shape[1]

    def discrepancy(self, U: torch.Tensor) -> torch.Tensor:
        """||(U^T X - Y)_Omega|| per neuron (M,) for U of shape (N', M)."""
        R = (self.A @ U - self.Y) * self.active
        return R.norm(dim=0)

    def violation(self, U: torch.Tensor) -> torch.Tensor:
        """Largest inequality violation max((U^T X - V)_{Omega^c}, 0) per neuron (M,)."""
        if not self.relu:
            return torch.zeros(self.n_outputs, dtype=U.dtype, device=U.device)
        excess = (self.A @ U - self.V).masked_fill(self.active, 0.0)
        return excess.clamp_min(0).amax(dim=0)

    def hinge_residual(self, U: torch.Tensor) -> torch.Tensor:
        """||(U^T X - V)_{Omega^c, +}|| per neuron (M,): the inactive part of the hinge ball."""
        if not self.relu:
            return torch.zeros(self.n_outputs, dtype=U.dtype, device=U.device)
        return (self.A @ U - self.V).masked_fill(self.active, 0.0).clamp_min(0).norm(dim=0)

    def constrained(self, U: torch.Tensor) -> torch.Tensor:
        """Per neuron (M,), the quantity the ball bounds: the discrepancy, or with ``hinge``
        sqrt(discrepancy^2 + hinge residual^2)."""
        disc = self.discrepancy(U)
        if not self.hinge:
            return disc
        return torch.sqrt(disc.square() + self.hinge_residual(U).square())

    def ball_excess(self, disc: torch.Tensor) -> torch.Tensor:
        """How far the discrepancy lies outside the ball(s): per neuron, or the layer total."""
        if self.per_neuron:
            return disc - self.eps
        return disc.norm().reshape(1) - self.eps


def constraints_hold(disc: torch.Tensor, excess: torch.Tensor, eps: torch.Tensor, tol: float,
                     floor: float, *, per_neuron: bool, hinge: bool) -> torch.Tensor:
    """The documented feasibility check, on per-neuron norms (M,).

    ``disc`` holds ||(U^T X - Y)_{Omega_m}|| and ``excess`` ||(U^T X - V)_{Omega_m^c, +}||.
    Exact program: the discrepancy lies in the ball, within eps (1 + tol) + floor, and the
    half-space violations total at most tol eps + floor. Hinge program: sqrt(disc^2 +
    excess^2) lies in the ball (the excess is charged to it, not bounded apart). With
    ``per_neuron`` every neuron against its own eps_m ((M,) bools); else the layer totals
    against the layer's eps (one bool, shape (1,)).
    """
    if hinge:
        disc, excess = torch.sqrt(disc.square() + excess.square()), torch.zeros_like(excess)
    if not per_neuron:
        disc, excess = disc.norm().reshape(1), excess.norm().reshape(1)
    return (disc <= eps * (1 + tol) + floor) & (excess <= tol * eps + floor)


def append_ones(X: torch.Tensor) -> torch.Tensor:
    """[X, 1]: the ones column that turns the bias into the last row of U."""
    return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)


def split_budget(eps: float, Y: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Per-neuron radii eps_m = eps * ||Y_m|| / ||Y||_F, so that sum_m eps_m^2 = eps^2.

    ``Y_m`` is neuron m's response on Omega (the whole column without ReLU). A neuron that
    never fires gets a zero radius and is solved by U_m = 0 in practice.
    """
    norms = (Y * active).norm(dim=0)
    total = norms.norm()
    if float(total) == 0.0:
        return torch.zeros_like(norms)
    return eps * norms / total
