"""The QM9 trade-off in one picture: every measured ActFlow arm (and the baselines) as validity minus the
pre-trained model's against coverage over the pre-trained model's, per seed, from the result files.

Nothing is run: the script reads finished results of ``molecules.py qm9`` (and the older
``qm9_confirm.py`` shape) and plots the goal region of the molecule issue (coverage ≥ 1.5× the
pre-trained model's, validity not below it). ``FILE@R`` reads round R of a longer run instead of its
last evaluation. For scale it also measures the coverage of QM9's own molecules: 500 drawn at random
from the training split (10 draws), the same count the benchmark's evaluation uses, and LeaderPicker
over the whole training split (104,664 molecules): the clusters that the data set holds in all, which
no sample of 500 QM9 molecules can exceed.

    python benchmarks/qm9_trade.py                        # the arms in BENCHMARKS.md
    python benchmarks/qm9_trade.py benchmarks/results/qm9_gp30.json benchmarks/results/qm9_r18_gp50_neg03.json@12
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from common import RESULTS, mean_std, write_result
from expansion import against_pretrained, evaluations_by_seed

ARMS = ["qm9.json", "qm9_w1024.json", "qm9_gp.json", "qm9_gp30.json", "qm9_gp30_anchor.json", "qm9_gp30_neg.json",
        "qm9_gp30_neg_mw.json", "qm9_gp30_neg_mw01.json", "qm9_gp30_neg03.json", "qm9_gp50_neg03.json",
        "qm9_gp100_neg05.json", "qm9_gp50_neg03_l1.json", "qm9_confirm_gp50_neg03.json",
        "qm9_r18_gp50_neg03.json", "qm9_recf_neg03.json", "qm9_gp50_neg03_spr128.json", "qm9_gp50_neg03_blocks3.json",
        "qm9_gp50_neg03_spr128_ft500.json", "qm9_gp50_neg03_bal1.json", "qm9_gp50_neg03_spr128_bal1.json",
        "qm9_confirm_gp50_neg03_bal1.json", "qm9_gp50_neg03_bal2.json", "qm9_confirm_gp50_neg05_bal1.json",
        "qm9_gp50_neg03_bal1_mw01.json", "qm9_confirm_gp50_neg03_bal1_mw01.json", "qm9_gp50_neg03_bal1_a02.json",
        "qm9_confirm_gp50_neg03_bal1_a02.json", "qm9_confirm_gp50_neg03_bal1_a02_mw01.json",
        "qm9_confirm_gp50_neg03_bal1d.json", "qm9_gp50_neg03_bal1d_mw01.json", "qm9_confirm_gp50_neg03_bal1d_mw01.json"]
GOAL_COVERAGE, GOAL_VALIDITY = 1.5, 0.0
# measured before anchor replay drew its share α of each batch (commit d10a477): with uniform draws over the
# buffer and the whole training split, most batches held training molecules only, whatever α said
ANCHORS_BEFORE_THE_DRAW_FIX = {"qm9_gp30_anchor.json"}


def arm_label(result: dict[str, Any], method: str, at_round: int | None) -> str:
    """A short name of what ran: the surrogate, λ, c, w, α, W, ℓ, φ, designs per round, balancing (and whether
    resampled), rounds and seeds where not the defaults."""
    opts = dict(result.get("expand_options") or {})
    if method == "actflow":
        opts.update(result.get("actflow_options") or {})
        parts = ["GP" if opts.get("surrogate") == "gp" else "ensemble", f"λ{opts.get('guidance_strength', 10):g}"]
    else:
        parts = [method]
    for key, short in (("negative_scale", "c"), ("mean_weight", "w"), ("anchor_weight", "α"), ("warmup_valid", "W")):
        if key in opts:
            parts.append(f"{short}{opts[key]:g}")
    lengthscale = (opts.get("surrogate_options") or {}).get("lengthscale")
    if lengthscale is not None:
        parts.append(f"ℓ{lengthscale:g}")
    if "representation_layer" in opts:
        parts.append(f"φ {opts['representation_layer']}")
    if "representation_time" in opts:
        parts.append(f"φ s{opts['representation_time']:g}")
    if "samples_per_round" in opts:
        parts.append(f"{opts['samples_per_round']}/round")
    if opts.get("finetune_balance"):
        parts.append(f"balance^{opts['finetune_balance']:g}")
    if opts.get("finetune_weights_as") == "draw":
        parts.append("resampled")
    if opts.get("finetune_steps", 250) != 250:  # the benchmark's budget is 250 steps a round
        parts.append(f"{opts['finetune_steps']} steps")
    rounds = at_round or (result.get("settings") or {}).get("rounds") or 12
    if rounds != 12:
        parts.append(f"{rounds} rounds")
    seeds = seeds_of(result)
    if seeds != ["0", "1", "2"]:
        parts.append(f"seeds {','.join(seeds)}")
    return " ".join(parts)


def seeds_of(result: dict[str, Any]) -> list[str]:
    per_seed = result["per_seed"]
    return sorted(per_seed["pretrained"]) if "pretrained" in per_seed else sorted(per_seed)


def per_seed_points(result: dict[str, Any], method: str, at_round: int | None) -> dict[str, list[float]]:
    """{"validity_minus_pretrained": [...], "coverage_over_pretrained": [...]}, one value per seed."""
    return against_pretrained(*evaluations_by_seed(result, method, at_round))


def data_coverage(draws: int = 10, n: int = 500) -> tuple[dict[str, Any], dict[str, Any]]:
    """QM9's own LeaderPicker coverage per threshold: of ``n`` training molecules drawn at random (over
    ``draws`` draws), and of the whole training split (the clusters the data set holds in all)."""
    import flowdisco as fd
    from flowdisco.domains.molecules import cached_morgan_bits

    dom = fd.domains.get_domain("qm9")
    train = dom.splits()["train"]
    bits = cached_morgan_bits(train)  # every training molecule's fingerprint, cached on disk
    picks = [bits[random.Random(seed).sample(range(len(train)), n)] for seed in range(draws)]
    thresholds = (0.85, 0.9, 0.7)
    sample = {"n": n, "draws": draws, **{f"coverage_{t:g}": mean_std([dom.coverage(fp, t) for fp in picks])
                                         for t in thresholds}}
    return sample, {"n": len(train), **{f"coverage_{t:g}": dom.coverage(bits, t) for t in thresholds}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="result files (FILE or FILE@ROUND); default: the arms in BENCHMARKS.md")
    ap.add_argument("--name", default="qm9_trade")
    args = ap.parse_args()
    started = time.time()
    arms: list[dict[str, Any]] = []
    for spec in args.files or [str(RESULTS / a) for a in ARMS]:
        path, _, rnd = spec.partition("@")
        if not Path(path).is_file():
            print(f"skipped {path}: not found")
            continue
        result = json.loads(Path(path).read_text())
        at_round = int(rnd) if rnd else None
        reused = (result.get("baselines_reused") or {}).get("methods", [])
        methods = [m for m in result.get("methods", ["actflow"]) if m not in reused]
        if Path(path).name == "qm9.json":  # written before results named their methods
            methods = ["rec-nf", "rec-f", "actflow"]
        for method in methods:
            points = per_seed_points(result, method, at_round)
            arms.append({"file": Path(path).name, "round": at_round, "method": method,
                         "label": arm_label(result, method, at_round)
                         + (" (old anchor draws)" if Path(path).name in ANCHORS_BEFORE_THE_DRAW_FIX else ""),
                         "seeds": seeds_of(result), **points,
                         **{f"{k}_summary": mean_std(v) for k, v in points.items()}})
    plot(arms, RESULTS / f"{args.name}.png")
    data, whole = data_coverage()
    print(f"500 random QM9 training molecules: coverage {data['coverage_0.85']['mean']:.1f} ± "
          f"{data['coverage_0.85']['std']:.1f} at 0.85")
    print(f"all {whole['n']} QM9 training molecules: coverage {whole['coverage_0.85']} at 0.85")
    goal = {"coverage_over_pretrained": GOAL_COVERAGE, "validity_minus_pretrained": GOAL_VALIDITY}
    write_result(args.name, {"arms": arms, "qm9_training_sample": data,
                             "qm9_training_set": whole, "goal": goal}, started)
    for a in arms:
        v, c = a["validity_minus_pretrained_summary"], a["coverage_over_pretrained_summary"]
        print(f"{a['label']:40s} validity {v['mean']:+.3f} ± {v['std']:.3f}   "
              f"coverage {c['mean']:.2f} ± {c['std']:.2f}×")


def plot(arms: list[dict[str, Any]], path: Path) -> None:
    """Each arm as a numbered point (mean ± std over seeds) with its single seeds as dots; the numbers are
    keyed to the arms' labels in a list beside the axes, so that labels near the goal corner stay legible."""
    from flowdisco.plotting import save_figure, subplots

    fig, (ax, side) = subplots(1, 2, figsize=(15, 7.5), dpi=110, gridspec_kw={"width_ratios": [1.6, 1]})
    side.axis("off")
    ax.axhline(GOAL_COVERAGE, color="#6a994e", lw=1, ls="--")
    ax.axvline(GOAL_VALIDITY, color="#6a994e", lw=1, ls="--")
    colours = {"rec-nf": "#6d597a", "rec-f": "#2a9d8f", "actflow": "#f4a261"}
    key = []
    for number, a in enumerate(arms, start=1):
        v, c = a["validity_minus_pretrained_summary"], a["coverage_over_pretrained_summary"]
        colour = "#e76f51" if a["label"].startswith("GP") else colours[a["method"]]
        ax.scatter(a["validity_minus_pretrained"], a["coverage_over_pretrained"], s=10, color=colour, alpha=0.35)
        ax.errorbar(v["mean"], c["mean"], xerr=v["std"], yerr=c["std"], fmt="o", color=colour, ms=5, capsize=2,
                    alpha=0.8)
        ax.annotate(str(number), (v["mean"], c["mean"]), fontsize=8, xytext=(3, 3), textcoords="offset points",
                    weight="bold")
        key.append(f"{number:2d}  {a['label']}  ({v['mean']:+.3f}, {c['mean']:.2f}×)")
    side.text(0, 1, "\n".join(key), fontsize=7.5, va="top", transform=side.transAxes)
    ax.set_xlabel("validity − pre-trained model's (final evaluation, 1,000 samples)")
    ax.set_ylabel("coverage / pre-trained model's (LeaderPicker 0.85, 500 valid)")
    ax.set_xlim(min(-0.25, ax.get_xlim()[0]), max(0.12, ax.get_xlim()[1]))
    ax.set_ylim(min(0.7, ax.get_ylim()[0]), max(1.7, ax.get_ylim()[1]))
    (_, x1), (_, y1) = ax.get_xlim(), ax.get_ylim()
    ax.fill_between([GOAL_VALIDITY, x1], GOAL_COVERAGE, y1, color="#e9f5db", zorder=0)
    ax.text(GOAL_VALIDITY + 0.003, GOAL_COVERAGE + 0.01, "goal: both", color="#6a994e", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("QM9, 12-round budget unless named: mean ± std over seeds (dots: single seeds)", fontsize=10)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
