"""Coverage as the number of sphere-exclusion (leader) clusters among N valid designs."""

from __future__ import annotations

import torch
from torch import Tensor


def sphere_exclusion(distances: Tensor, threshold: float) -> list[int]:
    """Greedy leader picking in the given order.

    distances: [N, N] pairwise distances. Design i becomes a new centre when its distance to every
    existing centre exceeds ``threshold``. Returns the centre indices (their count is the coverage).
    """
    n = distances.shape[0]
    covered = torch.zeros(n, dtype=torch.bool)
    centres = []
    for i in range(n):
        if not covered[i]:
            centres.append(i)
            covered |= distances[i] <= threshold
    return centres


def coverage(distances: Tensor, threshold: float) -> int:
    return len(sphere_exclusion(distances, threshold))
