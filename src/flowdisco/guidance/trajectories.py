"""CFG-teacher trajectories: every state the guided sampler visits, with its guided velocity.

For each trajectory a class c and a scale ω ~ U[ω_min, ω_max] are drawn; the teacher's ODE sampler
(Euler or Heun, K steps, classifier-free guidance in one doubled batch) runs from fresh noise and
every velocity evaluation (x_t, t, c, ω, v_ω(x_t, t, c)) is recorded — Heun's corrector states
included. AGD trains on these states, so the student learns exactly where it will be used.

On disk: ``trajectories.safetensors`` (x, t, cond, omega, target) + ``trajectories.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from flowdisco.flow.model import FlowModel
from flowdisco.flow.solvers import solve_ode
from flowdisco.guidance.cfg import cfg_velocity
from flowdisco.io import CheckpointError, atomic_write_json, load_tensors, read_json, save_tensors
from flowdisco.progress import progress_bar

FIELDS = ("x", "t", "cond", "omega", "target")


@dataclass
class TrajectoryStore:
    """M recorded sampler states: x [M, *shape], t [M], cond [M] (long), omega [M], target [M, *shape]."""

    x: Tensor
    t: Tensor
    cond: Tensor
    omega: Tensor
    target: Tensor
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = self.x.shape[0]
        for name in FIELDS:
            if getattr(self, name).shape[0] != m:
                raise ValueError(f"trajectory field {name!r} has {getattr(self, name).shape[0]} rows, x has {m}")
        if self.target.shape != self.x.shape:
            raise ValueError(f"targets {tuple(self.target.shape)} do not match states {tuple(self.x.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]

    def as_data(self) -> dict[str, Tensor]:
        """The rows as fit() data (``x`` is the state x_t)."""
        return {name: getattr(self, name) for name in FIELDS}

    def save(self, directory: str | os.PathLike) -> Path:
        d = Path(directory)
        digest = save_tensors(d / "trajectories.safetensors", self.as_data())
        atomic_write_json(d / "trajectories.json", {**self.info, "states": len(self), "sha256": digest})
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TrajectoryStore:
        d = Path(directory)
        info = read_json(d / "trajectories.json", what="trajectory info")
        tensors = load_tensors(d / "trajectories.safetensors", expected_sha256=info.get("sha256"))
        missing = [f for f in FIELDS if f not in tensors]
        if missing:
            raise CheckpointError(f"{d / 'trajectories.safetensors'} lacks {missing}: not a trajectory store")
        try:
            return cls(**{f: tensors[f] for f in FIELDS}, info=info)
        except ValueError as e:
            raise CheckpointError(f"{d}: {e}") from None


@torch.no_grad()
def collect_trajectories(model: FlowModel, per_class: int = 100, omega_range: tuple[float, float] = (1.0, 5.0),
                         steps: int = 50, solver: str = "euler", seed: int = 0, batch_size: int = 250,
                         progress: bool = True) -> TrajectoryStore:
    """Run the CFG teacher for ``per_class`` trajectories of every class and record every evaluation.

    Returns a store of num_classes·per_class·steps states (×2 for Heun), in trajectory-major order.
    """
    if not model.num_classes:
        raise ValueError("trajectory collection needs a class-conditional model")
    lo, hi = (float(w) for w in omega_range)
    if not (0 < lo <= hi):
        raise ValueError(f"guidance range must satisfy 0 < ω_min ≤ ω_max, got {omega_range}")
    if per_class < 1:
        raise ValueError(f"per_class must be ≥ 1, got {per_class}")
    g = torch.Generator().manual_seed(int(seed))
    labels = torch.arange(model.num_classes).repeat_interleave(per_class)
    n = labels.shape[0]
    omegas = lo + (hi - lo) * torch.rand(n, generator=g)
    x0 = torch.randn((n, *model.shape), generator=g)
    dev = model.device
    rows: dict[str, list[Tensor]] = {f: [] for f in FIELDS}
    model.eval()
    bar = progress_bar(n, "collect trajectories", enabled=progress)
    for i in range(0, n, batch_size):
        c, w = labels[i:i + batch_size].to(dev), omegas[i:i + batch_size].to(dev)
        chunk: list[tuple[Tensor, Tensor, Tensor]] = []

        def recorded(x: Tensor, t: Tensor, c: Tensor = c, w: Tensor = w,
                     chunk: list[tuple[Tensor, Tensor, Tensor]] = chunk) -> Tensor:
            v = cfg_velocity(model.net, x, t, c, model.num_classes, w)
            chunk.append((x.cpu(), t.cpu(), v.cpu()))
            return v

        solve_ode(recorded, x0[i:i + batch_size].to(dev), steps, method=solver)
        # states of one batch are step-major; reorder to trajectory-major
        xs, ts, vs = (torch.stack(z, dim=1).flatten(0, 1) for z in zip(*chunk, strict=True))
        evals = len(chunk)
        rows["x"].append(xs)
        rows["t"].append(ts)
        rows["target"].append(vs)
        rows["cond"].append(c.cpu().repeat_interleave(evals))
        rows["omega"].append(w.cpu().repeat_interleave(evals))
        bar.update(c.shape[0])
    bar.close()
    info = {"per_class": per_class, "trajectories": n, "omega_range": [lo, hi], "steps": steps, "solver": solver,
            "evaluations_per_trajectory": evals, "seed": seed, "model_domain": model.domain_name}
    return TrajectoryStore(**{f: torch.cat(v) for f, v in rows.items()}, info=info)
