"""FlowModel: a velocity network, a probability path and the samplers, saved as a directory.

On disk (the layout users know from diffusers: a directory with a config and weights)::

    MODEL_DIR/flowdisco_model.json   architecture, design shape, path, domain, weights checksum
    MODEL_DIR/model.safetensors      network weights

Loading reads JSON and safetensors only: a checkpoint from someone else cannot run code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowdisco import __version__
from flowdisco.flow.discrete import DiscreteFlowModelMixin, MaskedPath
from flowdisco.flow.path import LinearGaussianPath, design_weights, get_path, masked_mse_terms, weighted_mean
from flowdisco.flow.solvers import (
    SOLVERS,
    GuidanceFn,
    NoiseSchedule,
    StepCallback,
    log_prob,
    solve_ode,
    solve_sde,
)
from flowdisco.io import CheckpointError, atomic_write_json, load_tensors, read_json, save_tensors
from flowdisco.nn.registry import build_network
from flowdisco.seeding import rand

CONFIG_NAME = "flowdisco_model.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "flowdisco-model"


class FlowModel(nn.Module):
    """A continuous flow-matching model on designs of shape ``shape``.

    net: a registered velocity network, ``net(x [B,*shape], t [B], mask=None, cond=None)``.
    Masks (1 = real entry, 0 = padding) broadcast against x and keep padding at exactly zero.
    Class-conditional models record ``extra["num_classes"]`` (index num_classes is the null class)
    and ``extra["label_dropout"]``, the probability of training on the null class (for CFG).
    """

    kind = "continuous"

    def __init__(self, network: str, network_kwargs: dict, shape: tuple[int, ...] | list[int],
                 path: str = "linear", domain: str | None = None, extra: dict | None = None,
                 net: nn.Module | None = None) -> None:
        super().__init__()
        self.network_name = network
        self.network_kwargs = dict(network_kwargs)
        self.shape = tuple(int(s) for s in shape)
        self.path_name = path
        self.domain_name = domain
        self.extra = dict(extra or {})
        self.path: LinearGaussianPath = self._make_path(path)
        self.net = net if net is not None else build_network(network, self.network_kwargs)
        # sha256 of the weights file this model was loaded from (verified by load; None when not loaded)
        self.loaded_sha256: str | None = None

    def _make_path(self, name: str) -> LinearGaussianPath:
        if name == "masked":
            raise ValueError("the masked path belongs to discrete models: build a DiscreteFlowModel "
                             "(flowdisco.flow.model_class('masked'))")
        return get_path(name)

    # ------------------------------------------------------------------ prediction
    @property
    def num_classes(self) -> int:
        return int(self.extra.get("num_classes", 0))

    @property
    def label_dropout(self) -> float:
        return float(self.extra.get("label_dropout", 0.0))

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def velocity(self, x: Tensor, t: Tensor, mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        """v_θ(x_t, t): [B, *shape]."""
        return self.net(x, t, mask=mask, cond=cond)

    def endpoint(self, x: Tensor, t: Tensor, mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        """x̂1(x_t, t) = x_t + (1 − t)·v_θ(x_t, t): [B, *shape]."""
        return self.path.endpoint(x, t, self.velocity(x, t, mask=mask, cond=cond))

    def velocity_fn(self, mask: Tensor | None = None, cond: Tensor | None = None,
                    net: nn.Module | None = None, cfg_scale: float | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """The (x, t) → v closure the solvers integrate (classifier-free guided when ``cfg_scale``)."""
        f = net if net is not None else self.net
        if cfg_scale is not None:
            if cond is None or not self.num_classes:
                raise ValueError("classifier-free guidance needs a class-conditional model and class labels")
            from flowdisco.guidance.cfg import cfg_velocity_fn

            return cfg_velocity_fn(f, cond, self.num_classes, cfg_scale, mask)
        return lambda x, t: f(x, t, mask=mask, cond=cond)

    # ------------------------------------------------------------------ training
    def training_batch(self, data: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        """Add the randomness of one training step to a data batch: times ``t`` [B] and noise ``x0``.

        Drawn for the whole (global) batch before it is split across processes, so a distributed
        run sees exactly the numbers of a single-process run.
        """
        x1 = data["x"]
        out = dict(data)
        out["t"] = rand(x1.shape[0], generator, x1.device)
        out["x0"] = self.path.sample_noise(tuple(x1.shape), generator=generator, device=x1.device,
                                           mask=data.get("mask"))
        if "cond" in data and self.label_dropout > 0:
            drop = rand(x1.shape[0], generator, x1.device) < self.label_dropout
            out["cond"] = torch.where(drop, torch.full_like(data["cond"], self.num_classes), data["cond"])
        return out

    def loss(self, batch: dict[str, Tensor], net: nn.Module | None = None) -> Tensor:
        """Flow-matching loss of a batch made by :meth:`training_batch` (``weight`` [B] optional)."""
        return weighted_mean(*self.loss_terms(batch, net))

    def loss_terms(self, batch: dict[str, Tensor], net: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        """Per-design flow-matching losses [B] and their weights [B]; the loss is Σ w·ℓ / Σ w."""
        f = net if net is not None else self.net
        mask = batch.get("mask")
        sample = self.path.interpolate(batch["x0"], batch["x"], batch["t"])
        target = getattr(self.net, "loss_target", "velocity")
        if target == "categorical":  # endpoint networks with class heads: cross-entropy of the endpoint
            per_design = f.categorical_loss_terms(sample.x_t, sample.t, batch["x"], mask=mask)
            return per_design, design_weights(per_design, batch.get("weight"))
        v = f(sample.x_t, sample.t, mask=mask, cond=batch.get("cond"))
        if target == "endpoint":
            # endpoint-parameterised networks: the MSE of the endpoint they imply, ‖x̂1 − x1‖²
            # (= the velocity loss weighted by (1 − t)², without its blow-up near t = 1)
            return masked_mse_terms(self.path.endpoint(sample.x_t, sample.t, v), batch["x"], mask=mask,
                                    weights=batch.get("weight"))
        return masked_mse_terms(v, sample.u_t, mask=mask, weights=batch.get("weight"))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, steps: int = 100, solver: str = "euler", *,
               generator: torch.Generator | None = None, noise: NoiseSchedule | None = None,
               guidance: GuidanceFn | None = None, mask: Tensor | None = None,
               cond: Tensor | None = None, x0: Tensor | None = None, cfg_scale: float | None = None,
               batch_size: int | None = None, callback: StepCallback | None = None,
               net: nn.Module | None = None) -> Tensor:
        """Draw ``n`` designs [n, *shape] (on CPU).

        solver: ``euler`` | ``heun`` (ODE) | ``euler-maruyama`` (SDE with ``noise``, default the
        memoryless schedule, and an optional ``guidance`` control). mask/cond: [n, ...] per design;
        cfg_scale: classifier-free guidance scale ω (class-conditional models). net: another network
        with the same call signature to integrate instead of ``self.net`` (an AGD student).
        The initial noise is drawn for all n designs first, so ODE samples do not depend on
        ``batch_size`` (the SDE's per-step noise does).
        """
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; available: {', '.join(SOLVERS)}")
        if n < 0:
            raise ValueError(f"number of samples must be ≥ 0, got {n}")
        if guidance is not None and solver != "euler-maruyama":
            raise ValueError("guidance needs the euler-maruyama solver")
        dev = self.device
        if x0 is None:
            x0 = torch.randn((n, *self.shape), generator=generator)
        bs = batch_size or max(n, 1)
        outs = []
        was_training = self.training
        self.eval()
        try:
            for i in range(0, n, bs):
                sl = slice(i, min(i + bs, n))
                m = mask[sl].to(dev) if mask is not None else None
                c = cond[sl].to(dev) if cond is not None else None
                xb = x0[sl].to(dev)
                vf = self.velocity_fn(mask=m, cond=c, cfg_scale=cfg_scale, net=net)
                if solver in ("euler", "heun"):
                    out = solve_ode(vf, xb, steps, method=solver, mask=m, callback=callback)
                else:
                    out = solve_sde(vf, xb, steps, noise or NoiseSchedule(), generator=generator,
                                    guidance=guidance, mask=m, callback=callback)
                outs.append(out.cpu())
        finally:
            self.train(was_training)
        return torch.cat(outs) if outs else torch.empty((0, *self.shape))

    def log_prob(self, x: Tensor, steps: int = 100, batch_size: int = 4096) -> Tensor:
        """Exact log-density log p_θ(x) [B] of designs x [B, *shape] (low-dimensional designs)."""
        dev = self.device
        vf = self.velocity_fn()
        out = [log_prob(vf, x[i:i + batch_size].to(dev), steps=steps).cpu()
               for i in range(0, x.shape[0], batch_size)]
        return torch.cat(out)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        return {"format": FORMAT, "flowdisco_version": __version__, "network": self.network_name,
                "network_kwargs": self.network_kwargs, "shape": list(self.shape), "path": self.path_name,
                "domain": self.domain_name, "extra": self.extra}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model directory; weights first, then the JSON that names their checksum."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        digest = save_tensors(directory / WEIGHTS_NAME, self.net.state_dict())
        atomic_write_json(directory / CONFIG_NAME, {**self.config(), "weights": WEIGHTS_NAME, "sha256": digest})
        return directory

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> FlowModel:
        """Load a model directory (or a run directory holding ``model/``)."""
        directory = resolve_model_dir(path)
        cfg = read_json(directory / CONFIG_NAME, what="model config")
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise CheckpointError(f"not a flowdisco model config: {directory / CONFIG_NAME}")
        try:
            klass = model_class(cfg.get("path", "linear")) if cls is FlowModel else cls
            model = klass(network=cfg["network"], network_kwargs=cfg["network_kwargs"], shape=cfg["shape"],
                        path=cfg.get("path", "linear"), domain=cfg.get("domain"), extra=cfg.get("extra"))
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"model config is invalid: {directory / CONFIG_NAME}: {e}") from None
        weights = load_tensors(directory / cfg.get("weights", WEIGHTS_NAME), expected_sha256=cfg.get("sha256"))
        load_weights_strict(model.net, weights, source=directory / cfg.get("weights", WEIGHTS_NAME))
        model.loaded_sha256 = cfg.get("sha256")
        return model.to(map_location)

    def clone(self) -> FlowModel:
        """A deep copy with the same architecture and weights."""
        twin = type(self)(self.network_name, self.network_kwargs, self.shape, self.path_name,
                          self.domain_name, self.extra)
        twin.net.load_state_dict(self.net.state_dict())
        return twin.to(self.device)


class DiscreteFlowModel(DiscreteFlowModelMixin, FlowModel):
    """A masked discrete flow (path ``masked``) on token designs [L]; ``extra["vocab_size"]`` = V.

    Same files, cloning and fine-tuning as :class:`FlowModel`; training, sampling and the ELBO come
    from :class:`flowdisco.flow.discrete.DiscreteFlowModelMixin`."""

    def __init__(self, network: str, network_kwargs: dict, shape: tuple[int, ...] | list[int],
                 path: str = "masked", domain: str | None = None, extra: dict | None = None,
                 net: nn.Module | None = None) -> None:
        if "vocab_size" not in (extra or {}):
            raise ValueError("a discrete flow model needs extra['vocab_size']")
        super().__init__(network, network_kwargs, shape, path, domain, extra, net)

    def _make_path(self, name: str) -> MaskedPath:  # type: ignore[override]
        if name != "masked":
            raise ValueError(f"a discrete flow model uses the 'masked' path, not {name!r}")
        return MaskedPath(self.vocab_size)

    def velocity_fn(self, *args: Any, **kwargs: Any) -> Callable[[Tensor, Tensor], Tensor]:
        raise TypeError("a masked discrete flow has no velocity field")

    def log_prob(self, x: Tensor, steps: int = 100, batch_size: int = 4096) -> Tensor:
        raise TypeError("exact likelihoods of masked discrete flows are not available; use elbo()")


def model_class(path: str) -> type[FlowModel]:
    """The model class of a probability path: ``masked`` → DiscreteFlowModel, else FlowModel."""
    return DiscreteFlowModel if path == "masked" else FlowModel


def resolve_model_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    if (p / CONFIG_NAME).is_file():
        return p
    if (p / "model" / CONFIG_NAME).is_file():
        return p / "model"
    if not p.exists():
        raise CheckpointError(f"model not found: {p} (expected a directory written by `flowdisco pretrain`)")
    raise CheckpointError(f"no {CONFIG_NAME} in {p}: not a flowdisco model directory")


def load_weights_strict(net: nn.Module, weights: dict[str, Tensor], source: Path | str) -> None:
    """Copy weights into ``net``; a checkpoint of another architecture fails with what differs."""
    own = net.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(own) & set(weights) if tuple(own[k].shape) != tuple(weights[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if wrong:
            parts.append("shape mismatch " + ", ".join(
                f"{k}: file {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:5]))
        raise CheckpointError(f"weights in {source} do not fit the {type(net).__name__} architecture: "
                              + "; ".join(parts))
    net.load_state_dict(weights)
