"""Guidance adapters: small modules added to chosen blocks of a frozen flow model (AGD).

A :class:`GuidanceStudent` holds a frozen class-conditional :class:`~flowdisco.flow.model.FlowModel`
and one adapter per chosen submodule of its network (dotted paths, shell wildcards allowed:
``blocks.*.attn``). A forward hook adds the adapter's output to the submodule's output. The adapters
read the guidance scale ω, the flow time t and the class c from a side channel that the student
fills for the duration of its own forward, so calling the base network directly is unaffected::

    student(x, t, cond=c, omega=ω) ≈ v(x, t, ∅) + ω·(v(x, t, c) − v(x, t, ∅))     (1 NFE instead of 2)

Both adapters end in a zero-initialised projection: an untrained student *is* the conditional model
(CFG at ω = 1). Adapters act on the last (feature) dimension of the wrapped output: token outputs
[B, N, D] and vector outputs [B, D] both work.

On disk (a directory, next to but separate from the base)::

    ADAPTER_DIR/flowdisco_adapters.json   kind, paths, sizes, the base's architecture fingerprint
    ADAPTER_DIR/adapters.safetensors      adapter weights only
    ADAPTER_DIR/base.safetensors          only for full fine-tuning (train_base=True)
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowdisco import __version__
from flowdisco.flow.model import FlowModel, load_weights_strict
from flowdisco.io import CheckpointError, atomic_write_json, load_tensors, read_json, save_tensors
from flowdisco.nn.dit import sinusoid, timestep_sinusoid
from flowdisco.seeding import seeded

CONFIG_NAME = "flowdisco_adapters.json"
WEIGHTS_NAME = "adapters.safetensors"
BASE_WEIGHTS_NAME = "base.safetensors"
FORMAT = "flowdisco-adapters"
OMEGA_MAX_PERIOD = 100.0  # ω ∈ [1, ~10]: frequencies from 1 down to 1/100 resolve it without wrapping


class GuidanceEmbedding(nn.Module):
    """Condition tokens [e_ω, e_t, e_c]: ω [B], t [B], c [B] → [B, 3, dim].

    e_ω: sinusoidal features of ω; e_t: DiT's sinusoidal features of 1000·t; e_c: a learned table with
    the null class (index num_classes), initialised at unit scale like the sinusoids."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding width must be even, got {dim}")
        self.dim = dim
        self.classes = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.classes.weight, std=1.0)

    def forward(self, omega: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        e_w = sinusoid(omega, self.dim, OMEGA_MAX_PERIOD)
        e_t = timestep_sinusoid(t, self.dim)
        return torch.stack([e_w, e_t, self.classes(cond)], dim=1)


def _broadcast(delta: Tensor, h: Tensor) -> Tensor:
    """[B, D] → [B, 1, ..., 1, D] so it adds to h [B, ..., D]."""
    return delta.view(delta.shape[0], *([1] * (h.dim() - 2)), delta.shape[-1])


class OffsetAdapter(nn.Module):
    """A per-design offset: MLP([e_ω, e_t, e_c]) → [B, D], broadcast over tokens. Last layer zero."""

    def __init__(self, num_classes: int, dim: int, embed_dim: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.embed = GuidanceEmbedding(num_classes, embed_dim)
        self.mlp = nn.Sequential(nn.Linear(3 * embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, h: Tensor, omega: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """h [B, ..., D] (the wrapped output) → offset broadcastable to h."""
        return _broadcast(self.mlp(self.embed(omega, t, cond).flatten(1)), h)


class CrossAttentionAdapter(nn.Module):
    """The wrapped output's tokens attend to the condition tokens [e_ω, e_t, e_c] (single head,
    width ``attn_dim``); the output projection is zero-initialised. h [B, N, D] (or [B, D]) → like h."""

    def __init__(self, num_classes: int, dim: int, embed_dim: int = 16, attn_dim: int = 16) -> None:
        super().__init__()
        self.embed = GuidanceEmbedding(num_classes, embed_dim)
        self.q = nn.Linear(dim, attn_dim, bias=False)
        # no bias: a key bias cannot change a softmax (its gradient is rounding noise, which Adam would
        # turn into full-size steps) and a value bias is a constant the output bias already provides
        self.kv = nn.Linear(embed_dim, 2 * attn_dim, bias=False)
        self.out = nn.Linear(attn_dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor, omega: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        tokens = h if h.dim() == 3 else h.reshape(h.shape[0], -1, h.shape[-1])
        k, v = self.kv(self.embed(omega, t, cond)).chunk(2, dim=-1)  # [B, 3, A] each
        a = F.scaled_dot_product_attention(self.q(tokens), k, v)  # [B, N, A]
        return self.out(a).reshape(h.shape)


ADAPTERS: dict[str, type[nn.Module]] = {"offset": OffsetAdapter, "cross-attention": CrossAttentionAdapter}


def resolve_paths(net: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Dotted module names of ``net`` matching any of ``patterns`` (shell wildcards), in model order."""
    names = [n for n, _ in net.named_modules() if n]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        sample = ", ".join(n for n in names if n.count(".") <= 1)
        raise ValueError(f"no submodule of {type(net).__name__} matches {list(patterns)}; modules include: {sample}")
    return chosen


def architecture_fingerprint(model: FlowModel) -> str:
    """sha256 of the network name, its settings, the design shape and every parameter's name and shape."""
    spec = {"network": model.network_name, "network_kwargs": model.network_kwargs, "shape": list(model.shape),
            "num_classes": model.num_classes,
            "parameters": [[k, list(v.shape)] for k, v in sorted(model.net.state_dict().items())]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


class GuidanceStudent(nn.Module):
    """A frozen class-conditional flow model plus guidance adapters; one NFE per sampling step.

    base: the model (its network gets forward hooks; its weights are frozen unless ``train_base``).
    Several students may share one base: a hook only acts during its own student's forward.
    adapter: ``offset`` | ``cross-attention``; paths: dotted-path patterns of the wrapped submodules;
    seed: of the adapters' initial weights.
    Call as the base network, with ω: ``student(x [B, *shape], t [B], cond=c [B], omega=ω)`` →
    velocity [B, *shape]; ω is a float or [B] and defaults to :attr:`omega`.
    """

    def __init__(self, base: FlowModel, adapter: str = "offset", paths: Sequence[str] = ("blocks.*.attn",),
                 train_base: bool = False, seed: int = 0, **adapter_kwargs: Any) -> None:
        super().__init__()
        if adapter not in ADAPTERS:
            raise ValueError(f"unknown adapter {adapter!r}; available: {', '.join(ADAPTERS)}")
        if not base.num_classes:
            raise ValueError("guidance distillation needs a class-conditional model (extra['num_classes'] > 0)")
        self.base = base
        self.kind = adapter
        self.train_base = bool(train_base)
        self.adapter_kwargs = dict(adapter_kwargs)
        self.paths = resolve_paths(base.net, paths)
        dims = self._output_dims()
        with seeded(seed):  # the adapters' initial weights (class tables, hidden layers) are reproducible
            self.adapters = nn.ModuleDict({_key(p): ADAPTERS[adapter](base.num_classes, dims[p], **adapter_kwargs)
                                           for p in self.paths}).to(base.device)
        self.omega: float = 1.0
        self._channel: tuple[Tensor, Tensor, Tensor] | None = None  # (ω, t, c) during a student forward
        base.requires_grad_(self.train_base)
        if not self.train_base:
            base.eval()
        modules = dict(base.net.named_modules())
        self._hooks = [modules[p].register_forward_hook(self._hook(_key(p))) for p in self.paths]

    # ------------------------------------------------------------------ wiring
    @torch.no_grad()
    def _output_dims(self) -> dict[str, int]:
        """Feature width of each wrapped submodule's output, from one probe forward."""
        dims: dict[str, int] = {}
        modules = dict(self.base.net.named_modules())
        hooks = [modules[p].register_forward_hook(lambda _m, _i, out, p=p: dims.__setitem__(p, out.shape[-1]))
                 for p in self.paths]
        dev = self.base.device
        was = self.base.net.training
        self.base.net.eval()  # in training mode MP layers would renormalise the stored weights
        try:
            self.base.net(torch.zeros(1, *self.base.shape, device=dev), torch.full((1,), 0.5, device=dev),
                          cond=torch.zeros(1, dtype=torch.long, device=dev))
        finally:
            for h in hooks:
                h.remove()
            self.base.net.train(was)
        missing = [p for p in self.paths if p not in dims]
        if missing:
            raise ValueError(f"submodules {missing} are not used in the network's forward pass")
        return dims

    def _hook(self, key: str):
        def add_adapter(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor | None:
            if self._channel is None or not isinstance(output, Tensor):
                return None  # the base network called on its own: unchanged
            omega, t, cond = self._channel
            return output + self.adapters[key](output, omega, t, cond)
        return add_adapter

    def detach(self) -> None:
        """Remove the hooks: the base network is exactly as before (weights untouched unless train_base)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def train(self, mode: bool = True) -> GuidanceStudent:
        """Train mode for the adapters only: a frozen base stays in eval mode (MP layers renormalise
        their stored weights in training mode, which would change the frozen base in place)."""
        super().train(mode)
        if not self.train_base:
            self.base.eval()
        return self

    # ------------------------------------------------------------------ prediction
    def forward(self, x: Tensor, t: Tensor, mask: Tensor | None = None, cond: Tensor | None = None,
                omega: float | Tensor | None = None) -> Tensor:
        if cond is None:
            raise ValueError("the guidance student needs class labels (cond)")
        w = self.omega if omega is None else omega
        w = w.to(x) if isinstance(w, Tensor) else torch.full((x.shape[0],), float(w), device=x.device)
        self._channel = (w, t, cond)
        try:
            return self.base.net(x, t, mask=mask, cond=cond)
        finally:
            self._channel = None

    @contextmanager
    def scale(self, omega: float) -> Iterator[GuidanceStudent]:
        """``with student.scale(3.0): base.sample(..., net=student)`` — the default ω inside."""
        old, self.omega = self.omega, float(omega)
        try:
            yield self
        finally:
            self.omega = old

    @torch.no_grad()
    def sample(self, n: int, omega: float, cond: Tensor, **kwargs: Any) -> Tensor:
        """Samples [n, *shape] at guidance ω with one NFE per step (any solver of FlowModel.sample)."""
        was = self.training
        self.eval()
        try:
            with self.scale(omega):
                return self.base.sample(n, cond=cond, net=self, **kwargs)
        finally:
            self.train(was)

    # ------------------------------------------------------------------ sizes
    def adapter_parameters(self) -> int:
        return sum(p.numel() for p in self.adapters.parameters())

    def base_parameters(self) -> int:
        return sum(p.numel() for p in self.base.net.parameters())

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def parameter_report(self) -> dict[str, float]:
        base, adapters, trainable = self.base_parameters(), self.adapter_parameters(), self.trainable_parameters()
        return {"base_parameters": base, "adapter_parameters": adapters, "trainable_parameters": trainable,
                "adapter_fraction": adapters / base, "trainable_fraction": trainable / base}

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        return {"format": FORMAT, "flowdisco_version": __version__, "adapter": self.kind, "paths": self.paths,
                "adapter_kwargs": self.adapter_kwargs, "train_base": self.train_base,
                "base": {"network": self.base.network_name, "network_kwargs": self.base.network_kwargs,
                         "shape": list(self.base.shape), "domain": self.base.domain_name,
                         "fingerprint": architecture_fingerprint(self.base)},
                **self.parameter_report()}

    def save(self, directory: str | os.PathLike, info: dict | None = None) -> Path:
        """Write the adapters (and, for full fine-tuning, the base weights) to ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = self.config()
        cfg["sha256"] = save_tensors(d / WEIGHTS_NAME, self.adapters.state_dict())
        if self.train_base:
            cfg["base_sha256"] = save_tensors(d / BASE_WEIGHTS_NAME, self.base.net.state_dict())
        atomic_write_json(d / CONFIG_NAME, {**cfg, "info": info or {}})
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, base: FlowModel) -> GuidanceStudent:
        """Adapters saved by :meth:`save`, attached to ``base`` (cloned first when the directory also
        holds fine-tuned base weights). A base of another architecture fails with a clear error."""
        d = Path(directory)
        cfg = read_json(d / CONFIG_NAME, what="adapter config")
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise CheckpointError(f"not a flowdisco adapter config: {d / CONFIG_NAME}")
        want = cfg.get("base", {})
        if want.get("fingerprint") != architecture_fingerprint(base):
            raise CheckpointError(
                f"the adapters in {d} were trained on a base with another architecture "
                f"({want.get('network')} {want.get('network_kwargs')}, shape {want.get('shape')}); this base is "
                f"{base.network_name} {base.network_kwargs}, shape {list(base.shape)}. Load them onto that model.")
        if cfg.get("train_base"):
            base = base.clone()
            load_weights_strict(base.net, load_tensors(d / BASE_WEIGHTS_NAME, expected_sha256=cfg.get("base_sha256")),
                                source=d / BASE_WEIGHTS_NAME)
        try:
            student = cls(base, adapter=cfg["adapter"], paths=cfg["paths"], train_base=bool(cfg.get("train_base")),
                          **cfg.get("adapter_kwargs", {}))
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"adapter config is invalid: {d / CONFIG_NAME}: {e}") from None
        weights = load_tensors(d / WEIGHTS_NAME, expected_sha256=cfg.get("sha256"))
        try:
            load_weights_strict(student.adapters, weights, source=d / WEIGHTS_NAME)
        except CheckpointError:
            student.detach()
            raise
        return student.to(base.device).eval()


def _key(path: str) -> str:
    return path.replace(".", "-")  # ModuleDict keys cannot contain dots
