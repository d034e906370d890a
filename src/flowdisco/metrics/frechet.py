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
    ``eps`` adds eps·I to both covariances (kept for callers that want a ridge).

    Eigenvalues at round-off level are set to zero before their square roots are taken: with fewer
    samples than dimensions (500 molecules, 512 ChemNet features) hundreds of them are ±1e-16, and
    their roots (1e-8 each) would add about 1e-6 of noise that changes with the BLAS thread count."""
    diff = mu1 - mu2
    if eps:
        s1 = s1 + np.eye(s1.shape[0]) * eps
        s2 = s2 + np.eye(s2.shape[0]) * eps
    w, v = linalg.eigh(s1)
    root1 = (v * np.sqrt(_drop_round_off(w))) @ v.T
    lam = linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = float(np.sqrt(_drop_round_off(lam)).sum())
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def _drop_round_off(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues [d] of a symmetric PSD matrix, those below the numerical-rank tolerance
    (d · machine ε · largest, as in ``numpy.linalg.matrix_rank``) set to zero."""
    tol = float(eigenvalues.max(initial=0.0)) * len(eigenvalues) * np.finfo(eigenvalues.dtype).eps
    return np.where(eigenvalues > tol, eigenvalues, 0.0)
