"""Samplers for the linear Gaussian path (t = 0 noise → t = 1 data) and exact log-densities.

One family, three integrators over the same uniform time grid:
- ``euler`` and ``heun``: the probability-flow ODE dx = v(x, t) dt (order 1 and 2);
- ``euler-maruyama``: an SDE with the same marginals,
      dx = [v + ½g(t)²·∇log p_t(x) + u(x, t)] dt + g(t) dW,
  with a noise schedule g and an optional guidance control u (see :class:`GuidanceState`).

A velocity function maps (x [B, *shape], t [B]) → v [B, *shape].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowdisco.flow.path import expand_time
from flowdisco.seeding import randn

VelocityFn = Callable[[Tensor, Tensor], Tensor]
SOLVERS = ("euler", "heun", "euler-maruyama")


def time_grid(steps: int, t0: float = 0.0, t1: float = 1.0, device: torch.device | str = "cpu") -> Tensor:
    """Uniform grid [steps + 1] from t0 to t1."""
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    return torch.linspace(t0, t1, steps + 1, device=device)


def _apply_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    return x if mask is None else x * mask


# Called after every step with the state reached: (x [B,*shape], t [B], v [B,*shape] used for the step).
StepCallback = Callable[[Tensor, Tensor, Tensor], None]


def solve_ode(velocity: VelocityFn, x0: Tensor, steps: int, method: str = "euler", *,
              t0: float = 0.0, t1: float = 1.0, mask: Tensor | None = None,
              callback: StepCallback | None = None) -> Tensor:
    """Integrate dx/dt = v(x, t) from t0 to t1 with fixed steps.

    x0: [B, *shape] (noise at t0 = 0 for sampling). Returns x at t1, [B, *shape].
    ``callback(x_t, t, v)`` sees the state *before* each step and the velocity used there.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"unknown ODE method {method!r}; available: euler, heun")
    grid = time_grid(steps, t0, t1, device=x0.device)
    x = _apply_mask(x0, mask)
    B = x.shape[0]
    for k in range(steps):
        t, t_next = grid[k], grid[k + 1]
        h = t_next - t
        tb = t.expand(B)
        v = _apply_mask(velocity(x, tb), mask)
        if callback is not None:
            callback(x, tb, v)
        if method == "euler":
            x = x + h * v
        else:
            x_pred = x + h * v
            v_next = _apply_mask(velocity(x_pred, t_next.expand(B)), mask)
            x = x + 0.5 * h * (v + v_next)
    return x


@dataclass
class NoiseSchedule:
    """Diffusion coefficient g(t) of the Euler–Maruyama sampler, g(t)² given in closed form.

    kinds:
      ``zero``        g = 0: the ODE (Euler).
      ``memoryless``  g² = scale²·2(1−t)/max(t, t_min): Adjoint Matching's memoryless schedule for the
                      linear path at scale = 1 (the sample forgets its noise), clamped near t = 0.
      ``decaying``    g² = scale²·(1−t): vanishes at the data end, gentle everywhere.
      ``constant``    g² = scale².
    ``drift_coef(t)`` = g²/(2(1−t)) is the factor of −x̂0 in ½g²∇log p, computed in closed form so
    the data end (t → 1) stays finite for the first two kinds.
    """

    kind: str = "memoryless"
    scale: float = 1.0
    t_min: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in ("zero", "memoryless", "decaying", "constant"):
            raise ValueError(
                f"unknown noise schedule {self.kind!r}; available: zero, memoryless, decaying, constant"
            )
        if self.scale < 0:
            raise ValueError(f"noise scale must be ≥ 0, got {self.scale}")

    def g2(self, t: Tensor) -> Tensor:
        s2 = self.scale**2
        if self.kind == "zero":
            return torch.zeros_like(t)
        if self.kind == "memoryless":
            return s2 * 2 * (1 - t) / t.clamp_min(self.t_min)
        if self.kind == "decaying":
            return s2 * (1 - t)
        return torch.full_like(t, s2)

    def drift_coef(self, t: Tensor) -> Tensor:
        s2 = self.scale**2
        if self.kind == "zero":
            return torch.zeros_like(t)
        if self.kind == "memoryless":
            return s2 / t.clamp_min(self.t_min)
        if self.kind == "decaying":
            return torch.full_like(t, 0.5 * s2)
        return s2 / (2 * (1 - t).clamp_min(1e-6))


@dataclass
class GuidanceState:
    """What a guidance hook sees at one Euler–Maruyama step.

    x: [B, *shape] current state, a leaf with ``requires_grad`` (differentiate through it);
    t: [B]; v: [B, *shape] velocity with its graph to x; x1_hat: [B, *shape] endpoint prediction
    x + (1 − t)·v with its graph; g: [B] diffusion coefficient g(t); mask: the designs' masks or None.
    """

    x: Tensor
    t: Tensor
    v: Tensor
    x1_hat: Tensor
    g: Tensor
    mask: Tensor | None = None


