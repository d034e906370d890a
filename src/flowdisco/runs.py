"""Run directories: config.json, metrics.jsonl, model/, checkpoints/, plots/.

A run directory that already holds a run is never overwritten by accident: continue it with
``resume=True`` (the stored configuration must match) or choose another directory.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from flowdisco import __version__, dist
from flowdisco.io import CheckpointError, append_jsonl, atomic_write_json, read_json, read_jsonl

PROVENANCE_KEYS = ("provenance",)


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked (exists without --resume, or config differs)."""


_COMMAND: list[str] | None = None  # set by the CLI when it is called with an explicit argv


def set_command(words: list[str] | None) -> None:
    """Record the command line that provenance reports (None: the process's own sys.argv)."""
    global _COMMAND
    _COMMAND = list(words) if words is not None else None


def current_command() -> str:
    if _COMMAND is not None:
        return " ".join(_COMMAND)
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


def provenance(device: str | torch.device = "cpu") -> dict[str, Any]:
    return {
        "command": current_command(),
        "flowdisco_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cpus)",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class RunDir:
    """A run directory. ``writable=False`` (the other ranks of a torchrun job) reads but never writes."""

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, writable: bool = True) -> None:
        self.path = Path(path)
        self.resume = resume
        self.writable = writable
        if not writable:
            return
        if self.config_path.is_file() and not resume:
            raise RunDirError(f"run directory {self.path} already holds a run; pass --resume to continue it "
                              "or choose another --run-dir")
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plots(self) -> Path:
        p = self.path / "plots"
        p.mkdir(exist_ok=True)
        return p

    def write_config(self, config: dict[str, Any], device: str | torch.device = "cpu") -> None:
        """Store the configuration; on resume, check it equals the stored one (provenance aside)."""
        if not self.writable:
            return
        if self.config_path.is_file():
            old = read_json(self.config_path, what="run config")
            old_cfg = {k: v for k, v in old.items() if k not in PROVENANCE_KEYS}
            new_cfg = _jsonable(config)
            diff = config_differences(old_cfg, new_cfg)
            if diff:
                details = "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, a, b in diff[:4])
                raise RunDirError(f"cannot resume {self.path}: configuration differs ({details})")
            return
        atomic_write_json(self.config_path, {**_jsonable(config), "provenance": provenance(device)})

    def log(self, record: dict[str, Any]) -> None:
        if not self.writable:
            return
        append_jsonl(self.metrics_path, {**record, "time": time.time()})

    def records(self) -> list[dict]:
        return read_jsonl(self.metrics_path)


def open_run(path: str | os.PathLike, config: dict[str, Any], *, resume: bool = False,
             device: str | torch.device = "cpu") -> RunDir:
    """Open (or resume) a run directory and store ``config`` — under torchrun only rank 0 writes.

    Rank 0 creates the directory and checks the configuration; an error there (the directory holds
    another run, the configuration differs) is raised on every rank, so no rank waits forever. The
    other ranks get a read-only view: for runs across machines the directory must be on a shared
    filesystem (resume reads it on every rank)."""
    dist.init(device)
    run, error = None, None
    if dist.is_main():
        try:
            run = RunDir(path, resume=resume)
            run.write_config(config, device=device)
        except (RunDirError, CheckpointError) as e:
            error = e
    message = dist.broadcast_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if message is not None:
        raise RunDirError(f"rank 0 could not open the run directory: {message}")
    dist.barrier()
    return run if run is not None else RunDir(path, resume=True, writable=False)


def compare_runs(a: str | os.PathLike, b: str | os.PathLike) -> list[str]:
    """What differs between two finished run directories of the same settings (empty: the same run).

    Compares the final weights bit for bit, and for expansion runs the committed round, the buffer and
    the per-round history; wall-clock fields (``*seconds``, ``time``, provenance) are ignored. Used to
    check that a killed-and-resumed run reached exactly the uninterrupted result."""
    from flowdisco.io import load_tensors

    a, b = Path(a), Path(b)
    diffs: list[str] = []

    def tensors(rel: str) -> None:
        ta, tb = load_tensors(a / rel), load_tensors(b / rel)
        if set(ta) != set(tb):
            diffs.append(f"{rel}: different tensor names")
        diffs.extend(f"{rel}:{k} differs" for k in sorted(set(ta) & set(tb))
                     if ta[k].shape != tb[k].shape or not torch.equal(ta[k], tb[k]))

    def untimed(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: untimed(v) for k, v in obj.items() if not (k.endswith("seconds") or k == "time")}
        return [untimed(v) for v in obj] if isinstance(obj, list) else obj

    if (a / "state" / "LATEST.json").is_file() or (b / "state" / "LATEST.json").is_file():
        la, lb = (read_json(p / "state" / "LATEST.json", what="run state") for p in (a, b))
        if la["round"] != lb["round"]:
            return [f"last committed round {la['round']} vs {lb['round']}"]
        for name in ("model.safetensors", "buffer.safetensors"):
            tensors(f"state/{la['dir']}/{name}")
        ha, hb = (read_json(p / "state" / la["dir"] / "history.json", what="run history") for p in (a, b))
        if untimed(ha) != untimed(hb):
            diffs.append("history.json differs")
    else:
        tensors("model/model.safetensors")
    if untimed(read_jsonl(a / "metrics.jsonl")) != untimed(read_jsonl(b / "metrics.jsonl")):
        diffs.append("metrics.jsonl differs")
    return diffs


_ABSENT = object()


def config_differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, stored, now) for every setting that differs, recursing into dicts.

    A setting the stored run does not have and that is None now (an option added to flowdisco
    later, off by default) is no difference: runs from before the option still resume."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [(prefix or "config", old, new)]
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, _ABSENT), new.get(k, _ABSENT)
        if a is _ABSENT and b is None:
            continue
        key = f"{prefix}.{k}" if prefix else str(k)
        if a is _ABSENT or b is _ABSENT:
            out.append((key, None if a is _ABSENT else a, None if b is _ABSENT else b))
        else:
            out.extend(config_differences(a, b, key))
    return out


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON rules so that stored and new configs compare equal."""
    import json

    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, (tuple, set)) else str(o)))
