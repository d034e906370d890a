"""toy2d: a 2-D valid set Ω* that shows expansion, with an exact verifier and exact densities.

Ω* is a thick ring band (centre radius 0.9, half-width 0.2) pinched by three narrow corridors
(half-width 0.08, angular half-span 0.12 rad) at 60°, 180° and 300°. The corridors split the band
into three chambers; the training data are 512 points ~ N((0.9, 0), 0.1²I) (kept when inside Ω*)
in one chamber, so a model fitted to them covers a small part of Ω*, and reaching the other
chambers needs expansion through the corridors.

Everything about the toy is exact: membership of Ω*, the model's density (by integrating the
divergence), hence the *generable coverage* — the fraction of Ω*'s area where p_θ ≥ τ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowdisco.domains.base import Domain, cell_area, grid_points
from flowdisco.seeding import make_generator

RING_RADIUS = 0.9
HALF_WIDTH = 0.2
CORRIDOR_HALF_WIDTH = 0.08
CORRIDOR_HALF_SPAN = 0.12  # radians
CORRIDOR_ANGLES = (math.pi / 3, math.pi, 5 * math.pi / 3)
BOX = (-1.3, 1.3)  # the square the density grid covers; Ω* lies inside it
GRID = 100
DATA_CENTRE = (0.9, 0.0)
DATA_STD = 0.1
N_TRAIN = 512


def in_valid_set(xy: Tensor) -> Tensor:
    """Exact membership of Ω*: xy [B, 2] → [B] bool."""
    xy = xy.double()
    r = xy.norm(dim=1)
    theta = torch.atan2(xy[:, 1], xy[:, 0]) % (2 * math.pi)
    half = torch.full_like(r, HALF_WIDTH)
    for a in CORRIDOR_ANGLES:
        dtheta = torch.remainder(theta - a + math.pi, 2 * math.pi) - math.pi
        half = torch.where(dtheta.abs() < CORRIDOR_HALF_SPAN, torch.full_like(r, CORRIDOR_HALF_WIDTH), half)
    return (r - RING_RADIUS).abs() <= half


def chamber_of(xy: Tensor) -> Tensor:
    """Chamber index 0 (data chamber, −60°..60°), 1 (60°..180°), 2 (180°..300°): [B] long."""
    theta = torch.atan2(xy[:, 1], xy[:, 0]) % (2 * math.pi)
    c = torch.full(theta.shape, 2, dtype=torch.long)
    c[(theta < math.pi / 3) | (theta >= 5 * math.pi / 3)] = 0
    c[(theta >= math.pi / 3) & (theta < math.pi)] = 1
    return c


class Toy2D(Domain):
    """The 2-D ring-band toy (see module docstring)."""

    name = "toy2d"
    shape = (2,)
    kernel_lengthscale = 0.1
    coverage_threshold = 0.1
    representation_time = 1.0
    representation_layer = None  # raw input, as in the paper's toy
    density_threshold = 0.01  # τ of the generable set

    def __init__(self, n_train: int = N_TRAIN, seed: int = 0) -> None:
        self.n_train = n_train
        self.seed = seed
        self._data: Tensor | None = None
        self._grid = grid_points(*BOX, GRID)
        self._grid_valid = in_valid_set(self._grid)

    def training_data(self) -> Tensor:
        if self._data is None:
            g = make_generator(self.seed)
            pts: list[Tensor] = []
            n = 0
            while n < self.n_train:
                cand = torch.randn(self.n_train, 2, generator=g) * DATA_STD + torch.tensor(DATA_CENTRE)
                cand = cand[in_valid_set(cand)]
                pts.append(cand)
                n += cand.shape[0]
            self._data = torch.cat(pts)[: self.n_train].float()
        return self._data

    def decode(self, x: Tensor) -> list[Any]:
        return [tuple(map(float, row)) for row in x.reshape(-1, 2).tolist()]

    def verify(self, designs: Sequence[Any]) -> Sequence[bool]:
        xy = torch.as_tensor(np.asarray(designs, dtype=np.float64)).reshape(-1, 2)
        return in_valid_set(xy).tolist()

    def default_network(self) -> tuple[str, dict]:
        return "mlp", {"shape": [2], "width": 128, "depth": 3}

    def default_pretrain(self) -> dict:
        return {"steps": 3000, "batch_size": 256, "lr": 1e-3}

    # ------------------------------------------------------------------ exact density metrics
    @property
    def valid_area(self) -> float:
        return float(self._grid_valid.sum()) * cell_area(*BOX, GRID)

    def density_grid(self, model: Any, steps: int = 50) -> Tensor:
        """p_θ at the 100×100 cell centres of the box: [GRID, GRID] (row = y, column = x)."""
        with torch.no_grad():
            logp = model.log_prob(self._grid, steps=steps)
        return logp.exp().reshape(GRID, GRID)

    def expand_defaults(self) -> dict[str, Any]:
        """The toy column of the paper's launch-script table (and the spec's 2-D pilot)."""
        return {**super().expand_defaults(), "surrogate": "gp", "surrogate_options": {"lengthscale": 0.08},
                "guidance_strength": 13.0, "samples_per_round": 64, "warmup_valid": 64, "finetune_steps": 250,
                "finetune_batch": 256, "finetune_lr": 1e-3, "rounds": 30, "eval_every": 5}

    def extra_metrics(self, model: Any, seed: int = 0, artifacts: dict[str, Tensor] | None = None,
                      density: Tensor | None = None) -> dict[str, float]:
        """generable_coverage: share of Ω*'s grid cells with p_θ ≥ τ;
        mass_outside: 1 − ∫_{Ω*} p_θ (grid quadrature; includes mass outside the box);
        generable_outside_area: area with p_θ ≥ τ outside Ω* (inside the box);
        chambers_reached: number of chambers with any generable valid cell."""
        grid = density if density is not None else self.density_grid(model)
        if artifacts is not None:
            artifacts["density"] = grid
        p = grid.reshape(-1)
        gen = p >= self.density_threshold
        valid = self._grid_valid
        dA = cell_area(*BOX, GRID)
        reached = chamber_of(self._grid[gen & valid]).unique().numel()
        return {
            "generable_coverage": float((gen & valid).sum()) / float(valid.sum()),
            "mass_outside": float(1.0 - (p[valid].double().sum() * dA).clamp(max=1.0)),
            "generable_outside_area": float((gen & ~valid).sum()) * dA,
            "chambers_reached": float(reached),
        }

    def plot_samples(self, path: str, samples: Tensor, valid: np.ndarray, title: str = "",
                     density: Tensor | None = None) -> None:
        from flowdisco.plotting import plot_toy_frame

        plot_toy_frame(path, self, samples=samples, valid=valid, density=density, title=title)
