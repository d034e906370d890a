"""Masked (absorbing-state) discrete flow matching — the model family of the paper's peptides.

Convention as for the Gaussian path: t = 0 is pure noise (every position masked), t = 1 is data.
Designs are token ids x1 ∈ {0..V−1}^L, stored as a float tensor [B, L] (so they share the buffers and
files of continuous designs); padding positions hold PAD = −1 and have mask 0. The mask token is id V.

Path (scheduler κ(t) = t): every real position independently shows its data token with probability
κ(t) and the mask token otherwise, so P(x_t^i = x1^i) = t.

Loss: denoising cross-entropy −log p_θ(x1^i | x_t) averaged over the masked positions of each design
(designs with no masked position carry no loss), then over designs with optional per-design weights
normalised by their sum — ActFlow's reward-tilted fine-tuning passes importance weights here (WDCE).

Sampler (Euler over a uniform grid 0 = t_0 < … < t_K = 1): between t and t + h a masked position
unmasks with probability (κ(t+h) − κ(t)) / (1 − κ(t)) = h / (1 − t), drawing its token from
p_θ(· | x_t); at the last step every remaining position unmasks.

ELBO (MDLM): log p_θ(x1) ≥ −E_t[ κ'(t)/(1 − κ(t)) · Σ_{masked i} −log p_θ(x1^i | x_t) ], estimated by
Monte Carlo over t and the masking.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowdisco.flow.path import weighted_mean
from flowdisco.flow.solvers import GuidanceFn, NoiseSchedule, StepCallback
from flowdisco.seeding import rand

PAD = -1  # token value at padding positions


class MaskedPath:
    """The absorbing-state path with κ(t) = t over a vocabulary of ``vocab_size`` tokens."""

    name = "masked"

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be ≥ 1, got {vocab_size}")
        self.V = int(vocab_size)
        self.mask_id = self.V

    @staticmethod
    def kappa(t: Tensor) -> Tensor:
        return t

    def corrupt(self, x1: Tensor, t: Tensor, generator: torch.Generator | None = None,
                u: Tensor | None = None) -> Tensor:
        """x_t [B, L] (long): x1 [B, L] with each position masked with probability 1 − κ(t) [B].
        ``u`` [B, L] uniform draws may be given instead of a generator."""
        if u is None:
            u = torch.rand(x1.shape, generator=generator).to(x1.device)
        keep = u < self.kappa(t)[:, None]
        return torch.where(keep, x1.long(), torch.full_like(x1.long(), self.mask_id))

    def unmask_probability(self, t: float, h: float) -> float:
        """Probability that a position masked at t is unmasked by t + h: (κ(t+h) − κ(t))/(1 − κ(t))."""
        return 1.0 if t + h >= 1.0 - 1e-9 else h / (1.0 - t)


def denoising_cross_entropy_terms(logits: Tensor, x1: Tensor, x_t: Tensor, mask_id: int,
                                  real: Tensor | None = None, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-design mean −log p_θ(x1^i | x_t) over masked real positions [B], and weights [B] (0 for a
    design with no masked position)."""
    ce = F.cross_entropy(logits.transpose(1, 2), x1.long().clamp(0, logits.shape[-1] - 1), reduction="none")
    m = x_t == mask_id
    if real is not None:
        m = m & real
    mf = m.to(ce.dtype)
    n = mf.sum(1)
    per = (ce * mf).sum(1) / n.clamp_min(1.0)
    w = (n > 0).to(ce.dtype)
    if weights is not None:
        w = w * weights.to(ce.dtype)
    return per, w


def denoising_cross_entropy(logits: Tensor, x1: Tensor, x_t: Tensor, mask_id: int, real: Tensor | None = None,
                            weights: Tensor | None = None) -> Tensor:
    """Mean over designs of the mean −log p_θ(x1^i | x_t) over masked real positions.

    logits [B, L, V], x1/x_t [B, L] (long), real [B, L] bool (None: all real), weights [B]
    (normalised by their sum over designs that have a masked position).
    """
    return weighted_mean(*denoising_cross_entropy_terms(logits, x1, x_t, mask_id, real, weights))


