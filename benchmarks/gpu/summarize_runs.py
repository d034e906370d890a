"""Summarise expansion runs that ran on the lent GPU (their metrics.jsonl and config.json came back).

Runs are grouped into arms by directory name without the seed suffix (``actflow-gp-s1`` → arm
``actflow-gp``). Per arm and evaluated round: mean ± std over the seeds that reached it, for validity,
coverage at the three LeaderPicker thresholds, Vendi, novelty and FCD to the test split; per arm the
mean seconds of a round's stages. Runs stopped by the lease's time limit reach different rounds, so
the comparison is made at the last evaluated round that every arm reached with --min-seeds seeds.

    python benchmarks/gpu/summarize_runs.py runs/gpu/w4096 --name qm9_w4096_gpu

Writes benchmarks/results/NAME.json and NAME.png.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import RESULTS, mean_std, write_result
from flowdisco.plotting import save_figure, subplots

METRICS = ("validity", "coverage", "coverage_0.9", "coverage_0.7", "vendi", "novelty", "frechet_to_test")
STAGES = ("surrogate_seconds", "sample_verify_seconds", "finetune_seconds", "round_seconds")


def read_runs(root: Path) -> dict[str, dict[int, dict]]:
    """arm → seed → {"rows": metrics.jsonl rows, "provenance": ..., "config": ...}."""
    arms: dict[str, dict[int, dict]] = defaultdict(dict)
    for metrics in sorted(root.glob("*/metrics.jsonl")):
        m = re.fullmatch(r"(.+)-s(\d+)", metrics.parent.name)
        if m is None:
            continue
        cfg = json.loads((metrics.parent / "config.json").read_text())
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        arms[m.group(1)][int(m.group(2))] = {"rows": rows, "provenance": cfg["provenance"], "config": cfg["config"]}
    if not arms:
        raise SystemExit(f"no <arm>-s<seed>/metrics.jsonl under {root}")
    return arms


def evals(rows: list[dict]) -> dict[int, dict[str, float]]:
    return {r["round"]: {k: r[f"eval_{k}"] for k in METRICS if f"eval_{k}" in r} for r in rows if "eval_coverage" in r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--min-seeds", type=int, default=2,
                    help="compare at the last evaluated round that every arm reached with this many seeds")
    args = ap.parse_args()
    started = time.time()
    arms = read_runs(args.runs)
    per_arm: dict[str, dict] = {}
    for arm, seeds in sorted(arms.items()):
        ev = {s: evals(d["rows"]) for s, d in seeds.items()}
        rounds = sorted({r for e in ev.values() for r in e})
        curves = {r: {"seeds": sorted(s for s in ev if r in ev[s]),
                      **{k: mean_std([ev[s][r].get(k) for s in ev if r in ev[s]]) for k in METRICS}}
                  for r in rounds}
        stage_seconds = {k: mean_std([row[k] for d in seeds.values() for row in d["rows"]
                                      if row.get("phase") == "expand" and k in row]) for k in STAGES}
        per_arm[arm] = {"seeds": sorted(seeds), "rounds_reached": {s: d["rows"][-1]["round"] for s, d in seeds.items()},
                        "evaluations": curves, "expand_round_stage_seconds": stage_seconds,
                        "warmup_seconds": mean_std([d["rows"][0].get("round_seconds") for d in seeds.values()]),
                        "commands": [d["provenance"]["command"] for d in seeds.values()],
                        "device": sorted({d["provenance"]["device"] for d in seeds.values()}),
                        "config": next(iter(seeds.values()))["config"]}
    common_rounds = set.intersection(*[{r for r, c in a["evaluations"].items() if len(c["seeds"]) >= args.min_seeds}
                                       for a in per_arm.values()])
    compare_at = max(common_rounds)
    comparison = {arm: {"seeds": a["evaluations"][compare_at]["seeds"],
                        **{k: a["evaluations"][compare_at][k] for k in METRICS}} for arm, a in per_arm.items()}
    write_result(args.name, {"runs": str(args.runs), "compare_at_round": compare_at, "min_seeds": args.min_seeds,
                             "comparison": comparison, "arms": per_arm}, started)
    fig, axes = subplots(1, 3, figsize=(13, 3.6), dpi=110)
    for ax, key in zip(axes, ("coverage", "validity", "novelty"), strict=True):
        for arm, a in per_arm.items():
            rs = [r for r in sorted(a["evaluations"]) if a["evaluations"][r][key]]
            mean = [a["evaluations"][r][key]["mean"] for r in rs]
            std = [a["evaluations"][r][key]["std"] for r in rs]
            line = ax.plot(rs, mean, marker="o", ms=3, label=f"{arm} ({len(a['seeds'])} seeds)")[0]
            ax.fill_between(rs, [m - s for m, s in zip(mean, std, strict=True)],
                            [m + s for m, s in zip(mean, std, strict=True)], color=line.get_color(), alpha=0.15)
        ax.axvline(compare_at, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("round")
        ax.set_title(key + (" (LeaderPicker 0.85, of 500 valid)" if key == "coverage" else ""), fontsize=9)
    axes[0].legend(fontsize=7)
    save_figure(fig, RESULTS / f"{args.name}.png")
    for arm, c in comparison.items():
        print(f"{arm:12s} round {compare_at}, seeds {c['seeds']}: " + "  ".join(
            f"{k} {c[k]['mean']:.3f}±{c[k]['std']:.3f}" for k in METRICS if c[k]))


if __name__ == "__main__":
    main()
