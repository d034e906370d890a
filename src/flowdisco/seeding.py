"""Explicit randomness: every random draw in flowdisco goes through a ``torch.Generator``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def derive_seed(seed: int, *tags: int | str) -> int:
    """A new 63-bit seed from a base seed and tags, stable across runs and processes."""
    import hashlib

    h = hashlib.sha256(repr((int(seed), *tags)).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (e.g. network construction) under a fixed global torch seed, leaving the
    global RNG state as it was afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield
