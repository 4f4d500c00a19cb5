"""The constraint of a layer program, and the one definition of *certified*.

For weights U (N' x M, the last row the bias), rows A, targets Y, slack V and active set
Omega = {Y > 0} (every entry for a linear program), neuron m has

    d_m = ||(A u_m - y_m)_{Omega_m}||,          h_m = ||(A u_m - v_m)_{Omega_m^c, +}||,

measured in float64 on the returned weights. The ball is one per layer (radius eps on the
root sum of squares over neurons) or one per neuron (eps_m). Three inactive sides:

* ``"none"``: a linear program (no ReLU of its own): h = 0; the claim bounds the layer's
  pre-activation, and an activation after it moves at most its Lipschitz constant times that.
* ``"halfspace"``: the exact program (U^T X)_{Omega^c} <= V: d within the ball and the
  inactive excess h at most tol eps (the solver's feasibility tolerance);
* ``"hinge"``: the hinge ball sqrt(d^2 + h^2) <= eps, for which Proposition 1 still holds
  with V = 0 (||relu(U^T X) - Y||_F^2 <= d^2 + h^2).

A layer is **certified** when its measurement satisfies the ball to within ``tol`` and a
floating-point floor of FLOOR ||Y||_F (:meth:`Constraint.holds`): this is the only place the
rule is written; the solvers' stopping checks, the reports, the network bound and
``nettrim verify`` all call it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FLOOR = 1e-6  # relative to ||Y||_F: the rounding every certified check allows
INACTIVE = ("none", "halfspace", "hinge")


@dataclass(frozen=True)
class Measurement:
    """Per neuron (M,) float64: discrepancy d_m and inactive excess h_m; ``target_norm`` is
    ||Y||_F of the same rows."""

    discrepancy: torch.Tensor
    excess: torch.Tensor
    target_norm: float

    @property
    def d(self) -> float:
        return float(self.discrepancy.norm())

    @property
    def h(self) -> float:
        return float(self.excess.norm())


@dataclass(frozen=True)
class Constraint:
    """The ball(s) and the inactive side of one layer program (module docstring).

    Attributes:
        eps: (M,) radii eps_m with ``per_neuron``, else (1,) the layer's radius; absolute.
        per_neuron: one ball per neuron.
        inactive: "none", "halfspace" or "hinge".
        tol: relative feasibility tolerance of the claim.
    """

    eps: torch.Tensor
    per_neuron: bool
    inactive: str
    tol: float = 1e-3

    @property
    def radius(self) -> float:
        """The layer's eps: the root sum of squares of the per-neuron radii, or the one radius."""
        return float(self.eps.double().norm())

    def bounded(self, m: Measurement) -> torch.Tensor:
        """Per ball, the quantity the ball bounds: d (or sqrt(d^2 + h^2) for the hinge ball),
        per neuron with ``per_neuron`` ((M,)), else the layer total ((1,))."""
        d = m.discrepancy
        if self.inactive == "hinge":
            d = torch.sqrt(d.square() + m.excess.square())
        return d if self.per_neuron else d.norm().reshape(1)

    def excess(self, m: Measurement) -> torch.Tensor:
        """Per ball, the inactive excess the exact program bounds apart (zeros otherwise)."""
        h = m.excess if self.inactive == "halfspace" else torch.zeros_like(m.excess)
        return h if self.per_neuron else h.norm().reshape(1)

    def floor(self, target_norm: float) -> float:
        return FLOOR * target_norm + 1e-12

    def holds_each(self, m: Measurement) -> torch.Tensor:
        """Per ball, whether it holds: bounded <= eps (1 + tol) + floor and, for the exact
        program, excess <= tol eps + floor."""
        eps, floor = self.eps.to(m.discrepancy), self.floor(m.target_norm)
        return (self.bounded(m) <= eps * (1 + self.tol) + floor) & (self.excess(m) <= self.tol * eps + floor)

    def holds(self, m: Measurement) -> bool:
        """**Certified**: every ball holds (``holds_each``)."""
        return bool(self.holds_each(m).all())

    def certified_radius(self, target_norm: float) -> float:
        """The most ||act(U^T X) - Y||_F a certified layer can have (Proposition 1 with the
        tolerances): eps (1 + 2 tol) + 2 floor, what the network bound takes per layer."""
        return self.radius * (1 + 2 * self.tol) + 2 * self.floor(target_norm)

    @property
    def claim(self) -> str:
        """The claim in words, as reports and ``verify`` print it."""
        if self.inactive == "hinge":
            return "sqrt(d^2 + h^2) <= eps (1 + tol)"
        if self.inactive == "halfspace":
            return "d <= eps (1 + tol) and h <= tol eps"
        return "d <= eps (1 + tol), pre-activation"

    def limit(self, target_norm: float) -> float:
        """The layer total the claim allows: eps (1 + tol) + floor."""
        return self.radius * (1 + self.tol) + self.floor(target_norm)

    def total(self, m: Measurement) -> float:
        """The layer total of the bounded quantity (for reports)."""
        d, h = m.d, m.h
        return math.hypot(d, h) if self.inactive == "hinge" else d
