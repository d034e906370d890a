"""Reward-tilted fine-tuning: ActFlow's exploration for discrete (masked) flows.

The KL-regularised target q(x) ∝ p_θ(x)·exp(r(x)/α) is fitted by weighted denoising cross-entropy
(WDCE) on the buffer: each design carries the importance weight

    w_i ∝ exp(log p_θ(x_i) − log p_gen(x_i) + r(x_i)/α)  =  softmax_i(log-ratio_i + r_i/α),

where p_gen is the model that generated x_i (its log-likelihood recorded when x_i was drawn), p_θ the
current model and r the surrogate's uncertainty. Log-likelihoods of masked flows are their ELBOs.
In training, each batch normalises the weights of its designs (self-normalised importance sampling).
"""

from __future__ import annotations

import torch
from torch import Tensor


def tilt_weights(log_ratio: Tensor, reward: Tensor, alpha: float) -> Tensor:
    """softmax(log_ratio + reward/α) [N] (float64, sums to 1) for log_ratio, reward [N]."""
    if alpha <= 0:
        raise ValueError(f"tilt temperature α must be > 0, got {alpha}")
    if log_ratio.shape != reward.shape:
        raise ValueError(f"log_ratio {tuple(log_ratio.shape)} and reward {tuple(reward.shape)} differ in shape")
    logits = log_ratio.double() + reward.double() / alpha
    return torch.softmax(logits, dim=0)


def effective_sample_size(weights: Tensor) -> float:
    """Kish's ESS = (Σw)² / Σw² of importance weights [N]."""
    w = weights.double()
    return float(w.sum() ** 2 / (w * w).sum().clamp_min(1e-300))
