"""fit(): the one training loop of flowdisco.

Pre-training, ActFlow's UpdateFlow and the image experiments all call it. Per step:
  1. draw a global batch of data indices and the model's training randomness (t, noise, ...)
     from one seeded generator, then take this process's share (so 1 or N processes see the
     same numbers);
  2. the gradient of the batch loss Σ w·ℓ / Σ w, computed as a sum over ``grad_shards`` equal pieces of
     the batch: each process takes its pieces, the per-piece gradients are gathered and summed in piece
     order, so the result depends on the number of pieces and never on the number of processes;
  3. optional negative gradient on a second data set (ActFlow's "invalid designs");
  4. gradient clipping, AdamW step with a stateless learning-rate schedule, optional EMA update;
  5. periodic checkpoint of everything needed to resume bit-exactly (weights, optimizer, EMA,
     generator state, step, loss history), written atomically.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from flowdisco import dist, faults
from flowdisco.io import CheckpointError, load_state, save_state, save_tensors
from flowdisco.nn.ema import PowerEMA
from flowdisco.nn.mp import normalisation_once
from flowdisco.progress import progress_bar


@dataclass
class FitConfig:
    """Settings of one call of :func:`fit` (a dataclass: stored as JSON in run directories)."""

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    warmup_steps: int = 0
    schedule: str = "constant"  # constant | cosine | inv-sqrt
    ema_sigma_rel: float | None = None  # power-function EMA (EDM2) when set
    ema_snapshot_sigma_rels: tuple[float, ...] = ()  # extra EMAs stored as snapshots for post-hoc EMA
    ema_snapshot_every: int = 0  # steps between snapshots (needs state_dir)
    negative_scale: float = 0.0  # c: subtract the loss gradient on negatives, rescaled to c·‖g_pos‖
    negative_clip: float | None = 0.1  # clip of the combined gradient when negatives are used
    # pieces the global batch is cut into for the gradient (None: one per process). With a fixed number
    # the weights are bit-identical under any process count that divides it (1, 2, ... processes).
    grad_shards: int | None = None
    checkpoint_every: int = 0  # steps between resumable checkpoints (0: only at the end)
    # stop at the first log step after this many seconds (None: run all steps); the weights, EMA and
    # a checkpoint are kept as at that step, and FitResult.steps says how far it got
    time_limit: float | None = None
    log_every: int = 50
    seed: int = 0
    progress: bool = True
    desc: str = "fit"

    def validate(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be ≥ 0, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.schedule not in ("constant", "cosine", "inv-sqrt"):
            raise ValueError(f"unknown lr schedule {self.schedule!r}; available: constant, cosine, inv-sqrt")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.negative_scale < 0:
            raise ValueError(f"negative_scale must be ≥ 0, got {self.negative_scale}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {self.time_limit}")
        if self.grad_shards is not None and (self.grad_shards < 1 or self.batch_size % self.grad_shards):
            raise ValueError(f"grad_shards must be ≥ 1 and divide batch_size {self.batch_size}, got {self.grad_shards}")

    def lr_at(self, step: int) -> float:
        """Learning rate for 0-based ``step``: linear warm-up, then the schedule."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.schedule == "cosine":
            frac = min(1.0, step / max(1, self.steps))
            decay = 0.5 * (1 + math.cos(math.pi * frac))
        elif self.schedule == "inv-sqrt":
            ref = max(1, self.warmup_steps)
            decay = 1.0 / math.sqrt(max(1.0, step / ref))
        else:
            decay = 1.0
        return self.lr * warm * decay


@dataclass
class FitResult:
    losses: list[float] = field(default_factory=list)  # mean loss per log interval
    steps: int = 0
    seconds: float = 0.0
    ema: PowerEMA | None = None
    resumed_from: int = 0


