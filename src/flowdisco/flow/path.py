"""Probability paths. Convention: t = 0 is noise, t = 1 is data.

The linear Gaussian path (rectified flow / conditional OT):
    x_t = t·x1 + (1 − t)·x0,   x0 ~ N(0, I),   target velocity u_t = x1 − x0.
From a velocity prediction v at (x_t, t):
    endpoint      x̂1 = x_t + (1 − t)·v
    noise         x̂0 = x_t − t·v
    score ∇log p_t(x_t) = −x̂0 / (1 − t)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowdisco.seeding import rand, randn


def expand_time(t: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample times ``t`` [B] to broadcast against ``x`` [B, *shape]."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


@dataclass
class PathSample:
    """A draw from the path: ``x_t`` [B, *shape] at times ``t`` [B], with ``x0``, ``x1`` and the
    target velocity ``u_t`` (all [B, *shape])."""

    x_t: Tensor
    t: Tensor
    x0: Tensor
    x1: Tensor
    u_t: Tensor


class LinearGaussianPath:
    """x_t = t·x1 + (1−t)·x0 with standard Gaussian x0."""

    name = "linear"

    def sample_noise(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu", mask: Tensor | None = None) -> Tensor:
        x0 = randn(shape, generator, device)
        return x0 * mask if mask is not None else x0

    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        tt = expand_time(t, x1)
        x_t = tt * x1 + (1 - tt) * x0
        return PathSample(x_t=x_t, t=t, x0=x0, x1=x1, u_t=x1 - x0)

    def sample(self, x1: Tensor, t: Tensor | None = None, generator: torch.Generator | None = None,
               mask: Tensor | None = None) -> PathSample:
        """Draw noise and (unless given) uniform times for a batch of data ``x1`` [B, *shape]."""
        if t is None:
            t = rand(x1.shape[0], generator, x1.device)
        x0 = self.sample_noise(tuple(x1.shape), generator=generator, device=x1.device, mask=mask)
        return self.interpolate(x0, x1, t)

    @staticmethod
    def endpoint(x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """x̂1(x_t, t) = x_t + (1 − t)·v."""
        return x_t + (1 - expand_time(t, x_t)) * v

    @staticmethod
    def noise_prediction(x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """x̂0(x_t, t) = x_t − t·v."""
        return x_t - expand_time(t, x_t) * v

    @staticmethod
    def score(x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """∇log p_t(x_t) = −x̂0 / (1 − t); finite for t < 1."""
        return -(x_t - expand_time(t, x_t) * v) / (1 - expand_time(t, x_t))


def weighted_mean(per_design: Tensor, weight: Tensor) -> Tensor:
    """Σ w·ℓ / Σ w of per-design losses ℓ [B] and weights w [B] (the reduction of every flowdisco loss)."""
    return (weight * per_design).sum() / weight.sum().clamp_min(1e-12)


def masked_mse_terms(pred: Tensor, target: Tensor, mask: Tensor | None = None,
                     weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-design squared errors [B] (averaged over each design's real entries) and weights [B]."""
    err = (pred - target) ** 2
    dims = tuple(range(1, err.dim()))
    if mask is not None:
        m = mask.to(err.dtype).expand_as(err)
        per_sample = (err * m).sum(dims) / m.sum(dims).clamp_min(1.0)
    else:
        per_sample = err.mean(dims) if dims else err
    return per_sample, design_weights(per_sample, weights)


def design_weights(per_design: Tensor, weights: Tensor | None) -> Tensor:
    """The weights [B] of per-design losses [B]: ``weights`` in their dtype, or ones."""
    return torch.ones_like(per_design) if weights is None else weights.to(per_design.dtype)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None,
               weights: Tensor | None = None) -> Tensor:
    """Mean squared error over the real (unmasked) entries.

    pred, target: [B, *shape]; mask: broadcastable to pred (1 = real entry, 0 = padding);
    weights: [B] per-sample weights (e.g. importance weights), normalised by their sum.
    Per sample the error is averaged over its real entries, then samples are averaged
    (weighted), so designs of different sizes count equally.
    """
    return weighted_mean(*masked_mse_terms(pred, target, mask, weights))


def flow_matching_loss(v_pred: Tensor, sample: PathSample, mask: Tensor | None = None,
                       weights: Tensor | None = None) -> Tensor:
    """Conditional flow-matching loss E‖v_θ(x_t, t) − (x1 − x0)‖² over real entries."""
    return masked_mse(v_pred, sample.u_t, mask=mask, weights=weights)


PATHS = {"linear": LinearGaussianPath}


def get_path(name: str) -> LinearGaussianPath:
    try:
        return PATHS[name]()
    except KeyError:
        raise ValueError(f"unknown path {name!r}; available: {', '.join(sorted(PATHS))}") from None
