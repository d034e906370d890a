"""Power-function EMA of network weights (Karras et al. 2024, EDM2).

At training step k (1-based) the average is updated as
    ema ← β_k·ema + (1 − β_k)·θ,   β_k = (1 − 1/k)^(γ + 1),
which gives an average whose profile over past steps is a power function t^γ. γ is set by the
relative standard deviation σ_rel of that profile: the largest real root of
    γ³ + 7γ² + (16 − σ_rel⁻²)γ + (12 − σ_rel⁻²) = 0.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    if not 0 < sigma_rel < 0.3:
        raise ValueError(f"sigma_rel must be in (0, 0.3), got {sigma_rel}")
    s = sigma_rel ** -2
    roots = np.roots([1.0, 7.0, 16.0 - s, 12.0 - s])
    return float(roots[np.isreal(roots)].real.max())


def gamma_to_sigma_rel(gamma: float) -> float:
    """Closed form of the inverse: σ_rel = sqrt((γ+1) / ((γ+2)²(γ+3)))."""
    return float(np.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))))


class PowerEMA:
    """Power-function EMA of a network's parameters and buffers (an eval-mode copy)."""

    def __init__(self, net: nn.Module, sigma_rel: float = 0.05) -> None:
        self.sigma_rel = float(sigma_rel)
        self.gamma = sigma_rel_to_gamma(self.sigma_rel)
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.num_updates = 0

    def beta(self, step: int) -> float:
        return (1.0 - 1.0 / step) ** (self.gamma + 1) if step > 0 else 0.0

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.num_updates += 1
        b = self.beta(self.num_updates)
        for p_ema, p in zip(self.net.parameters(), net.parameters(), strict=True):
            p_ema.lerp_(p.detach(), 1.0 - b)
        for b_ema, b_net in zip(self.net.buffers(), net.buffers(), strict=True):
            b_ema.copy_(b_net)

    def state_dict(self) -> dict:
        return {"sigma_rel": self.sigma_rel, "num_updates": self.num_updates,
                "weights": self.net.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if abs(float(state["sigma_rel"]) - self.sigma_rel) > 1e-12:
            raise ValueError(f"EMA state has sigma_rel {state['sigma_rel']}, expected {self.sigma_rel}")
        self.num_updates = int(state["num_updates"])
        self.net.load_state_dict(state["weights"])
