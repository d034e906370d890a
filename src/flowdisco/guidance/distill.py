"""Guidance distillation: train a :class:`GuidanceStudent` to output the CFG velocity in one pass.

    L(φ) = E ‖ f_φ(x_t, t, c, ω) − [v(x_t, t, ∅) + ω·(v(x_t, t, c) − v(x_t, t, ∅))] ‖²

Two sources of (x_t, t, c, ω, target), both trained by flowdisco's one loop, :func:`fit`:

- ``trajectories`` (AGD): states recorded from the CFG teacher's sampler, targets stored at
  collection time (:mod:`flowdisco.guidance.trajectories`); no teacher pass during training.
- ``standard`` (the earlier guidance distillation's inputs): training images forward-noised along
  the flow path, x_t = t·x1 + (1 − t)·x0 with t ~ U[0, 1], ω ~ U[ω_min, ω_max] per row; the teacher's
  CFG target computed online.

Full fine-tuning (Meng et al.'s guidance distillation) is a student with ``train_base=True``
and an ω-embedding offset on the network's conditioning output (:func:`full_finetune_student`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowdisco.flow.fit import FitConfig, FitResult, fit
from flowdisco.flow.model import FlowModel
from flowdisco.flow.path import masked_mse_terms, weighted_mean
from flowdisco.guidance.adapters import GuidanceStudent
from flowdisco.guidance.cfg import cfg_velocity
from flowdisco.guidance.trajectories import TrajectoryStore

SOURCES = ("trajectories", "standard")


@dataclass
class DistillConfig:
    """Settings of one distillation (the spec's recipe: AdamW, 10 % linear warm-up, cosine decay)."""

    steps: int = 5000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_fraction: float = 0.1
    grad_clip: float | None = 1.0
    omega_range: tuple[float, float] = (1.0, 5.0)  # ``standard`` source only (trajectories carry their ω)
    checkpoint_every: int = 500  # resumable checkpoints in state_dir (a killed run loses at most this many steps)
    seed: int = 0
    progress: bool = True

    def fit_config(self) -> FitConfig:
        return FitConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, grad_clip=self.grad_clip,
                         warmup_steps=int(self.warmup_fraction * self.steps), schedule="cosine", seed=self.seed,
                         progress=self.progress, desc="distill guidance", log_every=100,
                         checkpoint_every=self.checkpoint_every)


class GuidanceDistillation:
    """The training problem fit() solves (its ``TrainableModel`` protocol): ``net`` is the student.

    teacher: the frozen CFG teacher for the ``standard`` source (default: the student's own base,
    called without the adapters); full fine-tuning must pass an untouched copy.
    """

    def __init__(self, student: GuidanceStudent, source: str = "trajectories", teacher: FlowModel | None = None,
                 omega_range: tuple[float, float] = (1.0, 5.0)) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown distillation data source {source!r}; available: {', '.join(SOURCES)}")
        if source == "standard" and student.train_base and (teacher is None or teacher is student.base):
            raise ValueError("full fine-tuning changes the base: pass a frozen copy of it as the teacher")
        self.net = student
        self.source = source
        self.teacher = teacher if teacher is not None else student.base
        self.omega_range = (float(omega_range[0]), float(omega_range[1]))

    def training_batch(self, data: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        """Trajectory rows are complete; standard rows get t, noise, ω and the online CFG target."""
        if self.source == "trajectories":
            return data
        x1, cond = data["x"], data["cond"]
        B, dev = x1.shape[0], x1.device
        t = torch.rand(B, generator=generator).to(dev)
        x0 = torch.randn(x1.shape, generator=generator).to(dev)
        lo, hi = self.omega_range
        omega = (lo + (hi - lo) * torch.rand(B, generator=generator)).to(dev)
        x_t = self.teacher.path.interpolate(x0, x1, t).x_t
        with torch.no_grad():
            target = cfg_velocity(self.teacher.net, x_t, t, cond, self.teacher.num_classes, omega)
        return {"x": x_t, "t": t, "cond": cond, "omega": omega, "target": target}

    def loss_terms(self, batch: dict[str, Tensor], net: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        """Per-row squared error to the CFG target [B] (mean over the image), unit weights [B]."""
        f = net if net is not None else self.net
        v = f(batch["x"], batch["t"], cond=batch["cond"], omega=batch["omega"])
        return masked_mse_terms(v, batch["target"])

    def loss(self, batch: dict[str, Tensor], net: nn.Module | None = None) -> Tensor:
        return weighted_mean(*self.loss_terms(batch, net))


def full_finetune_student(base: FlowModel, path: str = "cond", **adapter_kwargs: Any) -> GuidanceStudent:
    """All weights of a copy of ``base`` trainable, plus a zero-initialised ω embedding (an offset
    adapter) added to the output of its conditioning module ``path``."""
    return GuidanceStudent(base.clone(), adapter="offset", paths=[path], train_base=True, **adapter_kwargs)


def distill(student: GuidanceStudent, config: DistillConfig, *, trajectories: TrajectoryStore | None = None,
            images: dict[str, Tensor] | None = None, teacher: FlowModel | None = None,
            state_dir: str | os.PathLike | None = None, resume: bool = False, on_log=None) -> FitResult:
    """Train the student in place, on CFG ``trajectories`` (AGD) or on standard forward-noised
    ``images`` ({"x": [N, *shape], "cond": [N]}) with the teacher's CFG targets computed online."""
    if (trajectories is None) == (images is None):
        raise ValueError("give exactly one data source: trajectories (AGD) or images (standard inputs)")
    if trajectories is not None:
        if tuple(trajectories.x.shape[1:]) != student.base.shape:
            raise ValueError(f"the trajectories hold designs of shape {tuple(trajectories.x.shape[1:])}, the model "
                             f"makes {student.base.shape}: collect them with this model")
        if int(trajectories.cond.max()) >= student.base.num_classes:
            raise ValueError(f"the trajectories use class {int(trajectories.cond.max())}, the model has "
                             f"{student.base.num_classes} classes: collect them with this model")
        problem = GuidanceDistillation(student, "trajectories")
        data = trajectories.as_data()
    else:
        if "cond" not in images:
            raise ValueError("standard-data distillation needs class labels (images['cond'])")
        problem = GuidanceDistillation(student, "standard", teacher=teacher, omega_range=config.omega_range)
        data = {"x": images["x"], "cond": images["cond"]}
    result = fit(problem, data, config.fit_config(), state_dir=state_dir, resume=resume, on_log=on_log)
    student.eval()
    return result

