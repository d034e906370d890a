"""Exploration for continuous flows: gradient guidance on surrogate uncertainty (DPS style).

At each Euler–Maruyama step the sampler adds the control
    u(x_t, t) = w(t)·λ·∇_{x_t} r(x̂1(x_t, t)),   r(x) = σ(φ(x)) + mean_weight·μ(φ(x)),
where x̂1 = x_t + (1 − t)·v_θ(x_t, t) is the endpoint prediction, so the gradient passes through the
velocity network and then the representation. λ = 1/β trades reward against staying close to the
model (KL); w(t) is the sampler's diffusion coefficient g(t) (``weighting="g"``, as in the
reference implementation) or 1 (``"constant"``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowdisco.expand.representation import Representation
from flowdisco.expand.surrogates import Surrogate
from flowdisco.flow.path import expand_time
from flowdisco.flow.solvers import GuidanceState

WEIGHTINGS = ("g", "constant")


class UncertaintyGuidance:
    """A guidance hook for :func:`flowdisco.flow.solvers.solve_sde` (see module docstring)."""

    def __init__(self, representation: Representation, surrogate: Surrogate, strength: float,
                 weighting: str = "g", mean_weight: float = 0.0, generator: torch.Generator | None = None,
                 max_norm: float | None = None) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown guidance weighting {weighting!r}; available: {', '.join(WEIGHTINGS)}")
        self.rep = representation
        self.surrogate = surrogate
        self.strength = float(strength)
        self.weighting = weighting
        self.mean_weight = float(mean_weight)
        self.generator = generator
        self.max_norm = max_norm
        self.last_reward: float | None = None  # mean r(x̂1) at the latest step (for logs and diagnostics)

    def fork(self, generator: torch.Generator) -> UncertaintyGuidance:
        """The same guidance drawing its φ-noise from ``generator`` (one per chunk of designs, so a
        chunk's samples do not depend on which process draws it or what was drawn before)."""
        return UncertaintyGuidance(self.rep, self.surrogate, self.strength, self.weighting, self.mean_weight,
                                   generator, self.max_norm)

    def reward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """r(x) [B] of designs x [B, *shape] (differentiable)."""
        return self.surrogate.reward(self.rep(x, mask, self.generator), self.mean_weight)

    def __call__(self, state: GuidanceState) -> Tensor:
        r = self.reward(state.x1_hat, state.mask)
        self.last_reward = float(r.detach().mean())
        (grad,) = torch.autograd.grad(r.sum(), state.x)
        w = state.g if self.weighting == "g" else torch.ones_like(state.g)
        u = self.strength * expand_time(w.to(grad.dtype), grad) * grad
        if self.max_norm is not None:  # optional safety cap on the per-design control norm
            n = u.reshape(u.shape[0], -1).norm(dim=1).clamp_min(1e-12)
            u = u * expand_time((self.max_norm / n).clamp(max=1.0), u)
        return u
