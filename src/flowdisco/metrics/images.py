"""Image metrics on features of the in-project classifier (a proxy: not Inception, not FID)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from flowdisco.metrics.frechet import frechet_distance


def classifier_fd(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet distance between Gaussian fits of two feature sets [n, d], [m, d] (classifier-FD)."""
    return frechet_distance(features_a.double().numpy(), features_b.double().numpy())


def kid(features_a: Tensor, features_b: Tensor, subsets: int = 20, subset_size: int = 200,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance's estimator on our features: unbiased MMD² with the cubic
    polynomial kernel k(x, y) = (x·y/d + 1)³, averaged over random subsets; returns (mean, std)."""
    a = features_a.double().numpy()
    b = features_b.double().numpy()
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    if m < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def class_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of samples the classifier assigns to the class they were generated for."""
    return float((logits.argmax(1) == labels).float().mean())


@torch.no_grad()
def batched(fn, x: Tensor, batch: int = 1024) -> Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)])
