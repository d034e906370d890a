"""Validity, uniqueness and novelty."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np
import torch
from torch import Tensor


def validity(flags: np.ndarray | Iterable[bool]) -> float:
    """Fraction of raw samples the verifier accepts (NaN for no samples)."""
    f = np.asarray(list(flags) if not isinstance(flags, np.ndarray) else flags, dtype=bool)
    return float(f.mean()) if f.size else float("nan")


def uniqueness(keys: Iterable[Hashable]) -> float:
    """Fraction of distinct keys among the given (valid) designs."""
    keys = list(keys)
    return len(set(keys)) / len(keys) if keys else float("nan")


def novel_fraction(keys: Iterable[Hashable], reference: set[Hashable]) -> float:
    """Fraction of designs whose key is not in the reference (training) set."""
    keys = list(keys)
    return sum(k not in reference for k in keys) / len(keys) if keys else float("nan")


def max_similarity(sim_block: Tensor) -> Tensor:
    """Row-wise maximum of a similarity matrix [n, m] → [n]."""
    return sim_block.max(dim=1).values


def novelty(similarity_to_reference: Tensor) -> float:
    """1 − mean nearest-neighbour similarity to a reference set; similarity [n, m] in [0, 1]."""
    if similarity_to_reference.numel() == 0:
        return float("nan")
    return float(1.0 - max_similarity(similarity_to_reference).double().mean())


def chunked_max_similarity(sim_fn, a: Tensor, b: Tensor, chunk: int = 2048) -> Tensor:
    """max_j sim(a_i, b_j) for large b without an [n, m] matrix in memory: [n]."""
    best = torch.full((a.shape[0],), -float("inf"), dtype=torch.float64)
    for j in range(0, b.shape[0], chunk):
        best = torch.maximum(best, sim_fn(a, b[j:j + chunk]).double().max(dim=1).values)
    return best
