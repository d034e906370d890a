"""Benchmark: Pre-trained / Rec-NF / Rec-F / ActFlow on a molecule domain, same budget, several seeds.

Domains:
  qm9      the shipped QM9 model (flowdisco/assets/qm9_model) → benchmarks/results/qm9.json
  qm9-ood  pre-trains on QM9 without fluorine and without 3-/4-membered rings, then measures how
           much of the held-out rest each method reaches → benchmarks/results/qm9_ood.json
  moses    a MOSES model given by --model (or pre-trained here with --pretrain-steps)
           → benchmarks/results/moses.json

Each method runs the domain's expansion defaults (ensemble surrogate, φ from the node head, gradient
guidance) for --rounds rounds and is evaluated every --eval-every rounds on 1000 raw samples
(validity) and 500 valid ones: LeaderPicker coverage at Tanimoto distance 0.85 (the paper's) and at
0.7 and 0.9, Vendi (Tanimoto kernel), uniqueness, novelty (mean nearest-neighbour Tanimoto to the
training set), valid unique molecules not in the data set, FCD to the test split and to the
pre-trained model's samples. For qm9-ood also: held-out molecules and Murcko scaffolds among the
evaluation samples and among every valid design generated during the run.

    python benchmarks/molecules.py qm9                          # 3 seeds × the domain's rounds (qm9: 12)
    python benchmarks/molecules.py qm9-ood --pretrain-steps 8000
    python benchmarks/molecules.py qm9 --rounds 2 --seeds 0 --work-dir runs/quick   # quick look

A killed benchmark continues where it stopped when run again with the same arguments: finished
runs are read back from their run directories, unfinished ones resume (--fresh starts over).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch

import flowdisco as fd
from common import RESULTS, mean_std, write_result
from flowdisco.flow.model import FlowModel

METHODS = ["rec-nf", "rec-f", "actflow"]
KEYS = ["validity", "uniqueness", "coverage", "coverage_0.7", "coverage_0.9", "vendi", "novelty", "novel_fraction",
        "n_new_unique", "frechet_to_test", "frechet_to_reference", "outside_restriction_fraction",
        "held_out_molecules", "held_out_scaffolds"]
OUTPUT = {"qm9": "qm9", "qm9-ood": "qm9_ood", "moses": "moses"}
COLORS = {"actflow": "#e76f51", "rec-f": "#2a9d8f", "rec-nf": "#6d597a"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domain", choices=sorted(OUTPUT))
    ap.add_argument("--rounds", type=int, default=None, help="default: the domain's (qm9: 12)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-every", type=int, default=None, help="default: the domain's (qm9: 6)")
    ap.add_argument("--model", default=None, help="model directory (default: shipped, or pre-trained here)")
    ap.add_argument("--pretrain-steps", type=int, default=None, help="steps when this script pre-trains")
    ap.add_argument("--max-train", type=int, default=None, help="moses: training molecules used")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="expand options for every method")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fresh", action="store_true",
                    help="delete earlier runs in the work dir (default: continue or reuse them)")
    ap.add_argument("--work-dir", default=None, help="run directories (default runs/bench-DOMAIN, not committed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    from flowdisco.cli import parse_settings

    options = parse_settings(args.set)
    work = Path(args.work_dir or f"runs/bench-{args.domain}")
    kwargs = {"max_train": args.max_train} if args.max_train else {}
    dom = fd.domains.get_domain(args.domain, **kwargs)
    model, pretrain_info = _model(dom, args, work)
    if args.fresh:
        for sub in work.glob("*-s*"):
            shutil.rmtree(sub)

    per_seed: dict[str, dict[str, dict]] = {m: {} for m in ["pretrained", *METHODS]}
    discovered: dict[str, dict[str, dict]] = {m: {} for m in METHODS}
    timing: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in args.seeds:
        for method in METHODS:
            t0 = time.time()
            run_dir = work / f"{method}-s{seed}"
            # an existing run with the same settings is continued (or, if complete, read back)
            run = fd.expand(model, dom, method=method, rounds=args.rounds, eval_every=args.eval_every, seed=seed,
                            run_dir=run_dir, resume=(run_dir / "config.json").is_file(), progress=False, **options)
            timing[method].append(time.time() - t0)
            evals = run.evaluations()
            curve = {"round": [h["round"] for h in evals]}
            curve.update({k: [h["eval"].get(k) for h in evals] for k in KEYS})
            curve["round_validity"] = [h["round_validity"] for h in run.history[1:]]
            curve["round_new_valid_unique"] = [h["round_new_valid_unique"] for h in run.history[1:]]
            curve["round_seconds"] = [h["round_seconds"] for h in run.history[1:]]
            per_seed[method][str(seed)] = curve
            per_seed["pretrained"].setdefault(str(seed), {k: evals[0]["eval"].get(k) for k in KEYS})
            discovered[method][str(seed)] = _discovered(run, dom)
            last = evals[-1]["eval"]
            print(f"seed {seed} {method:8s} {timing[method][-1]:6.0f} s: validity {last['validity']:.3f}, "
                  f"coverage {evals[0]['eval']['coverage']:.0f} → {last['coverage']:.0f}, "
                  f"vendi {last['vendi']:.1f}, FCD test {last.get('frechet_to_test', float('nan')):.2f}, "
                  f"new molecules {discovered[method][str(seed)]['new_valid_unique']}", flush=True)

    seeds = [str(s) for s in args.seeds]
    final = {m: {k: mean_std([per_seed[m][s][k][-1] for s in seeds]) for k in KEYS} for m in METHODS}
    final["pretrained"] = {k: mean_std([per_seed["pretrained"][s][k] for s in seeds]) for k in KEYS}
    disc_keys = sorted({k for m in METHODS for s in seeds for k in discovered[m][s]})
    discovered_summary = {m: {k: mean_std([discovered[m][s].get(k) for s in seeds]) for k in disc_keys}
                          for m in METHODS}

    def last(m: str, k: str) -> list[float]:
        return [per_seed[m][s][k][-1] for s in seeds]

    cov_pre = [per_seed["pretrained"][s]["coverage"] for s in seeds]
    ratios = {
        "actflow_coverage_over_pretrained": mean_std([a / p for a, p in zip(last("actflow", "coverage"), cov_pre,
                                                                            strict=True)]),
        "actflow_coverage_over_rec_f": mean_std([a / r for a, r in zip(last("actflow", "coverage"),
                                                                       last("rec-f", "coverage"), strict=True)]),
        "actflow_validity_minus_pretrained": mean_std(
            [a - per_seed["pretrained"][s]["validity"] for a, s in zip(last("actflow", "validity"), seeds,
                                                                        strict=True)]),
    }
    goals = {"actflow_coverage_at_least_1.5x_pretrained": ratios["actflow_coverage_over_pretrained"]["mean"] >= 1.5,
             "actflow_coverage_at_least_1.3x_rec_f": ratios["actflow_coverage_over_rec_f"]["mean"] >= 1.3,
             "actflow_validity_not_below_pretrained": ratios["actflow_validity_minus_pretrained"]["mean"] >= 0.0}
    name = OUTPUT[args.domain]
    _plot_curves(per_seed, seeds, name, args.domain)
    grid = work / f"actflow-s{args.seeds[0]}" / "plots" / "new_designs.png"
    if grid.is_file():
        shutil.copyfile(grid, RESULTS / f"{name}_new_molecules.png")
    write_result(name, {"settings": vars(args), "domain": args.domain, "pretrain": pretrain_info,
                        "expand_defaults": dom.expand_defaults(), "expand_options": options,
                        "per_seed": per_seed, "final": final, "discovered": discovered,
                        "discovered_summary": discovered_summary, "ratios": ratios, "goals": goals,
                        "method_seconds": {m: mean_std(v) for m, v in timing.items()}}, started)
    for k, v in ratios.items():
        print(f"{k}: {v['mean']:.3f} ± {v['std']:.3f}")
    print("goals:", goals)


def _model(dom, args: argparse.Namespace, work: Path) -> tuple[FlowModel, dict]:
    """The model to expand: --model, the shipped one, or one pre-trained (and kept) in the work dir."""
    if args.model:
        return FlowModel.load(args.model), {"source": args.model}
    shipped = dom.pretrained_model_path()
    if shipped is not None:
        return FlowModel.load(shipped), {"source": "shipped", "path": shipped}
    target = work / "pretrained"
    info = {"source": str(target), "steps": args.pretrain_steps or dom.default_pretrain()["steps"],
            "training_molecules": len(dom.training_data())}
    if (target / "model" / "flowdisco_model.json").is_file():
        print(f"using the pre-trained model in {target}", flush=True)
        return FlowModel.load(target), info
    t0 = time.time()
    model = fd.pretrain(dom, steps=args.pretrain_steps, run_dir=target, resume=(target / "config.json").is_file(),
                        progress=False)
    info["seconds"] = time.time() - t0
    print(f"pre-trained {dom.name} in {info['seconds']:.0f} s", flush=True)
    return model, info


def _discovered(run, dom) -> dict[str, float]:
    """What the whole run generated (warm-up excluded): valid unique molecules not in the data set,
    and for qm9-ood the held-out molecules and scaffolds among them."""
    buf = run.buffer
    sel = buf.valid & (buf.round > 0)
    designs = [d for d in dom.decode_safe(buf.x[sel]) if d]
    keys = {dom.key(d) for d in designs}
    out = {"generated": float(int((buf.round > 0).sum())), "valid_unique": float(len(keys)),
           "new_valid_unique": float(len(keys - dom.dataset_keys()))}
    if dom.name == "qm9-ood":
        from flowdisco.domains.qm9 import ood_counts

        out.update(ood_counts(dom, designs))
    return out


def _band(curves: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    n = min(len(c) for c in curves)
    cols = [[c[i] for c in curves] for i in range(n)]
    return [statistics.fmean(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]


def _plot_curves(per_seed: dict, seeds: list[str], name: str, domain: str) -> None:
    from flowdisco.plotting import save_figure, subplots

    keys = ["validity", "coverage", "vendi", "frechet_to_test"]
    if domain == "qm9-ood":
        keys = ["validity", "coverage", "outside_restriction_fraction", "held_out_scaffolds"]
    fig, axes = subplots(1, len(keys), figsize=(4 * len(keys), 3.6), dpi=110)
    for ax, k in zip(axes, keys, strict=True):
        for m in METHODS:
            curves = [per_seed[m][s][k] for s in seeds]
            if any(v is None for c in curves for v in c):
                continue
            rounds = per_seed[m][seeds[0]]["round"]
            mean, lo, hi = _band(curves)
            ax.plot(rounds[: len(mean)], mean, color=COLORS[m], label=m, marker="o", ms=3)
            ax.fill_between(rounds[: len(mean)], lo, hi, color=COLORS[m], alpha=0.2)
        ax.set_title(k.replace("_", " ") + (" (FCD)" if k.startswith("frechet") else ""), fontsize=10)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{domain}: mean and min–max over seeds {', '.join(seeds)}", fontsize=10)
    save_figure(fig, RESULTS / f"{name}_curves.png")


if __name__ == "__main__":
    main()