class DiscreteFlowModelMixin:
    """The masked-flow behaviour of :class:`flowdisco.flow.model.DiscreteFlowModel` (training,
    sampling, ELBO); kept here so the continuous model file stays about continuous flows."""

    net: nn.Module
    extra: dict
    shape: tuple[int, ...]
    kind = "discrete"

    @property
    def vocab_size(self) -> int:
        return int(self.extra["vocab_size"])

    @property
    def masked_path(self) -> MaskedPath:
        return MaskedPath(self.vocab_size)

    @staticmethod
    def _real(x: Tensor, mask: Tensor | None) -> Tensor:
        return torch.ones(x.shape, dtype=torch.bool, device=x.device) if mask is None else mask > 0

    def training_batch(self, data: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        """Times t [B] and the masked tokens x_t [B, L] (as float) of one training step."""
        x1 = data["x"]
        out = dict(data)
        out["t"] = rand(x1.shape[0], generator, x1.device)
        u = rand(tuple(x1.shape), generator, x1.device)
        out["x_t"] = self.masked_path.corrupt(x1, out["t"], u=u).to(x1.dtype)
        return out

    def loss_terms(self, batch: dict[str, Tensor], net: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        """Per-design denoising cross-entropy [B] and weights [B] (see :func:`denoising_cross_entropy`)."""
        f = net if net is not None else self.net
        mask = batch.get("mask")
        x_t = batch["x_t"].long()
        logits = f(x_t, batch["t"], mask=mask)
        return denoising_cross_entropy_terms(logits, batch["x"], x_t, self.masked_path.mask_id,
                                             real=self._real(x_t, mask), weights=batch.get("weight"))

    def loss(self, batch: dict[str, Tensor], net: nn.Module | None = None) -> Tensor:
        return weighted_mean(*self.loss_terms(batch, net))

    @torch.no_grad()
    def sample(self, n: int, steps: int = 100, solver: str = "euler", *,
               generator: torch.Generator | None = None, noise: NoiseSchedule | None = None,
               guidance: GuidanceFn | None = None, mask: Tensor | None = None, cond: Tensor | None = None,
               x0: Tensor | None = None, cfg_scale: float | None = None, batch_size: int | None = None,
               callback: StepCallback | None = None, temperature: float = 1.0) -> Tensor:
        """Draw ``n`` token sequences [n, L] (float ids; padding PAD = −1) by Euler unmasking.

        The discrete sampler has one solver; ``solver`` and ``noise`` are accepted for the shared
        interface and ignored. Gradient guidance does not apply to discrete tokens (ActFlow explores
        with reward-tilted fine-tuning instead)."""
        if guidance is not None:
            raise ValueError("a masked discrete flow takes no gradient guidance; ActFlow uses reward-tilted "
                             "fine-tuning on discrete models")
        if cfg_scale is not None or cond is not None:
            raise ValueError("class conditioning is not supported by the masked discrete flow")
        if n < 0:
            raise ValueError(f"number of samples must be ≥ 0, got {n}")
        if steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {steps}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        dev = next(self.net.parameters()).device
        path = self.masked_path
        bs = batch_size or max(n, 1)
        outs = []
        was_training = self.net.training
        self.net.eval()
        try:
            for i in range(0, n, bs):
                m = mask[i:i + bs].to(dev) if mask is not None else None
                b = min(bs, n - i)
                x = torch.full((b, *self.shape), path.mask_id, dtype=torch.long, device=dev)
                real = self._real(x, m)
                for k in range(steps):
                    t, h = k / steps, 1.0 / steps
                    tt = torch.full((b,), t, device=dev)
                    logits = self.net(x, tt, mask=m)
                    probs = (logits.float() / temperature).softmax(-1)
                    draw = torch.multinomial(probs.reshape(-1, path.V).cpu(), 1, generator=generator)
                    draw = draw.reshape(b, -1).to(dev)
                    u = torch.rand(x.shape, generator=generator).to(dev)
                    unmask = (x == path.mask_id) & real & (u < path.unmask_probability(t, h))
                    x = torch.where(unmask, draw, x)
                    if callback is not None:
                        callback(k, t + h, x)
                outs.append(torch.where(real, x, torch.full_like(x, PAD)).float().cpu())
        finally:
            self.net.train(was_training)
        return torch.cat(outs) if outs else torch.empty((0, *self.shape))

    @torch.no_grad()
    def elbo(self, x: Tensor, mask: Tensor | None = None, n_mc: int = 8, generator: torch.Generator | None = None,
             batch_size: int = 512, t_min: float = 1e-3, seeds: Tensor | None = None) -> Tensor:
        """Monte-Carlo ELBO of log p_θ(x) [B] (nats) for token designs x [B, L].

        Stratified times t_j = (j + U)/n_mc (clamped to [t_min, 1 − t_min]) and masking draws come
        from ``generator``, or, with ``seeds`` [B], from one generator per design seeded by it — then
        the same design always gets the same draws (common random numbers), so differences of ELBOs
        of one design under two models carry no Monte-Carlo noise from the draws themselves."""
        dev = next(self.net.parameters()).device
        path = self.masked_path
        B, L = x.shape
        if seeds is not None:
            t_all = torch.empty(B, n_mc)
            u_all = torch.empty(B, n_mc, L)
            for i, sd in enumerate(seeds.tolist()):
                g = torch.Generator().manual_seed(int(sd))
                t_all[i] = torch.rand(n_mc, generator=g)
                u_all[i] = torch.rand(n_mc, L, generator=g)
        else:
            t_all = torch.rand(B, n_mc, generator=generator)
            u_all = torch.rand(B, n_mc, L, generator=generator)
        t_all = ((torch.arange(n_mc)[None, :] + t_all) / n_mc).clamp(t_min, 1 - t_min)
        was_training = self.net.training
        self.net.eval()
        out = []
        try:
            for i in range(0, B, batch_size):
                x1 = x[i:i + batch_size].long().to(dev)
                m = mask[i:i + batch_size].to(dev) if mask is not None else None
                real = self._real(x1, m)
                total = torch.zeros(x1.shape[0], dtype=torch.float64, device=dev)
                for j in range(n_mc):
                    t = t_all[i:i + batch_size, j].to(dev)
                    x_t = path.corrupt(x1, t, u=u_all[i:i + batch_size, j].to(dev))
                    logp = self.net(x_t, t, mask=m).float().log_softmax(-1)
                    lp = logp.gather(-1, x1.clamp(0, path.V - 1)[..., None])[..., 0]
                    masked = (x_t == path.mask_id) & real
                    total += ((lp * masked).sum(1) / (1 - t)).double()  # κ'/(1 − κ) = 1/(1 − t)
                out.append((total / n_mc).cpu())
        finally:
            self.net.train(was_training)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def content_seeds(x: Tensor, base: int = 0) -> Tensor:
    """One 63-bit seed per design [B] from its tokens x [B, L] and ``base`` (same design → same seed)."""
    import hashlib

    rows = x.round().long().cpu().numpy()
    return torch.tensor([int.from_bytes(hashlib.sha256(repr(int(base)).encode() + r.tobytes()).digest()[:8],
                                        "little") >> 1 for r in rows], dtype=torch.long)
