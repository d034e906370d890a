"""Power-function EMA of network weights (Karras et al. 2024, EDM2).

At training step k (1-based) the average is updated as
    ema ← β_k·ema + (1 − β_k)·θ,   β_k = (1 − 1/k)^(γ + 1),
which gives an average whose profile over past steps is a power function t^γ. γ is set by the
relative standard deviation σ_rel of that profile: the largest real root of
    γ³ + 7γ² + (16 − σ_rel⁻²)γ + (12 − σ_rel⁻²) = 0.

Post-hoc reconstruction: the EMA at step t with exponent γ averages the weights with the profile
p(τ) = (γ+1)·τ^γ / t^(γ+1) on [0, t]. Snapshots of EMAs stored during training (any steps, any γ)
span a space of such profiles; the EMA for another σ_rel (or end step) is approximated by the
least-squares combination of snapshots whose profile is closest to the target's in L²:
    ⟨p_a, p_b⟩ = (γa+1)(γb+1)·min(ta, tb)^(γa+γb+1) / ((γa+γb+1)·ta^(γa+1)·tb^(γb+1)),
solve A x = b with A_ij = ⟨p_i, p_j⟩, b_i = ⟨p_i, p_target⟩, and average the snapshots with x.
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


def profile_inner(t_a: np.ndarray, g_a: np.ndarray, t_b: np.ndarray, g_b: np.ndarray) -> np.ndarray:
    """L² inner products of power-function EMA profiles (broadcasting over the arguments)."""
    t_a, g_a, t_b, g_b = (np.asarray(v, dtype=np.float64) for v in (t_a, g_a, t_b, g_b))
    m = np.minimum(t_a, t_b)
    return ((g_a + 1) * (g_b + 1) * m ** (g_a + g_b + 1)
            / ((g_a + g_b + 1) * t_a ** (g_a + 1) * t_b ** (g_b + 1)))


def posthoc_coefficients(snapshot_steps: list[int], snapshot_sigma_rels: list[float], target_step: int,
                         target_sigma_rel: float) -> np.ndarray:
    """Weights x of the snapshots whose combination best matches the target EMA profile."""
    t = np.asarray(snapshot_steps, dtype=np.float64)
    g = np.asarray([sigma_rel_to_gamma(s) for s in snapshot_sigma_rels])
    gt = sigma_rel_to_gamma(target_sigma_rel)
    A = profile_inner(t[:, None], g[:, None], t[None, :], g[None, :])
    b = profile_inner(t, g, float(target_step), gt)
    x, *_ = np.linalg.lstsq(A, b, rcond=None)
    return x


def posthoc_reconstruct(snapshots: list[dict[str, torch.Tensor]], coefficients: np.ndarray) -> dict[str, torch.Tensor]:
    """Σ_i x_i·θ_i over snapshot state dicts (float tensors; others taken from the last snapshot)."""
    out = {}
    for k, last in snapshots[-1].items():
        if last.is_floating_point():
            out[k] = sum(float(c) * s[k].double() for c, s in zip(coefficients, snapshots, strict=True)).to(last.dtype)
        else:
            out[k] = last.clone()
    return out
