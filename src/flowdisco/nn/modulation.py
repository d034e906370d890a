"""Conditioning by modulation: scale, shift, gate and rotation (MP), and the standard AdaLN-Zero.

MP modulation signals are v(c) = g·Ŵ_v·mp_silu(c) from MP linears whose gains start at 0, so every
modulation is exactly the identity at initialisation. One block has two sub-blocks (attention,
MLP); each uses the chosen subset of
  scale     x ⊙ (1 + s(c))
  shift     x + b(c)
  rotation  R_θ(c) x: D/2 planar rotations of the channel halves [x_a; x_b], one angle per pair:
            [x_a cos θ − x_b sin θ ; x_a sin θ + x_b cos θ]  — norm-preserving per token, whatever θ
  gate      sub-block output ⊙ (1 + γ(c))
applied in the order scale, shift, rotation (gate on the output). A rotation net costs D·D/2
weights against D² for a shift net.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowdisco.nn.mp import MPLinear, mp_silu

MODULATIONS = ("scale", "shift", "rotation", "gate")


def rotate(x: Tensor, theta: Tensor) -> Tensor:
    """Rotate the channel pairs (x_a[i], x_b[i]) of x [B, N, D] by angles theta [B, D/2]."""
    xa, xb = x.chunk(2, dim=-1)
    c, s = torch.cos(theta)[:, None, :], torch.sin(theta)[:, None, :]
    return torch.cat([xa * c - xb * s, xa * s + xb * c], dim=-1)


def check_modulations(mods: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(mods) - set(MODULATIONS))
    if unknown:
        raise ValueError(f"unknown modulation(s) {unknown}; available: {', '.join(MODULATIONS)}")
    return tuple(m for m in MODULATIONS if m in mods)


class MPModulation(nn.Module):
    """The conditioning signals of ``subblocks`` sub-blocks from c [B, cond_dim].

    D-wide signals (scale, shift, gate) share one fused MP linear with a gain per chunk, rotation
    angles another (D/2 wide). forward(c) → {"scale0": [B, D], ..., "rotation1": [B, D/2]}.
    """

    def __init__(self, cond_dim: int, dim: int, mods: tuple[str, ...], subblocks: int = 2) -> None:
        super().__init__()
        self.mods = check_modulations(mods)
        if "rotation" in self.mods and dim % 2:
            raise ValueError(f"rotation modulation needs an even width, got {dim}")
        self.vec_names = [f"{m}{i}" for i in range(subblocks) for m in ("scale", "shift", "gate") if m in self.mods]
        self.vec = MPLinear(cond_dim, dim, gain=0.0, chunks=len(self.vec_names)) if self.vec_names else None
        self.rot_names = [f"rotation{i}" for i in range(subblocks)] if "rotation" in self.mods else []
        self.rot = MPLinear(cond_dim, dim // 2, gain=0.0, chunks=subblocks) if self.rot_names else None

    def forward(self, c: Tensor) -> dict[str, Tensor]:
        a = mp_silu(c)
        out: dict[str, Tensor] = {}
        if self.vec is not None:
            out.update(zip(self.vec_names, self.vec(a).chunk(len(self.vec_names), dim=-1), strict=True))
        if self.rot is not None:
            out.update(zip(self.rot_names, self.rot(a).chunk(len(self.rot_names), dim=-1), strict=True))
        return out


def modulate(x: Tensor, signals: dict[str, Tensor], i: int) -> Tensor:
    """Apply sub-block i's scale, shift and rotation (in that order) to x [B, N, D]."""
    if f"scale{i}" in signals:
        x = x * (1 + signals[f"scale{i}"][:, None, :])
    if f"shift{i}" in signals:
        x = x + signals[f"shift{i}"][:, None, :]
    if f"rotation{i}" in signals:
        x = rotate(x, signals[f"rotation{i}"])
    return x


def gate(y: Tensor, signals: dict[str, Tensor], i: int) -> Tensor:
    """Sub-block i's output y [B, N, D] ⊙ (1 + γ_i(c)) when gating is on."""
    g = signals.get(f"gate{i}")
    return y if g is None else y * (1 + g[:, None, :])


class AdaLNZero(nn.Module):
    """The standard DiT's AdaLN-Zero: ``chunks`` signals of width D from Linear(SiLU(c)), all zero
    at init. forward(c [B, cond_dim]) → tuple of [B, D]."""

    def __init__(self, cond_dim: int, dim: int, chunks: int = 6) -> None:
        super().__init__()
        self.chunks = chunks
        self.lin = nn.Linear(cond_dim, chunks * dim)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, c: Tensor) -> tuple[Tensor, ...]:
        return self.lin(nn.functional.silu(c)).chunk(self.chunks, dim=-1)


def adaln(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """LN(x)·(1 + scale) + shift with LayerNorm without affine parameters; x [B, N, D]."""
    x = nn.functional.layer_norm(x, x.shape[-1:])
    return x * (1 + scale[:, None, :]) + shift[:, None, :]
