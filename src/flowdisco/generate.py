"""Sample → decode → verify: the one way flowdisco turns a model into verified designs.

Used by evaluation, by ActFlow's warm-up and rounds, and by the CLI.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from flowdisco import dist, faults
from flowdisco.domains.base import Domain
from flowdisco.flow.solvers import GuidanceFn, NoiseSchedule
from flowdisco.seeding import derive_seed, make_generator

log = logging.getLogger(__name__)


class Selection(Protocol):
    """Chooses which of ``factor·n`` sampled candidates x [factor·n, *shape] are kept: indices [n]."""

    factor: int

    def __call__(self, x: Tensor, mask: Tensor | None, n: int, generator: torch.Generator) -> Tensor: ...


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


DEFAULT_CHUNK = 64


def generate(model: Any, domain: Domain, n: int, *, generator: torch.Generator,
             steps: int = 100, solver: str = "euler", noise: NoiseSchedule | None = None,
             guidance: GuidanceFn | None = None, batch_size: int | None = None,
             chunk_size: int | None = None, selection: Selection | None = None) -> Generated:
    """Draw ``n`` designs from ``model`` and verify them with ``domain.check`` (never raises on
    verifier or decoder errors: such designs count as invalid).

    The n designs are drawn in chunks of ``chunk_size`` (default 64), chunk i from its own generator
    seeded by (one draw of ``generator``, i). Under ``torchrun`` each rank samples, decodes and verifies
    the chunks i ≡ rank (mod world size) and the chunks are gathered, so every rank returns the same
    n designs — the same as one process does.

    ``selection`` (e.g. :class:`flowdisco.expand.selection.UncertaintySelection`): each chunk of m designs
    is chosen from ``selection.factor·m`` candidates by ``selection(x, mask, m, generator)``; only the
    kept ones are verified.
    """
    chunk = chunk_size or DEFAULT_CHUNK
    if chunk < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk}")
    base = int(torch.randint(0, 2**62, (1,), generator=generator))
    starts = list(range(0, n, chunk))
    mine: dict[int, tuple[Tensor, Tensor | None, np.ndarray]] = {}
    decoded: dict[int, list[Any]] = {}
    for i in range(dist.rank(), len(starts), dist.world_size()):
        m = min(chunk, n - starts[i])
        drawn = m * (selection.factor if selection is not None else 1)
        gen = make_generator(derive_seed(base, "chunk", i))
        mask = domain.sample_masks(drawn, gen)
        g = guidance.fork(make_generator(derive_seed(base, "guidance", i))) if hasattr(guidance, "fork") else guidance
        x = model.sample(drawn, steps=steps, solver=solver, generator=gen, noise=noise, guidance=g, mask=mask,
                         batch_size=batch_size).cpu()
        if selection is not None:
            keep = selection(x, mask, m, gen)
            x, mask = x[keep], (mask[keep] if mask is not None else None)
        faults.point("sample")
        decoded[i] = domain.decode_safe(x)
        mine[i] = (x, mask.cpu() if mask is not None else None, domain.check(decoded[i]))
        faults.point("verify")
    chunks = dist.all_gather_dict(mine)
    if not chunks:
        return Generated(x=torch.empty((0, *model.shape)), mask=None, designs=[], valid=np.zeros(0, dtype=bool))
    order = sorted(chunks)
    masks = [chunks[i][1] for i in order]
    return Generated(x=torch.cat([chunks[i][0] for i in order]),
                     mask=torch.cat(masks) if all(mk is not None for mk in masks) else None,
                     designs=[d for i in order for d in (decoded[i] if i in decoded
                                                          else domain.decode_safe(chunks[i][0]))],
                     valid=np.concatenate([chunks[i][2] for i in order]))


def collect_valid(model: Any, domain: Domain, n_valid: int, *, generator: torch.Generator,
                  batch: int = 1000, max_batches: int = 20, progress: bool = False,
                  **kwargs: Any) -> tuple[Generated, Generated]:
    """Sample in batches until ``n_valid`` valid designs are found (or ``max_batches`` are spent).

    Returns (all raw samples, the first n_valid valid ones — fewer if the budget ran out).
    ``progress``: a bar over the valid designs found (a low-validity model may need all the batches).
    """
    from flowdisco.progress import progress_bar

    parts: list[Generated] = []
    n_ok = 0
    with progress_bar(n_valid, f"valid designs (batches of {batch}, at most {max_batches})",
                      enabled=progress) as bar:
        for i in range(max_batches):
            g = generate(model, domain, batch, generator=generator, **kwargs)
            parts.append(g)
            found = int(g.valid.sum())
            bar.update(min(found, n_valid - n_ok) if n_ok < n_valid else 0)
            n_ok += found
            bar.set_postfix(batch=i + 1, validity=f"{n_ok / ((i + 1) * batch):.3f}")
            if n_ok >= n_valid:
                break
            if i == 0:
                _warn_if_out_of_reach(domain, found, batch, n_valid, max_batches)
    raw = Generated.concat(parts)
    valid_idx = np.flatnonzero(raw.valid)[:n_valid]
    return raw, raw.select(valid_idx)


def _warn_if_out_of_reach(domain: Domain, found: int, batch: int, n_valid: int, max_batches: int) -> None:
    """Say at once, from the first batch's validity, when ``n_valid`` valid designs will take more than
    ``max_batches`` batches: all of them will then be drawn, which on a low-validity model is the long part."""
    need = math.inf if found == 0 else math.ceil(n_valid / found)
    if need > max_batches:
        expected = found * max_batches
        log.warning("%s: the first batch of %d samples held %d valid designs; %d valid ones need about %s batches, "
                    "but at most %d are drawn (about %d valid designs, %d samples). Ask for fewer valid designs "
                    "(eval_valid / --n-valid) or allow more batches.", domain.name, batch, found, n_valid,
                    "∞" if need == math.inf else need, max_batches, expected, batch * max_batches)
