"""The certificate of one layer, measured: its constraints recomputed on its inputs.

With X the layer's inputs under the scheme, Y the original layer's target, V its slack
(``base.slack`` with the recorded theta; V = 0 when none) and U the returned weights:

    d = ||(U^T X - Y)_Omega||_F        h = ||(U^T X - V)_{Omega^c, +}||_F
    exact program:  d <= eps (1 + tol) + floor   and   h <= tol eps + floor
    hinge ball:     sqrt(d^2 + h^2) <= eps (1 + tol) + floor

with floor = 1e-6 ||Y||_F, the solver's own check (``nettrim.layer.api``). For a layer not
followed by its own ReLU (the linear program: no inactive side, Y = Z its pre-activation) the
claim says so: it bounds the pre-activation, not what the next activation makes of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import LayerJob, slack


@dataclass
class Check:
    """One recomputed claim: ``measured`` must not exceed ``limit``."""

    layer: str  # a layer name, or "network" for the output bound
    claim: str
    measured: float
    limit: float

    @property
    def holds(self) -> bool:
        return self.measured <= self.limit


def check_layer(job: LayerJob, weight: torch.Tensor, bias: torch.Tensor | None, claim: dict,
                Z: torch.Tensor | None = None) -> Check:
    """The layer's claim (``epsilon`` and ``info``: tolerance, hinge, slack_margin) measured for
    the weights (weight, bias) on the job's inputs. ``Z``: the original pre-activation the
    slack V is computed from (default: the job's original weights on its inputs; a layer cut
    to fewer units passes the full-width layer's, restricted to the units it keeps)."""
    Zu = job.responses(weight, bias)[0].double()
    Y = job.Y.double()
    active = job.active
    name = job.spec.name
    V = None
    if job.spec.relu:
        Z = job.responses(job.weight, job.bias)[0] if Z is None else Z
        V = slack(Z.double(), claim["info"].get("slack_margin"))
    V = torch.zeros_like(Y) if V is None else V
    d = float(((Zu - Y) * active).norm())
    h = float((Zu - V).masked_fill(active, 0).clamp_min(0).norm()) if job.spec.relu else 0.0
    eps, tol = float(claim["epsilon"]), float(claim["info"].get("tolerance", 0.0))
    floor = 1e-6 * float(Y.norm()) + 1e-12
    if claim["info"].get("hinge"):
        return Check(name, "sqrt(d^2 + h^2) <= eps (1 + tol)", math.hypot(d, h), eps * (1 + tol) + floor)
    if h > tol * eps + floor:
        return Check(name, "h <= tol eps (inactive side)", h, tol * eps + floor)
    claim_text = "d <= eps (1 + tol)" if job.spec.relu else "d <= eps (1 + tol), pre-activation"
    return Check(name, claim_text, d, eps * (1 + tol) + floor)
