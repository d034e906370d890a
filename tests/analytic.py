"""The Gaussian-to-Gaussian flow with a known velocity: data x1 ~ N(μ, σ²I), noise x0 ~ N(0, I).

Along the linear path x_t ~ N(tμ, s_t² I) with s_t² = (1−t)² + t²σ², and the marginal velocity is
    v(x, t) = μ + (tσ² − (1−t)) / s_t² · (x − tμ).
The ODE maps x0 to x1 = μ + σ·x0 exactly, and log p_1 is the log-density of N(μ, σ²I).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class GaussianFlow:
    def __init__(self, mu: list[float], sigma: float) -> None:
        self.mu = torch.tensor(mu, dtype=torch.float64)
        self.sigma = sigma

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        s2 = (1 - t) ** 2 + t**2 * self.sigma**2
        mu = self.mu.to(x.dtype)
        return mu + (t * self.sigma**2 - (1 - t)) / s2 * (x - t * mu)

    def exact_endpoint(self, x0: Tensor) -> Tensor:
        return self.mu.to(x0.dtype) + self.sigma * x0

    def log_prob(self, x: Tensor) -> Tensor:
        d = x.shape[1]
        z = (x - self.mu.to(x.dtype)) / self.sigma
        return -0.5 * (z**2).sum(1) - d * math.log(self.sigma) - 0.5 * d * math.log(2 * math.pi)
