"""Fréchet distance between two sets of feature vectors (Gaussian fits)."""

from __future__ import annotations

import numpy as np
from scipy import linalg


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 0.0) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2(ΣaΣb)^½) for features a [n, d], b [m, d] (n, m ≥ 2)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [n, d] with the same d, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        return float("nan")
    return frechet_from_stats(a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)),
                              b.mean(0), np.atleast_2d(np.cov(b, rowvar=False)), eps)


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray,
                       eps: float = 0.0) -> float:
    """Tr (Σ1 Σ2)^½ is computed as Σ √λ of A Σ2 A with A = Σ1^½ (same eigenvalues, but symmetric PSD):
    no complex parts and no singular-matrix trouble when there are fewer samples than dimensions.
    ``eps`` adds eps·I to both covariances (kept for callers that want a ridge)."""
    diff = mu1 - mu2
    if eps:
        s1 = s1 + np.eye(s1.shape[0]) * eps
        s2 = s2 + np.eye(s2.shape[0]) * eps
    w, v = linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    lam = linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = float(np.sqrt(np.clip(lam, 0.0, None)).sum())
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
