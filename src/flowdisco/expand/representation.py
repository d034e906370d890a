"""ActFlow's learned representation φ_s.

φ_s(x) = L2-normalise(pool(h_ℓ(x_s; s, θ))), with x_s = s·x + (1 − s)·ε the design noised to flow
time s, h_ℓ the output of the network module named ℓ (read by a forward hook) of the *current*
network, and pool the mean over the set/sequence axis (padding masked). It is neither an ODE
inversion nor the noise latent, and it changes whenever θ changes, so the features of the whole
buffer are recomputed every round.

With ``layer=None`` φ is the raw design itself (the paper's 2-D toy), flattened, not normalised.
With ``layer="descriptors"`` (:class:`DescriptorRepresentation`, beyond the paper) the features are the
domain's own descriptors of the decoded designs: fixed, not learned, and without gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Representation:
    """Features [B, d] of designs x [B, *shape] under a model (differentiable in x).

    model: a FlowModel (uses ``model.net``); layer: dotted module name inside the network or None;
    s: representation time; normalize: L2-normalise the pooled features (default: when a layer is
    read); generator: the noise ε is drawn from it.
    """

    def __init__(self, model: nn.Module, layer: str | None = None, s: float = 1.0,
                 normalize: bool | None = None) -> None:
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"representation time s must be in [0, 1], got {s}")
        self.model = model
        self.layer = layer
        self.s = float(s)
        self.normalize = (layer is not None) if normalize is None else normalize
        if layer is not None:
            try:
                model.net.get_submodule(layer)
            except AttributeError:
                names = [n for n, _ in model.net.named_modules() if n]
                raise ValueError(f"network has no module {layer!r}; available: {', '.join(names[:30])} "
                                 f"(or {DESCRIPTORS!r}: the domain's own descriptors)") from None

    def __call__(self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        feats = x.reshape(x.shape[0], -1) if self.layer is None else self._hidden(x, mask, generator)
        if self.normalize:
            feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return feats

    def _hidden(self, x: Tensor, mask: Tensor | None, generator: torch.Generator | None) -> Tensor:
        eps = torch.randn(x.shape, generator=generator).to(x.device)
        if mask is not None:
            eps = eps * mask
        x_s = self.s * x + (1 - self.s) * eps
        t = torch.full((x.shape[0],), self.s, device=x.device)
        captured: list[Tensor] = []
        module = self.model.net.get_submodule(self.layer)
        handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.model.net(x_s, t, mask=mask)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"module {self.layer!r} was not called in the forward pass")
        return pool(captured[-1], mask)

    @torch.no_grad()
    def features(self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None,
                 batch_size: int = 1024) -> Tensor:
        """Features of many designs without gradients, in batches: [N, d]."""
        was = self.model.training
        self.model.eval()
        try:
            dev = next(self.model.parameters()).device
            out = [self(x[i:i + batch_size].to(dev), None if mask is None else mask[i:i + batch_size].to(dev),
                        generator).cpu() for i in range(0, x.shape[0], batch_size)]
        finally:
            self.model.train(was)
        return torch.cat(out) if out else torch.empty(0)


def pool(h: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the set/sequence axis: [B, d] stays; [B, N, d] → [B, d] (masked by mask [B, N, ...])."""
    if h.dim() == 2:
        return h
    h = h.reshape(h.shape[0], h.shape[1], -1)
    if mask is None:
        return h.mean(1)
    # [:, :n]: token graphs (molecule domains' discrete variants) list their n atoms before their pairs
    m = mask.reshape(mask.shape[0], mask.shape[1], -1)[:, : h.shape[1], :1].to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


DESCRIPTORS = "descriptors"  # representation_layer value: the domain's own descriptors instead of a layer


class DescriptorRepresentation:
    """Features [B, d] of designs x [B, *shape]: the domain's descriptors of the decoded designs (molecules:
    Morgan fingerprints), L2-normalised; a design that does not decode gets the zero vector.

    Not φ of the paper (a layer of the network): it does not change with θ and has no gradient, so it
    serves reward-tilted fine-tuning and uncertainty selection, not gradient guidance. The call
    signature is that of :class:`Representation` (mask and generator are not used).
    """

    def __init__(self, domain: Any) -> None:
        self.domain = domain
        self.layer, self.s = DESCRIPTORS, 1.0
        self.dim: int | None = None  # descriptor width, known from the first design that decodes

    def __call__(self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        designs = self.domain.decode_safe(x.cpu())
        ok = [i for i, d in enumerate(designs) if d is not None]
        if ok:
            desc = self.domain.descriptors([designs[i] for i in ok]).double()
            self.dim = desc.shape[1]
        feats = torch.zeros(x.shape[0], self._width(), dtype=torch.float64)
        if ok:
            feats[torch.tensor(ok)] = desc / desc.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return feats.float()

    def _width(self) -> int:
        """The descriptor width d, also for a batch in which no design decodes (all rows zero then)."""
        if self.dim is None:
            try:
                self.dim = int(self.domain.descriptors([]).shape[1])
            except (ValueError, IndexError, RuntimeError) as err:
                raise ValueError(f"{type(self.domain).__name__}.descriptors([]) gives no width and no design "
                                 "has decoded yet, so the descriptor representation cannot size its features") from err
        return self.dim

    def features(self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None,
                 batch_size: int = 1024) -> Tensor:
        """The same for many designs, ``batch_size`` at a time: [N, d]."""
        if x.shape[0] == 0:
            return torch.zeros(0, self._width())
        return torch.cat([self(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def make_representation(model: nn.Module, layer: str | None, s: float,
                        domain: Any = None) -> Representation | DescriptorRepresentation:
    """φ_s read at ``layer`` of the model's network, or (``layer="descriptors"``) the domain's descriptors."""
    if layer == DESCRIPTORS:
        if domain is None or not hasattr(domain, "descriptors"):
            raise ValueError("representation_layer='descriptors' needs a domain with descriptors")
        return DescriptorRepresentation(domain)
    return Representation(model, layer, s)
