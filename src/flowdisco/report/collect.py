"""Read run directories into summaries a report can show: settings, provenance, metric records,
images and discoveries. Nothing here trains or samples; a run that lacks something says so."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: evaluation metrics shown as curves and in the comparison table, in this order (when present)
METRICS = ["validity", "coverage", "coverage_0.9", "coverage_0.7", "coverage_kmer", "vendi", "novelty",
           "n_new_unique", "frechet_to_test", "frechet_to_reference", "generable_coverage", "mass_outside",
           "held_out_scaffolds"]


class ReportError(ValueError):
    """A run directory that cannot be reported on (missing or not a flowdisco run)."""


@dataclass
class RunSummary:
    path: Path
    kind: str  # expand | pretrain | dit | agd
    domain: str
    method: str  # the group a run belongs to: expand method, or the kind / configuration
    seed: int | None
    config: dict[str, Any]
    provenance: dict[str, Any]
    records: list[dict[str, Any]]
    images: list[tuple[str, Path]] = field(default_factory=list)  # (caption, file)
    discoveries: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def evaluations(self) -> list[tuple[int, dict[str, float]]]:
        """(round, {metric: value}) of every record that carries an evaluation."""
        out = []
        for r in self.records:
            ev = {k[5:]: v for k, v in r.items() if k.startswith("eval_") and isinstance(v, (int, float))}
            if ev and "round" in r:
                out.append((int(r["round"]), ev))
        return out

    def rejections(self) -> list[tuple[int, dict[str, int]]]:
        """(round, {reason: count}) of every evaluation that recorded why its invalid samples failed."""
        return [(int(r["round"]), r["rejections"]) for r in self.records
                if "round" in r and isinstance(r.get("rejections"), dict)]

    def losses(self) -> list[tuple[int, float]]:
        """(step, loss) of a training run's log."""
        return [(int(r["step"]), float(r["loss"])) for r in self.records if "step" in r and "loss" in r]

    def wall_clock(self) -> float | None:
        """Seconds of work the run recorded: the sum of its rounds and evaluations (expansions), or the
        span of its log's time stamps (training runs); None when it recorded neither."""
        rounds = [r.get("round_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in self.records]
        if any(rounds):
            return float(sum(rounds))
        stated = [r["seconds"] for r in self.records if isinstance(r.get("seconds"), (int, float))]
        if stated:
            return float(stated[-1])
        times = [r["time"] for r in self.records if isinstance(r.get("time"), (int, float))]
        return float(max(times) - min(times)) if len(times) > 1 else None


def read_run(path: str | os.PathLike) -> RunSummary:
    """Summarise one run directory (expansion, pre-training, DiT training or AGD adapters)."""
    p = Path(path)
    if not p.is_dir():
        raise ReportError(f"{p}: no such run directory")
    for name in ("config.json", "flowdisco_adapters.json"):
        if (p / name).is_file():
            cfg_path = p / name
            break
    else:
        raise ReportError(f"{p}: not a flowdisco run (no config.json); give directories written by "
                          "flowdisco expand, pretrain, dit train or agd train")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"{cfg_path}: unreadable ({e}); the run directory is damaged") from None
    warnings: list[str] = []
    if cfg_path.name == "flowdisco_adapters.json":  # AGD adapters: their training losses are in the config
        info = config.get("info", {})
        records = [{"step": i + 1, "loss": v} for i, v in enumerate(info.get("losses", []))]
        config = {**config, "kind": "agd", "domain": "digits", "seed": config.get("seed"),
                  "provenance": info.get("provenance", {})}
        if info.get("train_seconds"):
            records.append({"seconds": info["train_seconds"]})
    else:
        records = _read_jsonl(p / "metrics.jsonl", warnings)
    kind = str(config.get("kind", "run"))
    if kind == "pretrain" and config.get("network") == "dit":
        kind = "dit"
    settings = config.get("config", config.get("fit", {}))
    if kind == "expand":
        method = str(settings.get("method", "?"))
        seed = settings.get("seed")
    elif kind == "dit":
        method = _dit_label(config)
        seed = config.get("seed")
    elif kind == "agd":
        full = " (full fine-tuning)" if config.get("train_base") else ""
        method = f"AGD {config.get('adapter', 'adapters')}{full}"
        seed = config.get("seed")
    else:
        method = kind
        seed = config.get("seed", settings.get("seed") if isinstance(settings, dict) else None)
    run = RunSummary(path=p, kind=kind, domain=str(config.get("domain", "?")), method=method,
                     seed=int(seed) if isinstance(seed, int) else None, config=config,
                     provenance=dict(config.get("provenance", {})), records=records, warnings=warnings)
    run.images = _images(p, kind)
    disc = p / "discoveries.json"
    if disc.is_file():
        try:
            run.discoveries = json.loads(disc.read_text())
        except (OSError, json.JSONDecodeError) as e:
            warnings.append(f"discoveries.json unreadable ({e})")
    return run


def read_runs(paths: list[str | os.PathLike]) -> list[RunSummary]:
    if not paths:
        raise ReportError("give at least one run directory")
    return [read_run(p) for p in paths]


def _read_jsonl(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        warnings.append("no metrics.jsonl: the run logged no metrics (killed before its first log?)")
        return []
    out = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            warnings.append(f"metrics.jsonl line {i} is not JSON (cut by a crash?): ignored")
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _dit_label(config: dict[str, Any]) -> str:
    kw = config.get("network_kwargs", {})
    mods = "+".join(kw.get("mods", [])) or "none"
    return f"DiT {kw.get('kind', '?')} · {mods}"


def _images(p: Path, kind: str) -> list[tuple[str, Path]]:
    """Pictures a run left: toy frames (first, middle, last), sample grids, molecule/sequence grids."""
    out: list[tuple[str, Path]] = []
    frames = sorted((p / "frames").glob("round-*.png")) if (p / "frames").is_dir() else []
    if frames:
        picks = sorted({0, len(frames) // 2, len(frames) - 1})
        out += [(f"generable set, {frames[i].stem.replace('-', ' ')}", frames[i]) for i in picks]
    for name in ("samples.png", *sorted(q.name for q in p.glob("samples-w*.png"))):
        if (p / name).is_file():
            out.append((name.removesuffix(".png").replace("-", " "), p / name))
    return out
