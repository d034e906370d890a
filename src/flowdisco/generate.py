"""Sample → decode → verify: the one way flowdisco turns a model into verified designs.

Used by evaluation, by ActFlow's warm-up and rounds, and by the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowdisco.domains.base import Domain
from flowdisco.flow.solvers import GuidanceFn, NoiseSchedule


@dataclass
class Generated:
    """A batch of generated designs: tensors x [B, *shape] (and masks), decoded designs, verdicts."""

    x: Tensor
    mask: Tensor | None
    designs: list[Any]
    valid: np.ndarray

    def __len__(self) -> int:
        return self.x.shape[0]

    def select(self, keep: np.ndarray | list[int]) -> Generated:
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=int)
        t = torch.as_tensor(idx, dtype=torch.long)
        return Generated(x=self.x[t], mask=self.mask[t] if self.mask is not None else None,
                         designs=[self.designs[i] for i in idx], valid=self.valid[idx])

    @staticmethod
    def concat(parts: list[Generated]) -> Generated:
        masks = [p.mask for p in parts]
        return Generated(
            x=torch.cat([p.x for p in parts]),
            mask=torch.cat(masks) if all(m is not None for m in masks) and masks else None,
            designs=[d for p in parts for d in p.designs],
            valid=np.concatenate([p.valid for p in parts]) if parts else np.zeros(0, dtype=bool),
        )


def generate(model: Any, domain: Domain, n: int, *, generator: torch.Generator,
             steps: int = 100, solver: str = "euler", noise: NoiseSchedule | None = None,
             guidance: GuidanceFn | None = None, batch_size: int | None = None) -> Generated:
    """Draw ``n`` designs from ``model`` and verify them with ``domain.check`` (never raises on
    verifier or decoder errors: such designs count as invalid)."""
    mask = domain.sample_masks(n, generator)
    x = model.sample(n, steps=steps, solver=solver, generator=generator, noise=noise, guidance=guidance,
                     mask=mask, batch_size=batch_size)
    designs = domain.decode_safe(x)
    return Generated(x=x, mask=mask, designs=designs, valid=domain.check(designs))


def collect_valid(model: Any, domain: Domain, n_valid: int, *, generator: torch.Generator,
                  batch: int = 1000, max_batches: int = 20, **kwargs: Any) -> tuple[Generated, Generated]:
    """Sample in batches until ``n_valid`` valid designs are found (or ``max_batches`` are spent).

    Returns (all raw samples, the first n_valid valid ones — fewer if the budget ran out).
    """
    parts: list[Generated] = []
    n_ok = 0
    for _ in range(max_batches):
        g = generate(model, domain, batch, generator=generator, **kwargs)
        parts.append(g)
        n_ok += int(g.valid.sum())
        if n_ok >= n_valid:
            break
    raw = Generated.concat(parts)
    valid_idx = np.flatnonzero(raw.valid)[:n_valid]
    return raw, raw.select(valid_idx)
