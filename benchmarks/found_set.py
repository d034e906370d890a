"""The designs a run found over its rounds, compared on equal counts.

A benchmark result's `discovered` block computes coverage on *all* distinct valid designs of each run's
rounds, so a run that found more valid designs gets more clusters from the count alone. This script
reads finished run directories (their last saved buffer), takes each run's distinct valid designs of
rounds ≥ 1, draws ``--count`` of them at random ``--draws`` times (default count: the smallest number
any run found) and reports, per arm, the found designs per verifier call and the domain's coverage
(LeaderPicker at Tanimoto distance 0.85 on molecules, plus its extra thresholds) of the draws; each
arm is compared with the first arm seed by seed (runs matched by their order).

    python benchmarks/found_set.py --arm "balanced Rec-F=runs/bench-qm9d-bal1/rec-f-s0,runs/bench-qm9d-bal1/rec-f-s1" \\
        --arm "balanced ActFlow=runs/bench-qm9d-bal1/actflow-s0,runs/bench-qm9d-bal1/actflow-s1" --name found_set

Writes benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from common import mean_std, runs_domain, write_result
from flowdisco.expand.loop import found_in_rounds
from flowdisco.expand.state import RoundStore


def parse_arm(text: str) -> tuple[str, list[Path]]:
    label, sep, dirs = text.partition("=")
    if not sep or not label or not dirs:
        raise SystemExit(f"--arm {text!r}: expected LABEL=RUN_DIR[,RUN_DIR...]")
    paths = [Path(d) for d in dirs.split(",")]
    for p in paths:
        if not (p / "state" / "LATEST.json").is_file():
            raise SystemExit(f"--arm {label}: {p} is not a run directory with saved state")
    return label, paths


def found(run_dir: Path, dom: Any) -> tuple[list[Any], int]:
    """The run's distinct valid designs of rounds ≥ 1, and how many designs those rounds generated
    (verifier calls)."""
    _, buf = RoundStore(run_dir / "state", writable=False).load_buffer(dom.shape)
    return list(found_in_rounds(buf, dom).values()), int((buf.round > 0).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", action="append", required=True, metavar="LABEL=RUN_DIR[,RUN_DIR...]")
    ap.add_argument("--count", type=int, default=None, help="designs drawn per run (default: the fewest found)")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="found_set")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    arms = dict(parse_arm(a) for a in args.arm)
    dom = runs_domain([p for paths in arms.values() for p in paths])
    runs = {label: [found(p, dom) for p in paths] for label, paths in arms.items()}
    count = args.count or min(len(d) for rows in runs.values() for d, _ in rows)
    thresholds = [dom.coverage_threshold, *getattr(dom, "extra_coverage_thresholds", ())]
    rng = random.Random(args.seed)
    per_arm: dict[str, Any] = {}
    for label, rows in runs.items():
        per_run = []
        for (designs, generated), path in zip(rows, arms[label], strict=True):
            if len(designs) < count:
                raise SystemExit(f"{path} found {len(designs)} valid designs, fewer than --count {count}")
            cov = {t: [] for t in thresholds}
            for _ in range(args.draws):
                draw = rng.sample(designs, count)
                desc = dom.descriptors(draw)
                for t in thresholds:
                    cov[t].append(dom.coverage(desc, t))
            per_run.append({"run": str(path), "found": len(designs), "generated": generated,
                            "found_per_call": len(designs) / max(generated, 1),
                            **{f"coverage_{t:g}": statistics.fmean(v) for t, v in cov.items()}})
            print(f"{label} {path}: {len(designs)} found of {generated}, coverage of {count} "
                  + ", ".join(f"{t:g}: {statistics.fmean(v):.1f}" for t, v in cov.items()), flush=True)
        per_arm[label] = {"runs": per_run, **{k: mean_std([r[k] for r in per_run]) for k in per_run[0]
                                              if k != "run"}}
    first = next(iter(runs))
    for label in runs:
        for t in thresholds:
            key = f"coverage_{t:g}"
            ratios = [a[key] / b[key] for a, b in zip(per_arm[label]["runs"], per_arm[first]["runs"], strict=False)]
            per_arm[label][f"{key}_over_first"] = {"per_run": ratios, **(mean_std(ratios) or {})}
    write_result(args.name, {"settings": vars(args), "domain": dom.name, "count": count, "thresholds": thresholds,
                             "arms": per_arm, "compared_with": first}, started)
    for label, a in per_arm.items():
        r = a[f"coverage_{thresholds[0]:g}_over_first"]
        print(f"{label}: found {a['found']['mean']:.0f} ± {a['found']['std']:.0f}, coverage "
              f"{a[f'coverage_{thresholds[0]:g}']['mean']:.1f}, over {first} {r['mean']:.3f} ± {r['std']:.3f}")


if __name__ == "__main__":
    main()
