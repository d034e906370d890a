"""Uncertainty selection: ActFlow's sampling-time exploration where gradient guidance cannot act.

A masked (discrete) flow draws tokens, so no gradient of the surrogate's uncertainty can steer its
sampler. Reward-tilted fine-tuning (:mod:`flowdisco.expand.tilt`) only reweights designs already in the
buffer; selection changes *which* designs get verified. Each design of a round is chosen from
``factor`` candidates drawn from p_θ by sampling-importance-resampling towards the same target as the
tilt, q(x) ∝ p_θ(x)·exp(r(x)/α) with r = σ + mean_weight·μ of the round's surrogate on φ-features:
``n`` of the ``factor·n`` candidates are drawn without replacement with probability ∝ exp(r/α) (the
Gumbel-top-k trick). Only the kept designs are verified, so the verifier budget of a round is the same
as without selection; the extra cost is sampling and φ of the candidates (with the descriptor
representation, decoding them).

factor = 1 keeps every candidate (plain sampling). α → ∞ keeps a uniform draw; α → 0 the n candidates
of highest reward.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowdisco import dist
from flowdisco.expand.representation import DescriptorRepresentation, Representation
from flowdisco.expand.surrogates import Surrogate


class UncertaintySelection:
    """Keeps ``n`` of ``factor·n`` candidates x [factor·n, *shape], drawn ∝ exp(r(x)/α).

    rep, surrogate: the round's φ and fitted surrogate; alpha: temperature α > 0; factor: candidates per
    kept design (≥ 1); mean_weight: weight of the surrogate's mean in the reward.
    Each call appends (mean reward of the candidates, mean reward of the kept ones, count) to ``log``.
    """

    def __init__(self, rep: Representation | DescriptorRepresentation, surrogate: Surrogate, alpha: float, factor: int,
                 mean_weight: float = 0.0) -> None:
        if alpha <= 0:
            raise ValueError(f"selection temperature α must be > 0, got {alpha}")
        if factor < 1:
            raise ValueError(f"selection factor must be ≥ 1, got {factor}")
        self.rep, self.surrogate = rep, surrogate
        self.alpha, self.factor, self.mean_weight = float(alpha), int(factor), float(mean_weight)
        self.log: list[tuple[float, float, int]] = []

    def reward(self, x: Tensor, mask: Tensor | None, generator: torch.Generator | None = None) -> Tensor:
        """r(x) = σ(φ(x)) + mean_weight·μ(φ(x)) [B] for designs x [B, *shape] (no gradients)."""
        feats = self.rep.features(x, mask, generator=generator)
        with torch.no_grad():
            return self.surrogate.reward(feats, self.mean_weight, torch.float64)

    def __call__(self, x: Tensor, mask: Tensor | None, n: int, generator: torch.Generator) -> Tensor:
        """Indices [n] (ascending) of the candidates kept out of x [B, *shape], B ≥ n."""
        if x.shape[0] < n:
            raise ValueError(f"selection needs at least {n} candidates, got {x.shape[0]}")
        r = self.reward(x, mask, generator)
        keep = gumbel_top_k(r / self.alpha, n, generator)
        self.log.append((float(r.mean()), float(r[keep].mean()) if n else float("nan"), n))
        return keep

    def summary(self) -> dict[str, float]:
        """Mean reward of all candidates and of the kept designs over the calls so far, on every rank
        over every rank's calls (a collective under torchrun: all ranks call it). The sums are exact
        (``math.fsum``), so they do not depend on which rank drew which chunk."""
        logs = dist.all_gather_dict({dist.rank(): self.log})
        entries = [e for rank in sorted(logs) for e in logs[rank]]
        total = sum(k for _, _, k in entries)
        if not total:
            return {}
        return {"select_factor": float(self.factor),
                "select_reward_candidates": math.fsum(c * k for c, _, k in entries) / total,
                "select_reward_kept": math.fsum(s * k for _, s, k in entries) / total}


def gumbel_top_k(logits: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k indices drawn without replacement with probability ∝ exp(logits) [B] (sequentially, as by
    repeated categorical draws), returned in ascending order: [k]."""
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float64).clamp(1e-300, 1.0)
    keys = logits.double().cpu() - torch.log(-torch.log(u))
    return keys.topk(k).indices.sort().values