class TrainableModel:  # documentation of the protocol fit() needs (FlowModel implements it)
    net: nn.Module

    def training_batch(self, data: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]: ...
    def loss_terms(self, batch: dict[str, Tensor], net: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        """Per-design losses ℓ [B] and weights w [B]; the batch loss is Σ w·ℓ / Σ w."""


def as_data(data: Tensor | dict[str, Tensor]) -> dict[str, Tensor]:
    """A tensor of designs [N, *shape] or a dict of aligned tensors (x, mask, cond, weight, draw).

    ``weight`` [N] scales each design's loss inside its batch (Σ w·ℓ / Σ w); ``draw`` [N] makes batches
    draw design i with probability draw_i / Σ draw instead of uniformly. Mixing data sets of very
    different sizes needs ``draw``: tiny loss weights on a large set would not give it a small share,
    since each batch renormalises its own weights."""
    d = {"x": data} if isinstance(data, Tensor) else dict(data)
    if "x" not in d:
        raise ValueError("training data needs an 'x' entry")
    n = d["x"].shape[0]
    if n == 0:
        raise ValueError("training data is empty")
    for k, v in d.items():
        if v.shape[0] != n:
            raise ValueError(f"training data entry {k!r} has {v.shape[0]} rows, 'x' has {n}")
    if "draw" in d:
        p = d["draw"]
        if p.dim() != 1 or not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or not float(p.sum()) > 0:
            raise ValueError("training data entry 'draw' must be finite, non-negative draw probabilities [N] "
                             "with a positive sum")
        d["draw"] = p.double()  # once here, not at every batch draw
    return d


def _draw_batch(model: TrainableModel, data: dict[str, Tensor], batch_size: int,
                generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    """One global batch (with replacement; by the ``draw`` probabilities where given, else uniform) plus
    the model's randomness — the same on every rank."""
    if "draw" in data:
        idx = torch.multinomial(data["draw"], batch_size, replacement=True, generator=generator)
    else:
        idx = torch.randint(data["x"].shape[0], (batch_size,), generator=generator)
    batch = {k: v[idx].to(device) for k, v in data.items() if k != "draw"}
    return model.training_batch(batch, generator)


def batch_gradient(model: TrainableModel, net: nn.Module, params: list[nn.Parameter], batch: dict[str, Tensor],
                   shards: int) -> Tensor:
    """Set ``p.grad`` to ∇ of the batch loss Σ w·ℓ / Σ w and return that loss (a scalar).

    The batch is cut into ``shards`` equal pieces; this process computes the gradient of Σ w·ℓ on its
    contiguous run of pieces, one piece at a time; the per-piece gradients and weight sums of all
    processes are gathered and added in piece order. Same pieces, same additions: the result is
    bit-identical for any number of processes that divides ``shards``."""
    ws, r = dist.world_size(), dist.rank()
    per = batch["x"].shape[0] // shards
    flats, sums = [], []
    with normalisation_once(net):  # MP layers: the same weights for every piece (see nn.mp)
        for s in range(r * shards // ws, (r + 1) * shards // ws):
            piece = {k: v[s * per:(s + 1) * per] for k, v in batch.items()}
            ell, w = model.loss_terms(piece, net)
            numerator = (w * ell).sum()
            for p in params:
                p.grad = None
            numerator.backward()
            flats.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                    for p in params]))
            sums.append(torch.stack([w.detach().sum(), numerator.detach()]).to(flats[-1].dtype))
    grads, totals = dist.all_gather_cat(torch.stack(flats)), dist.all_gather_cat(torch.stack(sums))
    grad, weight, numerator = grads[0], totals[0, 0], totals[0, 1]
    for i in range(1, shards):  # a fixed order of additions
        grad, weight, numerator = grad + grads[i], weight + totals[i, 0], numerator + totals[i, 1]
    grad = grad / weight.clamp_min(1e-12)
    offset = 0
    for p in params:
        p.grad = grad[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    return numerator / weight.clamp_min(1e-12)


def _grads(params: list[nn.Parameter]) -> list[Tensor]:
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def _norm(gs: list[Tensor]) -> Tensor:
    return torch.sqrt(sum((g.float() ** 2).sum() for g in gs))


def fit(model: TrainableModel, data: Tensor | dict[str, Tensor], config: FitConfig, *,
        negatives: Tensor | dict[str, Tensor] | None = None,
        state_dir: str | os.PathLike | None = None, resume: bool = False,
        on_log: Callable[[dict], None] | None = None) -> FitResult:
    """Train ``model.net`` in place on ``data`` with the flow-matching (or the model's own) loss.

    data: [N, *shape] or {"x": [N, *shape], "mask": ..., "cond": [N], "weight": [N], "draw": [N]}
    (see :func:`as_data`).
    negatives: designs whose loss gradient is *subtracted* (scaled to ``negative_scale``·‖g_pos‖).
    state_dir: where resumable checkpoints go; with ``resume=True`` a checkpoint found there is
    continued (a run killed mid-way and resumed ends with exactly the same weights).
    Returns the loss history; with ``ema_sigma_rel`` set the EMA copy is in ``result.ema``.
    """
    config.validate()
    dist.init(model.net.parameters().__next__().device)
    ws = dist.world_size()
    shards = config.grad_shards or ws
    if shards % ws or config.batch_size % shards:
        raise ValueError(f"cannot share batches of {config.batch_size} in {shards} gradient pieces among {ws} "
                         "processes: grad_shards must be a multiple of the process count and divide batch_size")
    if config.ema_snapshot_every and state_dir is None:
        raise ValueError("EMA snapshots (ema_snapshot_every) need a state_dir to be written to")
    data = as_data(data)
    neg = as_data(negatives) if negatives is not None and config.negative_scale > 0 else None
    device = next(model.net.parameters()).device
    net = model.net
    net.train()
    dist.broadcast_module(net)  # every rank starts from rank 0's weights
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)
    ema = PowerEMA(net, config.ema_sigma_rel) if config.ema_sigma_rel else None
    snap_emas = [PowerEMA(net, s) for s in config.ema_snapshot_sigma_rels] if config.ema_snapshot_every else []
    gen = torch.Generator().manual_seed(int(config.seed))
    result = FitResult(ema=ema)
    start = 0

    running, count = 0.0, 0  # loss sum over the current log interval (kept on the device: no sync per step)
    state_path = Path(state_dir) if state_dir is not None else None
    if resume and state_path is not None and (state_path / "fit_state.json").is_file():
        start, running, count = _restore(state_path, net, opt, ema, gen, result, config, snap_emas)
        result.resumed_from = start

    t_start = time.perf_counter()
    bar = progress_bar(config.steps, config.desc, enabled=config.progress, initial=start)
    total = torch.tensor(running, dtype=torch.float64, device=device)
    done = start
    for step in range(start, config.steps):
        for g in opt.param_groups:
            g["lr"] = config.lr_at(step)
        batch = _draw_batch(model, data, config.batch_size, gen, device)
        loss = batch_gradient(model, net, params, batch, shards)
        if neg is not None:
            _apply_negative_gradient(model, net, params, neg, config, gen, device, shards)
        elif config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(net)
        for e in snap_emas:
            e.update(net)
        total = total + loss.detach().double()
        count += 1
        done = step + 1
        out_of_time = False
        if done % config.log_every == 0 or done == config.steps:
            running = float(total)  # the one host-device sync of a log interval
            if not math.isfinite(running):
                raise FloatingPointError(f"{config.desc}: the loss became {running} within steps "
                                         f"{done - count + 1}–{done}; lower the learning rate "
                                         f"(now {config.lr_at(step):.3g})")
            mean = float(dist.all_reduce_mean(torch.tensor(running / count)))
            result.losses.append(mean)
            bar.set_postfix(loss=f"{mean:.4f}")
            if on_log is not None and dist.is_main():
                on_log({"step": done, "loss": mean, "lr": config.lr_at(step)})
            total, running, count = torch.zeros_like(total), 0.0, 0
            if config.time_limit is not None:  # rank 0's clock decides for every rank
                out_of_time = bool(dist.broadcast_object(time.perf_counter() - t_start > config.time_limit))
        bar.update(1)
        if snap_emas and state_path is not None and done % config.ema_snapshot_every == 0 and dist.is_main():
            for e in snap_emas:
                save_tensors(state_path / "ema_snapshots" / f"{done:08d}-{e.sigma_rel:g}.safetensors",
                             e.net.state_dict())
        if state_path is not None and config.checkpoint_every and done % config.checkpoint_every == 0 \
                and done < config.steps and not out_of_time:
            _checkpoint(state_path, net, opt, ema, gen, result, done, config, (float(total), count), snap_emas)
        faults.point("fit")
        if out_of_time:
            break
    bar.close()
    result.steps = done
    result.seconds = time.perf_counter() - t_start
    if state_path is not None and done > start:
        _checkpoint(state_path, net, opt, ema, gen, result, done, config, (float(total), count), snap_emas)
    return result


