"""Classifier-free guidance in velocity form, for any class-conditional flowdisco model.

    v_ω(x, t, c) = v(x, t, ∅) + ω·(v(x, t, c) − v(x, t, ∅)),   ω = 1: the conditional model.

The conditional and unconditional evaluations run as one doubled batch (2 NFEs of work in one
call); the null class ∅ is index ``num_classes`` of the network's class table.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def cfg_velocity(net: nn.Module, x: Tensor, t: Tensor, cond: Tensor, null_class: int, scale: float | Tensor,
                 mask: Tensor | None = None) -> Tensor:
    """Guided velocity [B, *shape] from one doubled batch (conditional first, then null class).

    scale: one ω for the batch, or one per design [B] (trajectory collection draws ω per trajectory).
    """
    if isinstance(scale, Tensor):
        if scale.shape != (x.shape[0],):
            raise ValueError(f"per-design guidance scales must have shape [{x.shape[0]}], got {tuple(scale.shape)}")
        scale = scale.to(x).view(-1, *([1] * (x.dim() - 1)))
    elif scale == 1.0:
        return net(x, t, mask=mask, cond=cond)
    null = torch.full_like(cond, null_class)
    both = net(torch.cat([x, x]), torch.cat([t, t]), mask=None if mask is None else torch.cat([mask, mask]),
               cond=torch.cat([cond, null]))
    v_c, v_u = both.chunk(2)
    return v_u + scale * (v_c - v_u)


def cfg_velocity_fn(net: nn.Module, cond: Tensor, null_class: int, scale: float | Tensor,
                    mask: Tensor | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """The (x, t) → v_ω closure the solvers integrate."""
    return lambda x, t: cfg_velocity(net, x, t, cond, null_class, scale, mask)
