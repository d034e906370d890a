"""Vendi score: the exponential of the Shannon entropy of the eigenvalues of K/n
(Friedman & Dieng 2023), an effective number of distinct designs under similarity kernel K."""

from __future__ import annotations

import torch
from torch import Tensor


def vendi_score(kernel: Tensor) -> float:
    """kernel: [n, n] positive semi-definite similarity matrix with unit diagonal."""
    n = kernel.shape[0]
    if n == 0:
        return float("nan")
    k = kernel.double()
    k = 0.5 * (k + k.T)
    lam = torch.linalg.eigvalsh(k / n).clamp_min(0)
    lam = lam[lam > 1e-12]
    return float(torch.exp(-(lam * lam.log()).sum()))
