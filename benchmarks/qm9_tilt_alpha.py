"""The tilt temperature α of discrete ActFlow on the discrete QM9 model, in one table and one picture.

Discrete ActFlow explores only through its reward-tilted fine-tuning: the valid buffer is weighted by
softmax(log p_θ/p_gen + r/α), r the surrogate's uncertainty (+ mean_weight·predicted validity). A smaller
α puts more of the fine-tuning on the designs the surrogate is least sure of. Nothing is run here: the
script reads finished ``molecules.py qm9-discrete`` results, one per α, that share their Rec-F runs (the
same seeds and budget; checked), and writes coverage over Rec-F, validity and the tilt weights' effective
sample size against α.

    python benchmarks/qm9_tilt_alpha.py                  # the arms in BENCHMARKS.md
    python benchmarks/qm9_tilt_alpha.py --arm 0.25=benchmarks/results/qm9_discrete_balanced.json \\
        --arm 0.1=benchmarks/results/qm9_discrete_balanced_alpha01.json --name my_sweep

Writes benchmarks/results/NAME.json and NAME.png (default NAME: qm9_discrete_tilt_alpha).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import RESULTS, mean_std, write_result
from expansion import against_pretrained, evaluations_by_seed
from tilt_sweep import plot

ARMS = {"0.1": "qm9_discrete_balanced_alpha01.json", "0.25": "qm9_discrete_balanced.json",
        "0.5": "qm9_discrete_balanced_alpha05.json", "1.0": "qm9_discrete_balanced_alpha1.json"}
FINAL_KEYS = ["validity", "coverage", "coverage_0.9", "vendi", "frechet_to_test"]


def summarise(result: dict[str, Any], seeds: list[str]) -> dict[str, Any]:
    """ActFlow's final round over the seeds, with the per-seed ratios to Rec-F and to the pre-trained model
    and the tilt weights' effective sample size over all fine-tuning rounds."""
    act, recf = (result["per_seed"][m] for m in ("actflow", "rec-f"))
    out: dict[str, Any] = {k: mean_std([act[s][k][-1] for s in seeds]) for k in FINAL_KEYS}
    over_rec_f = [act[s]["coverage"][-1] / recf[s]["coverage"][-1] for s in seeds]
    out["coverage_over_rec_f"] = mean_std(over_rec_f)
    changes = against_pretrained(*evaluations_by_seed(result, "actflow", seeds=seeds))
    out.update({k: mean_std(v) for k, v in changes.items()})
    out["validity_minus_rec_f"] = mean_std([act[s]["validity"][-1] - recf[s]["validity"][-1] for s in seeds])
    out["tilt_ess_per_round"] = mean_std([e for s in seeds for e in act[s].get("tilt_ess", []) if e is not None])
    found = result.get("discovered", {}).get("actflow", {})
    out["unknown_ring_fraction"] = mean_std([found.get(s, {}).get("unknown_ring_fraction") for s in seeds])
    out["per_seed_coverage_over_rec_f"] = over_rec_f
    return out


def ran_alpha(result: dict[str, Any]) -> float | None:
    """The α ActFlow ran at: its own options over the shared ones over the domain's defaults, as recorded."""
    for layer in ("actflow_options", "expand_options", "expand_defaults"):
        if "tilt_alpha" in result.get(layer, {}):
            return result[layer]["tilt_alpha"]
    return None


def shared_rec_f(results: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The seeds and the Rec-F summary the arms share; SystemExit naming the arm whose seeds or Rec-F
    final round differ (the ratios would not compare)."""
    first = next(iter(results))
    seeds = sorted(results[first]["per_seed"]["rec-f"])
    reference = {s: results[first]["per_seed"]["rec-f"][s]["coverage"][-1] for s in seeds}
    for alpha, res in results.items():
        recf = res["per_seed"].get("rec-f")
        if recf is None or sorted(recf) != seeds:
            raise SystemExit(f"arm α = {alpha}: Rec-F seeds {sorted(recf or [])} differ from arm α = {first}'s {seeds}")
        if any(recf[s]["coverage"][-1] != reference[s] for s in seeds):
            raise SystemExit(f"arm α = {alpha}: its Rec-F runs are not arm α = {first}'s (final coverage differs)")
    recf = results[first]["per_seed"]["rec-f"]
    return seeds, {k: mean_std([recf[s][k][-1] for s in seeds]) for k in FINAL_KEYS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", action="append", default=None, metavar="ALPHA=RESULT.json",
                    help="a molecules.py result whose ActFlow ran at this α (repeat; default: BENCHMARKS.md's arms)")
    ap.add_argument("--name", default="qm9_discrete_tilt_alpha")
    args = ap.parse_args()
    started = time.time()
    if any("=" not in a for a in args.arm or []):
        raise SystemExit(f"--arm takes ALPHA=RESULT.json, got {[a for a in args.arm if '=' not in a]}")
    arms = dict(a.split("=", 1) for a in args.arm) if args.arm else {a: str(RESULTS / f) for a, f in ARMS.items()}
    results = {}
    for alpha, path in arms.items():
        try:
            float(alpha)
            results[alpha] = json.loads(Path(path).read_text())
        except ValueError as e:
            raise SystemExit(f"--arm {alpha}={path}: need a number before '=' and a result JSON after it ({e})") from e
        except OSError as e:
            raise SystemExit(f"--arm {alpha}={path}: cannot read it ({e})") from e
        found = ran_alpha(results[alpha])
        if found is None or float(found) != float(alpha):
            raise SystemExit(f"--arm {alpha}={path}: that result's ActFlow ran at α = {found}")
    seeds, recf = shared_rec_f(results)
    order = sorted(results, key=float)
    summary: dict[str, Any] = {a: summarise(results[a], seeds) for a in order}
    summary["rec-f"] = recf
    plot(summary, order, [], RESULTS / f"{args.name}.png", "discrete QM9, balanced fine-tuning")
    recorded = {a: os.path.relpath(path, RESULTS.parent.parent) for a, path in arms.items()}  # repo-relative
    write_result(args.name, {"arms": recorded, "seeds": seeds, "summary": summary}, started)
    for a in order:
        row = summary[a]
        print(f"α = {a}: coverage {row['coverage']['mean']:.1f}, over Rec-F {row['coverage_over_rec_f']['mean']:.3f} "
              f"± {row['coverage_over_rec_f']['std']:.3f}, validity {row['validity']['mean']:.3f}, "
              f"ESS {row['tilt_ess_per_round']['mean']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
