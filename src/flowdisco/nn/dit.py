"""Diffusion transformers: the magnitude-preserving DiT with composable modulation, and the standard
DiT baseline (Peebles & Xie 2023), both as flow-matching velocity networks.

MP block (any subset of {scale, shift, gate, rotation}; no LayerNorm anywhere):
    u = modulate(x, c; 0)              scale → shift → rotation
    a = CosAttn(u) [⊙ (1 + γ0(c))]
    x = mp_sum(x, a; 0.3)
    u = modulate(x, c; 1)
    m = W2·mp_silu(W1·u) [⊙ (1 + γ1(c))]
    x = mp_sum(x, m; 0.3)
Baseline block: LayerNorm without affine, AdaLN-Zero [β1, γ1, α1, β2, γ2, α2] = Linear(SiLU(c)),
softmax attention with biases, GELU-tanh MLP, x += α ⊙ sub-block(LN(x)(1 + γ) + β).

The blocks work on any token set x [B, N, D] with an optional attention mask, so the molecule and
sequence backbones reuse them; :class:`DiT` wraps them for images (patches as tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowdisco.nn.modulation import AdaLNZero, MPModulation, adaln, check_modulations, gate, modulate
from flowdisco.nn.mp import MPClassEmbedding, MPFourier, MPLinear, cosine_attention, mp_silu, mp_sum, sincos_2d
from flowdisco.nn.registry import register_network

RESIDUAL_T = 0.3  # mp_sum weight of the sub-block output in residual connections
EMBED_T = 0.5  # mp_sum weight when combining embeddings (patch + position, time + class)

# Named sizes: (depth, width, heads). XS / S / B are the paper's; tiny and micro fit 2 CPU cores.
SIZES = {"micro": (2, 32, 2), "tiny": (4, 64, 4), "small-cpu": (6, 96, 4), "XS": (6, 256, 4),
         "S": (12, 384, 6), "B": (12, 768, 12)}


# ----------------------------------------------------------------------------------------------
# MP blocks
# ----------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head self-attention, x [B, N, D] → [B, N, D].

    mp=True: fused MP qkv, cosine attention (q, k normalised per head), MP output projection.
    mp=False: the standard one (linear layers with biases, softmax attention).
    """

    def __init__(self, dim: int, heads: int, mp: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.mp = heads, mp
        self.qkv = MPLinear(dim, dim, chunks=3) if mp else nn.Linear(dim, 3 * dim)
        self.out = MPLinear(dim, dim) if mp else nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        B, N, D = x.shape
        q, k, v = (y.reshape(B, N, self.heads, D // self.heads).transpose(1, 2) for y in self.qkv(x).chunk(3, -1))
        attend = cosine_attention if self.mp else F.scaled_dot_product_attention
        y = attend(q, k, v, attn_mask=attn_mask)
        return self.out(y.transpose(1, 2).reshape(B, N, D))


class MPMLP(nn.Module):
    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        self.w1 = MPLinear(dim, ratio * dim)
        self.w2 = MPLinear(ratio * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(mp_silu(self.w1(x)))


class MPBlock(nn.Module):
    """Magnitude-preserving transformer block with the chosen modulations. x [B, N, D], c [B, Dc]."""

    def __init__(self, dim: int, heads: int, cond_dim: int, mods: tuple[str, ...], mlp_ratio: int = 4) -> None:
        super().__init__()
        self.mod = MPModulation(cond_dim, dim, mods, subblocks=2)
        self.attn = Attention(dim, heads, mp=True)
        self.mlp = MPMLP(dim, mlp_ratio)

    def forward(self, x: Tensor, c: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        s = self.mod(c)
        x = mp_sum(x, gate(self.attn(modulate(x, s, 0), attn_mask), s, 0), RESIDUAL_T)
        return mp_sum(x, gate(self.mlp(modulate(x, s, 1)), s, 1), RESIDUAL_T)


class MPConditioning(nn.Module):
    """c = mp_sum(time embedding, class embedding; 0.5), both unit magnitude. t [B], y [B] → [B, Dc].

    Time: MP-Fourier features of the flow time t ∈ [0, 1] → MP linear → MP-SiLU → MP linear.
    Without classes (num_classes = 0) c is the time embedding alone."""

    def __init__(self, cond_dim: int, num_classes: int = 0, fourier_dim: int | None = None) -> None:
        super().__init__()
        fd = fourier_dim or cond_dim
        self.fourier = MPFourier(fd)
        self.t1 = MPLinear(fd, cond_dim)
        self.t2 = MPLinear(cond_dim, cond_dim)
        self.classes = MPClassEmbedding(num_classes, cond_dim) if num_classes else None

    def forward(self, t: Tensor, y: Tensor | None = None) -> Tensor:
        c = self.t2(mp_silu(self.t1(self.fourier(t))))
        if self.classes is not None:
            if y is None:
                y = torch.full((t.shape[0],), self.classes.num_classes, dtype=torch.long, device=t.device)
            c = mp_sum(c, self.classes(y), EMBED_T)
        return c


# ----------------------------------------------------------------------------------------------
# Baseline blocks
# ----------------------------------------------------------------------------------------------
class BaselineBlock(nn.Module):
    """Standard DiT block with AdaLN-Zero. x [B, N, D], c [B, Dc]."""

    def __init__(self, dim: int, heads: int, cond_dim: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ada = AdaLNZero(cond_dim, dim, 6)
        self.attn = Attention(dim, heads, mp=False)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor, c: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        b1, g1, a1, b2, g2, a2 = self.ada(c)
        x = x + a1[:, None] * self.attn(adaln(x, b1, g1), attn_mask)
        return x + a2[:, None] * self.mlp(adaln(x, b2, g2))


def sinusoid(v: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features cos/sin(v·f_k), f_k = max_period^(−k/(dim/2)): [B] → [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=v.device) / half)
    ang = v.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)


def timestep_sinusoid(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """DiT's sinusoidal timestep features of 1000·t (t ∈ [0, 1]): [B] → [B, dim]."""
    return sinusoid(1000.0 * t.float(), dim, max_period)


class BaselineConditioning(nn.Module):
    """c = MLP(sinusoid(t)) + Embedding(y) (with a null class). t [B], y [B] → [B, D]."""

    def __init__(self, dim: int, num_classes: int = 0, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.classes = nn.Embedding(num_classes + 1, dim) if num_classes else None
        self.num_classes = num_classes
        if self.classes is not None:
            nn.init.normal_(self.classes.weight, std=0.02)

    def forward(self, t: Tensor, y: Tensor | None = None) -> Tensor:
        c = self.mlp(timestep_sinusoid(t, self.freq_dim))
        if self.classes is not None:
            if y is None:
                y = torch.full((t.shape[0],), self.num_classes, dtype=torch.long, device=t.device)
            c = c + self.classes(y)
        return c


# ----------------------------------------------------------------------------------------------
# Image DiT
# ----------------------------------------------------------------------------------------------
def patchify(x: Tensor, p: int) -> Tensor:
    """[B, C, H, W] → [B, (H/p)(W/p), C·p·p]."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def unpatchify(x: Tensor, p: int, C: int, H: int, W: int) -> Tensor:
    """[B, (H/p)(W/p), C·p·p] → [B, C, H, W]."""
    B = x.shape[0]
    x = x.reshape(B, H // p, W // p, C, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, C, H, W)


@register_network("dit")
class DiT(nn.Module):
    """Class-conditional image DiT as a velocity network: x [B, C, H, W], t [B], cond [B] → [B, C_out, H, W].

    kind: ``mp`` (magnitude-preserving, modulations ``mods`` ⊆ {scale, shift, gate, rotation}) or
    ``baseline`` (LayerNorm + AdaLN-Zero). size: a name of :data:`SIZES` or None with explicit
    depth/dim/heads. num_classes: 0 for unconditional; index num_classes is the null class (CFG).
    out_channels: defaults to channels (2× for a learned-σ head, used only for parameter counts).
    """

    def __init__(self, image_size: int = 8, channels: int = 1, patch: int = 2, kind: str = "mp",
                 mods: list[str] | tuple[str, ...] = ("scale", "shift", "gate"), size: str | None = "tiny",
                 depth: int | None = None, dim: int | None = None, heads: int | None = None, num_classes: int = 10,
                 mlp_ratio: int = 4, out_channels: int | None = None) -> None:
        super().__init__()
        if kind not in ("mp", "baseline"):
            raise ValueError(f"unknown DiT kind {kind!r}; available: mp, baseline")
        if size is not None:
            if size not in SIZES:
                raise ValueError(f"unknown DiT size {size!r}; available: {', '.join(SIZES)}")
            d0, w0, h0 = SIZES[size]
            depth, dim, heads = depth or d0, dim or w0, heads or h0
        if not (depth and dim and heads):
            raise ValueError("give a size or all of depth, dim, heads")
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not divisible by patch {patch}")
        self.kind, self.patch, self.channels, self.image_size = kind, patch, channels, image_size
        self.out_channels = out_channels or channels
        self.mods = check_modulations(mods) if kind == "mp" else ()
        n_side = image_size // patch
        patch_dim = channels * patch * patch
        self.register_buffer("pos", sincos_2d(n_side, n_side, dim), persistent=False)
        if kind == "mp":
            self.embed = MPLinear(patch_dim + 1, dim)  # + a constant-1 channel instead of a bias
            self.cond = MPConditioning(dim, num_classes)
            self.blocks = nn.ModuleList(MPBlock(dim, heads, dim, self.mods, mlp_ratio) for _ in range(depth))
            final_mods = tuple(m for m in self.mods if m != "gate")
            self.final_mod = MPModulation(dim, dim, final_mods, subblocks=1) if final_mods else None
            self.final = MPLinear(dim, self.out_channels * patch * patch, gain=0.0)
        else:
            self.embed = nn.Linear(patch_dim, dim)
            self.cond = BaselineConditioning(dim, num_classes)
            self.blocks = nn.ModuleList(BaselineBlock(dim, heads, dim, mlp_ratio) for _ in range(depth))
            self.final_mod = AdaLNZero(dim, dim, 2)
            self.final = nn.Linear(dim, self.out_channels * patch * patch)
            nn.init.zeros_(self.final.weight)
            nn.init.zeros_(self.final.bias)

    def forward(self, x: Tensor, t: Tensor, mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        H, W = x.shape[-2:]
        tokens = patchify(x, self.patch)
        c = self.cond(t, cond)
        if self.kind == "mp":
            ones = torch.ones(*tokens.shape[:2], 1, dtype=tokens.dtype, device=tokens.device)
            h = mp_sum(self.embed(torch.cat([tokens, ones], dim=-1)), self.pos.to(tokens.dtype), EMBED_T)
            for block in self.blocks:
                h = block(h, c)
            if self.final_mod is not None:
                h = modulate(h, self.final_mod(c), 0)
        else:
            h = self.embed(tokens) + self.pos.to(tokens.dtype)
            for block in self.blocks:
                h = block(h, c)
            shift, scale = self.final_mod(c)
            h = adaln(h, shift, scale)
        return unpatchify(self.final(h), self.patch, self.out_channels, H, W)
