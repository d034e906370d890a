"""The design buffer D: every generated design with its verifier label and the round it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowdisco.generate import Generated
from flowdisco.io import CheckpointError, load_tensors, save_tensors


class DesignBuffer:
    """x [N, *shape], mask [N, ...] or None, valid [N] bool, round [N] long (0 = warm-up), and
    optional per-design columns ``aux`` {name: [N]} (e.g. the log-likelihood under the model that
    generated each design, for importance weights)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self.x = torch.empty((0, *self.shape))
        self.mask: Tensor | None = None
        self.valid = torch.zeros(0, dtype=torch.bool)
        self.round = torch.zeros(0, dtype=torch.long)
        self.aux: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    def add(self, g: Generated, round_index: int, aux: dict[str, Tensor] | None = None) -> None:
        aux = aux or {}
        if set(aux) != set(self.aux) and len(self):
            raise ValueError(f"buffer columns {sorted(self.aux)} but the new designs bring {sorted(aux)}")
        for k, v in aux.items():
            if v.shape[0] != len(g):
                raise ValueError(f"column {k!r} has {v.shape[0]} rows for {len(g)} designs")
            old = self.aux.get(k, v[:0])
            self.aux[k] = torch.cat([old, v.to(old.dtype)])
        if g.mask is not None:
            old = self.mask if self.mask is not None else torch.ones((0, *g.mask.shape[1:]))
            self.mask = torch.cat([old, g.mask.to(old.dtype)])
        self.x = torch.cat([self.x, g.x.to(self.x.dtype)])
        self.valid = torch.cat([self.valid, torch.as_tensor(np.asarray(g.valid), dtype=torch.bool)])
        self.round = torch.cat([self.round, torch.full((len(g),), round_index, dtype=torch.long)])

    def data(self, only_valid: bool = True, only_invalid: bool = False) -> dict[str, Tensor]:
        """Training data for fit(): {"x", "mask"?} of the valid (or invalid, or all) designs."""
        sel = self.valid if only_valid else (~self.valid if only_invalid else torch.ones_like(self.valid))
        out = {"x": self.x[sel]}
        if self.mask is not None:
            out["mask"] = self.mask[sel]
        return out

    def tensors(self) -> dict[str, Tensor]:
        t = {"x": self.x, "valid": self.valid.to(torch.uint8), "round": self.round}
        if self.mask is not None:
            t["mask"] = self.mask
        t.update({f"aux.{k}": v for k, v in self.aux.items()})
        return t

    def save(self, path: str | Path) -> str:
        return save_tensors(path, self.tensors())

    @classmethod
    def load(cls, path: str | Path, shape: tuple[int, ...], expected_sha256: str | None = None) -> DesignBuffer:
        t = load_tensors(path, expected_sha256)
        try:
            buf = cls(shape)
            buf.x, buf.valid, buf.round = t["x"], t["valid"].bool(), t["round"]
            buf.mask = t.get("mask")
            buf.aux = {k[4:]: v for k, v in t.items() if k.startswith("aux.")}
        except KeyError as e:
            raise CheckpointError(f"buffer file {path} lacks {e}") from None
        if tuple(buf.x.shape[1:]) != buf.shape:
            raise CheckpointError(f"buffer file {path} holds designs of shape {tuple(buf.x.shape[1:])}, "
                                  f"expected {buf.shape}")
        return buf
