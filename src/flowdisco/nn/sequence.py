"""A magnitude-preserving sequence transformer: the network of the peptide and protein domains.

Positions are tokens. Two input kinds:
  ``onehot``  x [B, L, V]: (noisy) ±1 one-hots of a continuous Gaussian flow; mask [B, L, V];
  ``tokens``  x [B, L]: token ids of a masked discrete flow (id V = the mask token); mask [B, L].
Three outputs: ``velocity`` [B, L, V]; ``endpoint`` — per position x̂1 = 2·softmax − 1 and the
velocity (x̂1 − x_t)/max(1 − t, eps) it implies (trained on x̂1); ``logits`` [B, L, V] — the
denoiser p_θ(x1 | x_t) of a masked discrete flow.

Built from the MP blocks of the DiT (MP linears, cosine attention, mp_sum residuals, modulation by
the flow time) with fixed sine-cosine positions. Padding positions are never attended to.
Named module for ActFlow's representation hook: ``encoder_head`` (per-position features [B, L, D],
mean-pooled over real positions).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowdisco.nn.dit import EMBED_T, MPBlock, MPConditioning
from flowdisco.nn.modulation import check_modulations
from flowdisco.nn.mp import MPClassEmbedding, MPFeatureHead, MPLinear, mp_sum, sincos_1d
from flowdisco.nn.registry import register_network

INPUTS = ("onehot", "tokens")
OUTPUTS = ("velocity", "endpoint", "logits")


@register_network("seq-mp")
class SequenceTransformer(nn.Module):
    """x [B, L, V] (onehot) or [B, L] (tokens), t [B], mask like x → [B, L, V]."""

    def __init__(self, max_len: int, vocab_size: int, dim: int = 128, depth: int = 4, heads: int = 4,
                 mods: list[str] | tuple[str, ...] = ("scale", "shift", "gate"), input: str = "onehot",
                 output: str = "endpoint", endpoint_eps: float = 0.02) -> None:
        super().__init__()
        if input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if (input == "tokens") != (output == "logits"):
            raise ValueError("token input goes with logits output (masked discrete flow), one-hot input with "
                             "velocity or endpoint output (Gaussian flow)")
        self.L, self.V, self.input, self.output, self.endpoint_eps = max_len, vocab_size, input, output, endpoint_eps
        self.loss_target = "endpoint" if output == "endpoint" else "velocity"
        mods = check_modulations(mods)
        if input == "onehot":
            self.embed = MPLinear(vocab_size + 1, dim)  # + a constant-1 channel in place of a bias
        else:
            self.embed = MPClassEmbedding(vocab_size, dim)  # row V (the "null class") is the mask token
        self.register_buffer("pos", sincos_1d(max_len, dim), persistent=False)
        self.cond = MPConditioning(dim)
        self.blocks = nn.ModuleList(MPBlock(dim, heads, dim, mods) for _ in range(depth))
        self.encoder_head = MPFeatureHead(dim)
        self.out = MPLinear(dim, vocab_size, gain=0.0)

    def real_positions(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Bool [B, L]: True at real (non-padding) positions."""
        if mask is None:
            return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return (mask[..., 0] if mask.dim() == 3 else mask) > 0

    def forward(self, x: Tensor, t: Tensor, mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        B, L = x.shape[:2]
        if L != self.L:
            raise ValueError(f"sequences have {L} positions, the network was built for {self.L}")
        real = self.real_positions(x, mask)
        if self.input == "onehot":
            h = self.embed(torch.cat([x, torch.ones_like(x[..., :1])], dim=-1))
        else:
            h = self.embed(x.long().clamp(0, self.V))
        h = mp_sum(h, self.pos.to(h.dtype), EMBED_T)
        allowed = real[:, None, :] | torch.eye(L, dtype=torch.bool, device=x.device)[None]
        attn_mask = allowed[:, None]  # [B, 1, L, L]
        c = self.cond(t)
        for block in self.blocks:
            h = block(h, c, attn_mask)
        out = self.out(self.encoder_head(h))  # [B, L, V]
        if self.output == "endpoint":
            scale = 1.0 / (1.0 - t).clamp_min(self.endpoint_eps).view(B, 1, 1)
            out = (2 * out.softmax(-1) - 1 - x) * scale
        if self.output == "logits":
            return out
        return out * mask if mask is not None else out
