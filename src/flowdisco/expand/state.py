"""Atomic per-round state of an expansion run.

    state/LATEST.json           {"round": r, "dir": "round-000r", "sha256": {file: digest}}
    state/round-000r/           model.safetensors, buffer.safetensors, history.json,
                                surrogate_inputs.safetensors (ActFlow: the φ-features and labels σ_r was fit on)
    state/pending-000r/         work of round r in progress: verified samples, fine-tuning checkpoint

A round is committed by writing its directory under a temporary name, renaming it into place and
then atomically replacing LATEST.json, so a kill at any moment leaves the previous committed round
intact. Everything random in a round is seeded by (seed, purpose, round), so replaying a round from
its committed predecessor (and its pending samples) reproduces it exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowdisco import faults
from flowdisco.expand.buffer import DesignBuffer
from flowdisco.flow.model import load_weights_strict
from flowdisco.generate import Generated
from flowdisco.io import (
    CheckpointError,
    atomic_write_json,
    atomic_write_text,
    load_tensors,
    read_json,
    save_tensors,
    sha256_file,
)


class RoundStore:
    """The state directory of one run. ``writable=False`` (the other ranks of a torchrun job): the
    writing methods do nothing, the reading ones read what rank 0 wrote."""

    def __init__(self, directory: str | Path, keep_every: int = 0, writable: bool = True) -> None:
        self.dir = Path(directory)
        self.writable = writable
        if writable:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_every = keep_every

    def round_dir(self, r: int) -> Path:
        return self.dir / f"round-{r:05d}"

    def pending_dir(self, r: int) -> Path:
        return self.dir / f"pending-{r:05d}"

    # ------------------------------------------------------------------ commit / load
    def commit(self, r: int, net: nn.Module, buffer: DesignBuffer, history: list[dict[str, Any]],
               extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None, seed: int | None = None) -> None:
        if not self.writable:
            return
        final = self.round_dir(r)
        tmp = self.dir / f".round-{r:05d}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_tensors(tmp / "model.safetensors", net.state_dict())
        buffer.save(tmp / "buffer.safetensors")
        atomic_write_text(tmp / "history.json", json.dumps(history, default=float))
        for name, tensors in (extra_tensors or {}).items():
            save_tensors(tmp / f"{name}.safetensors", tensors)
        digests = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        faults.point("commit")  # tests: the round's files in place, LATEST.json still names round r − 1
        # No RNG state to store: every draw of round r comes from derive_seed(seed, purpose, r).
        rng = {"seed": seed, "scheme": "derive_seed(seed, purpose, round)"}
        atomic_write_json(self.dir / "LATEST.json", {"round": r, "dir": final.name, "sha256": digests, "rng": rng})
        self._prune(r)

    def latest_round(self) -> int | None:
        p = self.dir / "LATEST.json"
        if not p.is_file():
            return None
        return int(read_json(p, what="run state")["round"])

    def load(self, net: nn.Module, shape: tuple[int, ...]) -> tuple[int, DesignBuffer, list[dict[str, Any]]]:
        r, d = self._latest_checked()
        load_weights_strict(net, load_tensors(d / "model.safetensors"), source=d / "model.safetensors")
        buffer = DesignBuffer.load(d / "buffer.safetensors", shape)
        history = read_json(d / "history.json", what="run history")
        return r, buffer, history

    def load_buffer(self, shape: tuple[int, ...]) -> tuple[int, DesignBuffer]:
        """The latest committed round and its buffer, checked like :meth:`load` (for analysis without a model)."""
        r, d = self._latest_checked()
        return r, DesignBuffer.load(d / "buffer.safetensors", shape)

    def _latest_checked(self) -> tuple[int, Path]:
        """The latest committed round and its directory, every file checked against the manifest."""
        meta = read_json(self.dir / "LATEST.json", what="run state")
        try:
            r, d, digests = int(meta["round"]), self.dir / meta["dir"], meta["sha256"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"run state is corrupt: {self.dir / 'LATEST.json'}") from None
        for name, digest in digests.items():
            if not (d / name).is_file():
                raise CheckpointError(f"run state file missing: {d / name}")
            if sha256_file(d / name) != digest:
                raise CheckpointError(f"run state file is corrupt (checksum mismatch): {d / name}")
        return r, d

    def load_model_weights(self, r: int, net: nn.Module) -> None:
        """Weights of a kept round snapshot (for frames / analysis)."""
        p = self.round_dir(r) / "model.safetensors"
        load_weights_strict(net, load_tensors(p), source=p)

    def kept_rounds(self) -> list[int]:
        return sorted(int(p.name.split("-")[1]) for p in self.dir.glob("round-*") if p.is_dir())

    def _prune(self, latest: int) -> None:
        for p in self.dir.glob("round-*"):
            r = int(p.name.split("-")[1])
            keep = r == latest or r == 0 or (self.keep_every and r % self.keep_every == 0)
            if not keep:
                shutil.rmtree(p, ignore_errors=True)
        for p in self.dir.glob("pending-*"):
            if int(p.name.split("-")[1]) <= latest:
                shutil.rmtree(p, ignore_errors=True)

    # ------------------------------------------------------------------ pending work of a round
    def save_pending_tensors(self, r: int, name: str, tensors: dict[str, torch.Tensor]) -> None:
        if self.writable:
            save_tensors(self.pending_dir(r) / f"{name}.safetensors", tensors)

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        if self.writable:
            save_tensors(self.dir / f"{name}.safetensors", tensors)

    def save_pending_samples(self, r: int, g: Generated, extra: dict[str, Any]) -> None:
        if not self.writable:
            return
        d = self.pending_dir(r)
        d.mkdir(parents=True, exist_ok=True)
        t = {"x": g.x, "valid": torch.as_tensor(g.valid).to(torch.uint8)}
        if g.mask is not None:
            t["mask"] = g.mask
        digest = save_tensors(d / "samples.safetensors", t)
        atomic_write_json(d / "samples.json", {"sha256": digest, **extra})

    def load_pending_samples(self, r: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        d = self.pending_dir(r)
        if not (d / "samples.json").is_file():
            return None
        meta = read_json(d / "samples.json", what="pending samples")
        return load_tensors(d / "samples.safetensors", expected_sha256=meta.get("sha256")), meta
