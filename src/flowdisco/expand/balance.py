"""Density balancing of the fine-tuning data: designs in crowded parts of the buffer count less.

UpdateFlow fits the model to the buffer, so the model's samples follow the buffer's density: a region
the rounds visited a hundred times pulls a hundred times harder than a design that opened a new one.
Balancing weights each valid design by its neighbourhood count in the domain's descriptor space,

    n_i = #{j : d(x_i, x_j) < radius}       (x_i itself included, so n_i ≥ 1)
    w_i ∝ n_i^(−power)                       (mean 1 over the designs)

with d the domain's descriptor distance and radius its coverage radius by default. power = 1 gives
every neighbourhood roughly the same total weight; power = 0 is the plain buffer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def neighbour_counts(descriptors: Tensor, distance: Callable[[Tensor, Tensor], Tensor], radius: float,
                     block: int = 1024) -> Tensor:
    """How many designs lie within ``radius`` of each design (itself included): [N] long.

    descriptors [N, d]; ``distance(a [n, d], b [m, d]) -> [n, m]``. Works in row blocks, so memory is
    block × N however large the buffer."""
    n = descriptors.shape[0]
    counts = torch.zeros(n, dtype=torch.long)
    for s in range(0, n, block):
        d = distance(descriptors[s:s + block], descriptors)
        counts[s:s + block] = (d < radius).sum(dim=1)
    # a design is its own neighbour even where round-off puts d(x, x) a hair above 0 and radius is 0
    return counts.clamp_min(1)


def balance_weights(counts: Tensor, power: float) -> Tensor:
    """Weights [N] float64 ∝ counts^(−power), scaled to mean 1."""
    if power < 0:
        raise ValueError(f"balance power must be ≥ 0, got {power}")
    w = counts.double().clamp_min(1.0).pow(-power)
    return w * (w.numel() / w.sum())
