"""Shared helpers of the benchmark scripts: provenance and result files."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from flowdisco.domains import get_domain
from flowdisco.io import atomic_write_json, read_json

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    with contextlib.suppress(OSError):
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                            text=True, cwd=Path(__file__).parent).stdout.strip()
    return info


def command() -> str:
    return " ".join(["python", *[a if " " not in a else repr(a) for a in sys.argv]])


def write_result(name: str, payload: dict[str, Any], started: float) -> Path:
    path = RESULTS / f"{name}.json"
    atomic_write_json(path, {"benchmark": name, "command": command(), "machine": machine(),
                             "wall_clock_s": time.time() - started, **payload})
    print(f"wrote {path}")
    return path


def mean_std(xs: list[float | None]) -> dict[str, float] | None:
    """Mean, std, min, max over the values that exist (None or not finite, e.g. an FCD of too few
    molecules: not measured); None if none exist."""
    xs = [float(x) for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs), "n": len(xs)}


def runs_domain(run_dirs: list[Path]) -> Any:
    """The one domain that ``flowdisco expand`` run directories were run on (their config.json's ``domain``),
    built once; exits with the names if the runs are of different domains."""
    names = {read_json(Path(d) / "config.json", what="run config")["domain"] for d in run_dirs}
    if len(names) != 1:
        raise SystemExit(f"the runs are of different domains ({', '.join(sorted(names))}): give runs of one domain")
    return get_domain(names.pop())


def grouped_bars(ax: Any, groups: dict[str, dict[str, Any]], keys: list[str], width: float | None = None) -> None:
    """Bars of mean ± sd side by side: one cluster per key (x axis), one bar per group in it, read from
    the groups' {key: mean_std(...)} summaries; ticks named by the keys. Width per bar: 0.8 / groups."""
    width = width or 0.8 / len(groups)
    for i, (label, summary) in enumerate(groups.items()):
        xs = [x + (i - (len(groups) - 1) / 2) * width for x in range(len(keys))]
        ax.bar(xs, [summary[k]["mean"] for k in keys], width, yerr=[summary[k]["std"] for k in keys], label=label,
               capsize=3)
    ax.set_xticks(range(len(keys)), keys)


def training_record(path: str) -> dict[str, Any] | None:
    """Steps, seconds and the last logged loss of a ``flowdisco pretrain`` run directory (None if absent)."""
    log = Path(path) / "metrics.jsonl"
    if not log.is_file():
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    losses = [r for r in rows if "loss" in r]
    done = [r for r in rows if "steps_done" in r or "seconds" in r]
    rec: dict[str, Any] = {"last_loss": losses[-1]["loss"] if losses else None,
                           "last_step": losses[-1].get("step") if losses else None}
    if done:
        rec.update({k: done[-1].get(k) for k in ("steps_done", "seconds", "stopped_by_time_limit")})
    config = Path(path) / "config.json"
    if config.is_file():
        rec["config"] = json.loads(config.read_text())
        started = rec["config"].get("provenance", {}).get("started")
        if rec.get("seconds") is None and started and rows:  # a run that ended by its step count logs no total
            rec["seconds"] = rows[-1]["time"] - datetime.fromisoformat(started).timestamp()
    return rec
