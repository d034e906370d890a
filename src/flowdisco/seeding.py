"""Explicit randomness: every random draw in flowdisco goes through a ``torch.Generator``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def _generator_device(generator: torch.Generator | None, device: torch.device | str) -> torch.device | str:
    return generator.device if generator is not None else device


def rand(shape: int | tuple[int, ...], generator: torch.Generator | None = None,
         device: torch.device | str = "cpu") -> Tensor:
    """Uniform [0, 1) draws of ``shape`` on ``device``, made on the generator's own device (flowdisco's
    generators live on the CPU) and moved: a run on a GPU draws the same numbers as on the CPU, and a
    CPU generator never meets a CUDA tensor factory (which torch refuses)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return torch.rand(shape, generator=generator, device=_generator_device(generator, device)).to(device)


def randn(shape: int | tuple[int, ...], generator: torch.Generator | None = None,
          device: torch.device | str = "cpu") -> Tensor:
    """Standard normal draws of ``shape`` on ``device``, made on the generator's device (see :func:`rand`)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return torch.randn(shape, generator=generator, device=_generator_device(generator, device)).to(device)


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
