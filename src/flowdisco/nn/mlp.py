"""A small MLP velocity network for low-dimensional designs (the 2-D toy and user domains)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowdisco.nn.registry import register_network


class FourierTime(nn.Module):
    """Fixed random Fourier features of t ∈ [0, 1]: [B] → [B, dim]; unit RMS by construction."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim, generator=g) * 2.0, persistent=True)
        self.register_buffer("phases", torch.rand(dim, generator=g), persistent=True)

    def forward(self, t: Tensor) -> Tensor:
        return math.sqrt(2) * torch.cos(2 * math.pi * (t[:, None] * self.freqs + self.phases))


@register_network("mlp")
class MLPVelocity(nn.Module):
    """v(x, t) = MLP([x, fourier(t)]) for designs of any small shape.

    Layers are ``inp``, ``hidden.0`` … ``hidden.{depth-2}``, ``out``; the activation after each
    hidden layer is a named module (``act.i``) so representation hooks can read it.
    x: [B, *shape], t: [B] → [B, *shape].
    """

    def __init__(self, shape: list[int] | tuple[int, ...], width: int = 128, depth: int = 3,
                 time_dim: int = 32) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be ≥ 1")
        self.shape = tuple(shape)
        d = math.prod(self.shape)
        self.time = FourierTime(time_dim)
        self.inp = nn.Linear(d + time_dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.act = nn.ModuleList(nn.SiLU() for _ in range(depth))
        self.out = nn.Linear(width, d)

    def forward(self, x: Tensor, t: Tensor, mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        B = x.shape[0]
        h = torch.cat([x.reshape(B, -1), self.time(t.to(x.dtype))], dim=1)
        h = self.act[0](self.inp(h))
        for lin, act in zip(self.hidden, self.act[1:], strict=True):
            h = act(lin(h))
        v = self.out(h).reshape(B, *self.shape)
        return v if mask is None else v * mask