def _apply_negative_gradient(model: TrainableModel, net: nn.Module, params: list[nn.Parameter],
                             neg: dict[str, Tensor], config: FitConfig, gen: torch.Generator,
                             device: torch.device, shards: int) -> None:
    """g ← g_pos − c·(‖g_pos‖/‖g_neg‖)·g_neg, then clip to ``negative_clip``."""
    g_pos = _grads(params)
    nb = _draw_batch(model, neg, config.batch_size, gen, device)
    batch_gradient(model, net, params, nb, shards)
    for p, g in zip(params, combine_negative_gradient(g_pos, _grads(params), config.negative_scale), strict=True):
        p.grad = g
    clip = config.negative_clip if config.negative_clip is not None else config.grad_clip
    if clip is not None:
        nn.utils.clip_grad_norm_(params, clip)


def combine_negative_gradient(g_pos: list[Tensor], g_neg: list[Tensor], c: float) -> list[Tensor]:
    """g_pos − c·(‖g_pos‖/‖g_neg‖)·g_neg: the subtracted part has norm c·‖g_pos‖ (global norms)."""
    scale = c * _norm(g_pos) / _norm(g_neg).clamp_min(1e-12)
    return [gp - scale * gn for gp, gn in zip(g_pos, g_neg, strict=True)]