# Returns the control u [B, *shape] added to the drift (detached or not: it is detached by the sampler).
GuidanceFn = Callable[[GuidanceState], Tensor]


def solve_sde(velocity: VelocityFn, x0: Tensor, steps: int, schedule: NoiseSchedule, *,
              generator: torch.Generator | None = None, guidance: GuidanceFn | None = None,
              mask: Tensor | None = None, t0: float = 0.0, t1: float = 1.0,
              noise_on_last_step: bool = False, callback: StepCallback | None = None) -> Tensor:
    """Euler–Maruyama on dx = [v + ½g²∇log p_t + u] dt + g dW from t0 to t1.

    With ``schedule.kind == "zero"`` and no guidance this is exactly the Euler ODE sampler.
    The last step adds no noise unless ``noise_on_last_step`` (the returned sample is the mean
    of the final transition, as usual for samplers). Returns [B, *shape].
    """
    grid = time_grid(steps, t0, t1, device=x0.device)
    x = _apply_mask(x0, mask)
    B = x.shape[0]
    for k in range(steps):
        t, t_next = grid[k], grid[k + 1]
        h = t_next - t
        tb = t.expand(B)
        if guidance is not None:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                v_graph = velocity(xg, tb)
                x1_hat = xg + (1 - expand_time(tb, xg)) * v_graph
                g = schedule.g2(tb).sqrt()
                u = guidance(GuidanceState(x=xg, t=tb, v=v_graph, x1_hat=x1_hat, g=g, mask=mask)).detach()
            v = v_graph.detach()
        else:
            v = velocity(x, tb)
            u = None
        v = _apply_mask(v, mask)
        if callback is not None:
            callback(x, tb, v)
        x_hat0 = x - expand_time(tb, x) * v
        drift = v - expand_time(schedule.drift_coef(tb), x) * x_hat0
        if u is not None:
            drift = drift + _apply_mask(u, mask)
        x = x + h * drift
        if k < steps - 1 or noise_on_last_step:
            g = schedule.g2(tb).sqrt()
            if bool((g > 0).any()):
                noise = randn(tuple(x.shape), generator, x.device)
                x = x + expand_time(g, x) * math.sqrt(float(h)) * noise
        x = _apply_mask(x, mask)
    return x


def divergence(velocity: VelocityFn, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Exact divergence ∇·v(x, t) by one backward pass per dimension.

    x: [B, *shape] with D = prod(shape) small. Returns (v [B, *shape], div [B]).
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        v = velocity(xr, t)
        flat_v = v.reshape(v.shape[0], -1)
        D = flat_v.shape[1]
        div = torch.zeros(x.shape[0], device=x.device, dtype=v.dtype)
        for i in range(D):
            (gi,) = torch.autograd.grad(flat_v[:, i].sum(), xr, retain_graph=i < D - 1)
            div = div + gi.reshape(gi.shape[0], -1)[:, i]
    return v.detach(), div.detach()


MAX_EXACT_DIM = 64


def log_prob(velocity: VelocityFn, x1: Tensor, steps: int = 100) -> Tensor:
    """Exact log-density log p_1(x1) of the flow's sample distribution.

    Integrates the ODE backwards from t = 1 to 0 with Heun's method together with the
    instantaneous change of variables d log p_t(x_t)/dt = −∇·v(x_t, t):
        log p_1(x1) = log N(x0; 0, I) − ∫_0^1 ∇·v(x_t, t) dt.
    The divergence is exact (one backward pass per dimension): for low-dimensional designs only.
    x1: [B, *shape]. Returns [B].
    """
    D = x1[0].numel()
    if D > MAX_EXACT_DIM:
        raise ValueError(f"exact log-density needs ≤ {MAX_EXACT_DIM} dimensions per design, got {D}")
    grid = time_grid(steps, 0.0, 1.0, device=x1.device)
    x = x1.detach()
    B = x.shape[0]
    integral = torch.zeros(B, device=x.device)
    for k in range(steps, 0, -1):
        t, t_prev = grid[k], grid[k - 1]
        h = t - t_prev
        v, div = divergence(velocity, x, t.expand(B))
        x_pred = x - h * v
        v_prev, div_prev = divergence(velocity, x_pred, t_prev.expand(B))
        x = x - 0.5 * h * (v + v_prev)
        integral = integral + 0.5 * h * (div + div_prev)
    flat = x.reshape(B, -1)
    log_p0 = -0.5 * (flat**2).sum(1) - 0.5 * D * math.log(2 * math.pi)
    return log_p0 - integral
