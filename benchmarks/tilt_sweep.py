"""Benchmark: the temperature α of ActFlow's reward-tilted fine-tuning (discrete peptides).

Discrete ActFlow weights the valid buffer by softmax(log p_θ/p_gen + σ/α) in the denoising loss. At
the paper's α = 0.005 the weights collapsed on our reward scale (effective sample size 1–2 of several
hundred designs; see BENCHMARKS.md, peptides). This sweep runs ActFlow on `peptides-discrete` at
larger α with the same seeds and budget as `benchmarks/sequences.py peptides`, and compares with that
benchmark's Rec-F and α = 0.005 runs, which are read back from its work directory (same settings, so
identical numbers; made before the sequence domains' default became α = 0.25 clipped at ±1 nat, so the
paper's α and no clip are always passed explicitly) or rerun when missing.

    python benchmarks/tilt_sweep.py                       # α ∈ {0.05, 0.25, 1}, seeds 0 1 2, two processes
    python benchmarks/tilt_sweep.py --alphas 0.05 --seeds 0 --rounds 2 --work-dir runs/quick   # smoke

Writes benchmarks/results/peptides_tilt_sweep.json and peptides_tilt_sweep.png.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

from common import RESULTS, mean_std, write_result

KEYS = ["validity", "coverage", "coverage_kmer", "vendi", "novelty"]
PAPER_ALPHA = 0.005


def label(alpha: float, clip: float | None) -> str:
    return f"{alpha:g}" if clip is None else f"{alpha:g}, log-ratio clip {clip:g}"


def run_one(method: str, alpha: float, clip: float | None, seed: int, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    import flowdisco as fd
    from flowdisco.flow.model import FlowModel

    dom = fd.domains.get_domain("peptides-discrete")
    model = FlowModel.load(dom.pretrained_model_path())
    if method == "rec-f" or alpha == PAPER_ALPHA:  # the sequences benchmark's runs
        run_dir = Path(args.reference_dir) / f"{method}-s{seed}"
    else:
        run_dir = Path(args.work_dir) / (f"actflow-a{alpha:g}-s{seed}" if clip is None
                                         else f"actflow-a{alpha:g}-c{clip:g}-s{seed}")
    # explicit, not the domain's defaults (which are now α = 0.25 clipped): the reference runs used these
    options = {"tilt_alpha": PAPER_ALPHA if method == "rec-f" else alpha, "tilt_log_ratio_clip": clip}
    t0 = time.time()
    run = fd.expand(model, dom, method=method, rounds=args.rounds, seed=seed, run_dir=run_dir,
                    resume=(run_dir / "config.json").is_file(), progress=False, **options)
    evals = run.evaluations()
    out = {"method": method, "alpha": alpha if method == "actflow" else None, "clip": clip, "seed": seed,
           "run_dir": str(run_dir), "seconds": time.time() - t0,
           "first": {k: evals[0]["eval"].get(k) for k in KEYS}, "last": {k: evals[-1]["eval"].get(k) for k in KEYS}}
    for k in ("tilt_ess", "tilt_weight_on_new", "tilt_reward_mean", "tilt_log_ratio_std"):
        out[k] = [h.get(k) for h in run.history[1:]]
    print(f"{method} α={label(alpha, clip)} seed {seed}: validity {out['last']['validity']:.3f}, coverage "
          f"{out['last']['coverage']:.0f}, ESS {out['tilt_ess']} ({out['seconds']:.0f} s)", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.05, 0.25, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--clipped-alphas", type=float, nargs="*", default=[],
                    help="also run these α with the log-ratio clip below")
    ap.add_argument("--log-ratio-clip", type=float, default=1.0, help="nats (tilt_log_ratio_clip)")
    ap.add_argument("--rounds", type=int, default=None, help="default: the domain's (8)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work-dir", default="runs/bench-tilt-sweep")
    ap.add_argument("--reference-dir", default="runs/bench-peptides-discrete",
                    help="work dir of `sequences.py peptides` (its Rec-F and α = 0.005 runs)")
    args = ap.parse_args()
    started = time.time()
    jobs = [("actflow", a, None, s, args) for a in args.alphas for s in args.seeds]
    jobs += [("actflow", a, args.log_ratio_clip, s, args) for a in args.clipped_alphas for s in args.seeds]
    jobs += [("actflow", PAPER_ALPHA, None, s, args) for s in args.seeds]
    jobs += [("rec-f", 0.0, None, s, args) for s in args.seeds]
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.starmap(run_one, jobs)
    recf = {r["seed"]: r for r in results if r["method"] == "rec-f"}
    summary = {}
    variants = sorted({(r["alpha"], r["clip"]) for r in results if r["method"] == "actflow"},
                      key=lambda v: (v[1] is not None, v[0]))
    for a, c in variants:
        rs = [r for r in results if r["method"] == "actflow" and r["alpha"] == a and r["clip"] == c]
        summary[label(a, c)] = {
            **{k: mean_std([r["last"][k] for r in rs]) for k in KEYS},
            "coverage_over_rec_f": mean_std([r["last"]["coverage"] / recf[r["seed"]]["last"]["coverage"] for r in rs]),
            "coverage_over_pretrained": mean_std([r["last"]["coverage"] / r["first"]["coverage"] for r in rs]),
            "validity_minus_pretrained": mean_std([r["last"]["validity"] - r["first"]["validity"] for r in rs]),
            "tilt_ess_per_round": mean_std([e for r in rs for e in r["tilt_ess"] if e is not None]),
            "tilt_weight_on_new": mean_std([e for r in rs for e in r["tilt_weight_on_new"] if e is not None]),
        }
    summary["rec-f"] = {k: mean_std([r["last"][k] for r in recf.values()]) for k in KEYS}
    plot(summary, [label(a, c) for a, c in variants if c is None], [label(a, c) for a, c in variants if c is not None],
         RESULTS / "peptides_tilt_sweep.png", "discrete peptides")
    write_result("peptides_tilt_sweep", {"settings": {k: v for k, v in vars(args).items()}, "summary": summary,
                                         "runs": results}, started)
    for a, row in summary.items():
        print(a, {k: (round(v["mean"], 3) if v else None) for k, v in row.items()})
    return 0


def plot(summary: dict, alphas: list[str], clipped: list[str], path: Path, setting: str) -> None:
    """ESS, coverage over Rec-F and validity against α: ``summary[label][key]`` mean_std rows, one per α
    label (``alphas``: unclipped, on the line; ``clipped``: "α, log-ratio clip c" labels, as points), and
    ``summary["rec-f"]["validity"]``."""
    from flowdisco.plotting import save_figure, subplots

    xs = [float(a) for a in alphas]
    fig, axes = subplots(1, 3, figsize=(12, 3.4))
    panels = (("tilt_ess_per_round", "effective sample size of the tilt weights"),
              ("coverage_over_rec_f", "coverage ActFlow / Rec-F (per seed)"), ("validity", "validity"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        m = [summary[a][key]["mean"] for a in alphas]
        lo = [summary[a][key]["min"] for a in alphas]
        hi = [summary[a][key]["max"] for a in alphas]
        ax.plot(xs, m, marker="o", color="#e76f51", label="ActFlow (tilted)")
        ax.fill_between(xs, lo, hi, color="#e76f51", alpha=0.2)
        for c in clipped:
            ax.errorbar([float(c.split(",")[0])], [summary[c][key]["mean"]],
                        yerr=[[summary[c][key]["mean"] - summary[c][key]["min"]],
                              [summary[c][key]["max"] - summary[c][key]["mean"]]],
                        marker="s", color="#264653", label=f"α {c}", capsize=3)
        if key == "validity":
            ax.axhline(summary["rec-f"]["validity"]["mean"], color="#2a9d8f", ls="--", label="Rec-F")
            ax.legend(fontsize=8)
        if key == "coverage_over_rec_f":
            ax.axhline(1.0, color="grey", ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("tilt temperature α")
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"tilt temperature α of discrete ActFlow ({setting})", fontsize=10)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
