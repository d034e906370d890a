"""Magnitude-preserving (MP) building blocks (EDM2, Karras et al. 2024).

Goal: keep every activation at unit RMS ("magnitude" M[x] = sqrt(mean x²)) through the network
without normalisation layers, so Adam's relative updates do not shrink as weights grow.

- :func:`normalize`: rescale vectors to unit RMS (norm √n).
- :class:`MPLinear`: forced weight normalisation. In training mode the stored weight is first
  overwritten by its row-normalised version (so weight norms cannot drift), and the forward uses
  unit-norm rows, Ŵ = g·normalize(W)/√fan_in: unit-variance inputs give unit-variance outputs.
  No bias (a constant-1 input channel plays that role). Optional learned gain g (init 0 for
  modulation nets and output layers: zero output at init). ``chunks`` > 1 fuses several MP
  linears of the same input (qkv, modulation signals) with one gain per chunk.
- :func:`mp_silu`: SiLU rescaled to unit magnitude for unit-normal input (÷ 0.596).
- :func:`mp_sum`: (1−t)·a + t·b divided by √((1−t)² + t²): unit magnitude for independent inputs.
- :class:`MPFourier`, :class:`MPClassEmbedding`: unit-magnitude time and class embeddings.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def normalize(x: Tensor, dim: int | tuple[int, ...] | None = None, eps: float = 1e-4) -> Tensor:
    """x / RMS(x) over ``dim`` (default: all but the first axis); eps keeps zero vectors finite."""
    if dim is None:
        dim = tuple(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    n = math.prod(x.shape[d] for d in ((dim,) if isinstance(dim, int) else dim))
    norm = torch.add(eps, norm, alpha=1.0 / math.sqrt(n))
    return x / norm.to(x.dtype)


def mp_silu(x: Tensor) -> Tensor:
    """SiLU scaled to unit magnitude for x ~ N(0, 1): E[silu(x)²] ≈ 0.596²."""
    return F.silu(x) / 0.596


def mp_sum(a: Tensor, b: Tensor, t: float = 0.5) -> Tensor:
    """((1 − t)·a + t·b) / √((1 − t)² + t²): unit magnitude for independent unit-magnitude a, b."""
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)



_HOLD = threading.local()


def _held() -> bool:
    return getattr(_HOLD, "depth", 0) > 0


@contextlib.contextmanager
def normalisation_once(net: nn.Module) -> Iterator[None]:
    """Normalise every forced-normalised weight of ``net`` now, and not again inside the block.

    fit() computes one step's gradient as several forward passes (batch pieces); normalising in each
    pass would give the later pieces twice-normalised weights (not bit-identical to once), so the
    weights, and the result, would depend on how many pieces one process computes."""
    for m in net.modules():
        if hasattr(m, "normalize_weight_") and m.training:
            m.normalize_weight_()
    _HOLD.depth = getattr(_HOLD, "depth", 0) + 1
    try:
        yield
    finally:
        _HOLD.depth -= 1


class MPLinear(nn.Module):
    """Magnitude-preserving linear map ``in_features → chunks·out_features`` (no bias).

    gain: ``None`` (fixed 1) or the initial value of one learned scalar per chunk.
    forward(x [..., in]) → [..., chunks·out] (split it with ``.chunk(chunks, -1)``).
    """

    def __init__(self, in_features: int, out_features: int, gain: float | None = None, chunks: int = 1) -> None:
        super().__init__()
        self.in_features, self.out_features, self.chunks = in_features, out_features, chunks
        self.weight = nn.Parameter(torch.randn(chunks * out_features, in_features))
        self.gain = nn.Parameter(torch.full((chunks,), float(gain))) if gain is not None else None

    @torch.no_grad()
    def normalize_weight_(self) -> None:
        self.weight.copy_(normalize(self.weight, dim=1))

    def effective_weight(self) -> Tensor:
        """Ŵ = g·normalize(W)/√fan_in: rows of norm |g|."""
        w = normalize(self.weight, dim=1) / math.sqrt(self.in_features)
        if self.gain is not None:
            w = w * self.gain.repeat_interleave(self.out_features)[:, None]
        return w

    def forward(self, x: Tensor) -> Tensor:
        if self.training and not _held():
            self.normalize_weight_()  # forced weight normalisation of the stored parameter
        return F.linear(x, self.effective_weight().to(x.dtype))

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, chunks={self.chunks}, "
                f"gain={'learned' if self.gain is not None else 'fixed'}")


class MPFeatureHead(nn.Module):
    """MP linear + MP-SiLU, dim → dim: the per-token hidden features an output layer reads (and
    ActFlow's φ hooks into). [..., dim] → [..., dim]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = MPLinear(dim, dim)

    def forward(self, h: Tensor) -> Tensor:
        return mp_silu(self.lin(h))


class MPFourier(nn.Module):
    """√2·cos(2π(f·t + φ)) with fixed f ~ N(0, 1), φ ~ U(0, 1): [B] → [B, dim], unit magnitude.

    t should be a normalised time (flow time in [0, 1], scaled by ``scale``)."""

    def __init__(self, dim: int, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim, generator=g) * scale)
        self.register_buffer("phases", torch.rand(dim, generator=g))

    def forward(self, t: Tensor) -> Tensor:
        y = torch.outer(t.to(torch.float32), self.freqs.to(torch.float32)) + self.phases.to(torch.float32)
        return (math.sqrt(2) * torch.cos(2 * math.pi * y)).to(t.dtype if t.is_floating_point() else torch.float32)


class MPClassEmbedding(nn.Module):
    """Class table with forced row normalisation (unit RMS per class); index ``num_classes`` is the
    null class of classifier-free guidance. [B] long → [B, dim]."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.randn(num_classes + 1, dim))

    @torch.no_grad()
    def normalize_weight_(self) -> None:
        self.weight.copy_(normalize(self.weight, dim=1))

    def forward(self, y: Tensor) -> Tensor:
        if self.training and not _held():
            self.normalize_weight_()
        return F.embedding(y, normalize(self.weight, dim=1))


def sincos_2d(h: int, w: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine positions [h·w, dim], each token normalised to unit RMS."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (np.arange(quarter, dtype=np.float64) / quarter))
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    out = []
    for pos in (ys.reshape(-1), xs.reshape(-1)):
        ang = np.outer(pos, omega)
        out += [np.sin(ang), np.cos(ang)]
    emb = torch.tensor(np.concatenate(out, axis=1), dtype=torch.float32)
    return normalize(emb, dim=1)


def sincos_1d(n: int, dim: int) -> Tensor:
    """Fixed 1-D sine-cosine positions [n, dim], unit RMS per token."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = 1.0 / (10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim // 2)))
    ang = np.outer(np.arange(n, dtype=np.float64), omega)
    emb = torch.tensor(np.concatenate([np.sin(ang), np.cos(ang)], axis=1), dtype=torch.float32)
    return normalize(emb, dim=1)


def cosine_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """Attention with q and k normalised per head to norm √d_h, so logits are √d_h·cos(q, k).

    q, k, v: [B, heads, N, d_h]; attn_mask: bool [B, 1, N, N] (True = attend) or additive float.
    """
    q = normalize(q, dim=-1)
    k = normalize(k, dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