def _checkpoint(path: Path, net: nn.Module, opt: torch.optim.Optimizer, ema: PowerEMA | None,
                gen: torch.Generator, result: FitResult, step: int, config: FitConfig,
                interval: tuple[float, int], snap_emas: list[PowerEMA]) -> None:
    if dist.is_main():
        state = {"step": step, "net": net.state_dict(), "opt": opt.state_dict(), "interval": list(interval),
                 "snapshot_emas": [e.state_dict() for e in snap_emas],
                 "ema": ema.state_dict() if ema is not None else None,
                 "generator": gen.get_state(), "losses": list(result.losses),
                 "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}}
        save_state(path, "fit_state", state)
    dist.barrier()


def _restore(path: Path, net: nn.Module, opt: torch.optim.Optimizer, ema: PowerEMA | None,
             gen: torch.Generator, result: FitResult, config: FitConfig,
             snap_emas: list[PowerEMA]) -> tuple[int, float, int]:
    state = load_state(path, "fit_state")
    saved = state.get("config", {})
    for key in ("batch_size", "lr", "seed", "steps"):
        if key in saved and saved[key] != getattr(config, key):
            raise CheckpointError(
                f"cannot resume from {path}: it was trained with {key}={saved[key]}, now {getattr(config, key)}")
    try:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"training state in {path} does not fit this model: {e}") from None
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    for e, saved_e in zip(snap_emas, state.get("snapshot_emas", []), strict=False):
        e.load_state_dict(saved_e)
    gen.set_state(state["generator"])
    result.losses = list(state.get("losses", []))
    running, count = state.get("interval", [0.0, 0])
    return int(state["step"]), float(running), int(count)
