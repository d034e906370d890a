"""Benchmark: Pre-trained / Rec-NF / Rec-F / ActFlow on the sequence domains, same budget, several seeds.

    python benchmarks/sequences.py peptides   # both model families → benchmarks/results/peptides.json
    python benchmarks/sequences.py proteins   # continuous Gaussian flow → benchmarks/results/proteins.json
    python benchmarks/sequences.py peptides --families discrete --seeds 0 --rounds 2 --work-dir runs/quick

Peptides run both model families of the issue: the continuous Gaussian flow on one-hots, where
ActFlow explores by gradient guidance (GP surrogate on the encoder features at s = 0.9), and the
masked discrete flow, where ActFlow explores by reward-tilted fine-tuning (importance weights
softmax(log p_θ/p_gen + σ/α) in the denoising loss). Proteins run the continuous family.

Metrics per evaluation (on the domain's eval_samples raw samples and eval_valid valid ones): validity
(the verifier — for peptides an AMP-likeness classifier plus modlamp rules, a computational proxy),
coverage = identity sphere exclusion (new centre if identity < 0.35; also at a stricter identity and on
k-mer spectra), Vendi (cosine kernel on 1-/2-mer spectra), novelty = 1 − mean max identity to the
training set. For peptides also the modlamp descriptor distributions of the training set, of the
pre-trained model's valid warm-up designs and of each method's valid designs from its last rounds
(peptides_descriptors.png).

Models: the shipped checkpoint of each domain when there is one, else one pre-trained here (kept in
the work dir). A killed benchmark continues where it stopped when run again with the same arguments.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import flowdisco as fd
from common import RESULTS, write_result
from expansion import COLORS, METHODS, common_arguments, compare_methods, plot_curves, pretrained_model

KEYS = ["validity", "uniqueness", "coverage", "coverage_id0.7", "coverage_id0.9", "coverage_kmer", "vendi",
        "novelty", "novel_fraction", "n_new_unique", "mean_length", "frechet_to_reference"]
FAMILIES = {"peptides": {"continuous": "peptides", "discrete": "peptides-discrete"},
            "proteins": {"continuous": "proteins", "discrete": "proteins-discrete"}}
DEFAULT_FAMILIES = {"peptides": ["continuous", "discrete"], "proteins": ["continuous"]}
LAST_ROUNDS = 3  # "after expansion": valid designs generated in a method's last rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domain", choices=sorted(FAMILIES))
    ap.add_argument("--families", nargs="+", choices=["continuous", "discrete"], default=None)
    common_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    from flowdisco.cli import parse_settings

    options = parse_settings(args.set)
    actflow_options = parse_settings(args.actflow_set)
    seeds = [str(s) for s in args.seeds]
    out: dict = {"settings": vars(args), "domain": args.domain, "families": {}}
    for family in args.families or DEFAULT_FAMILIES[args.domain]:
        name = FAMILIES[args.domain][family]
        dom = fd.domains.get_domain(name)
        work = Path(args.work_dir or "runs") / f"bench-{name}"
        model, pretrain_info = pretrained_model(dom, args.model, args.pretrain_steps, work, parse_settings(args.net))
        if args.fresh:
            for sub in work.glob("*-s*"):
                shutil.rmtree(sub)
        print(f"== {name} ({family})", flush=True)
        res = compare_methods(model, dom, seeds=args.seeds, work=work, keys=KEYS, options=options,
                              rounds=args.rounds, eval_every=args.eval_every,
                              method_options={"actflow": actflow_options})
        runs = res.pop("runs")
        r = res["ratios"]
        res["goals"] = {
            "actflow_coverage_at_least_1.3x_rec_f": r["actflow_coverage_over_rec_f"] is not None
            and r["actflow_coverage_over_rec_f"]["mean"] >= 1.3,
            "actflow_validity_not_below_pretrained": r["actflow_validity_minus_pretrained"]["mean"] >= 0.0,
            # the paper's peptide finding: Rec-NF's validity falls; count it when it falls by ≥ 0.05
            "rec_nf_validity_drops_by_0.05": r["rec_nf_validity_minus_pretrained"]["mean"] <= -0.05}
        plot_curves(res["per_seed"], seeds, ["validity", "coverage", "coverage_kmer", "vendi"],
                    RESULTS / f"{name.replace('-', '_')}_curves.png", f"{name} ({family})")
        if args.domain == "peptides":
            res["descriptors"] = _descriptor_plot(dom, runs, seeds, RESULTS / f"{name.replace('-', '_')}"
                                                                         f"_descriptors.png", name)
        res.update({"pretrain": pretrain_info, "expand_defaults": dom.expand_defaults()})
        out["families"][family] = res
        for k, v in r.items():
            if v is not None:
                print(f"{k}: {v['mean']:.3f} ± {v['std']:.3f}")
        print("goals:", res["goals"], flush=True)
    write_result(args.domain, {**out, "expand_options": options, "actflow_options": actflow_options}, started)


def _descriptor_plot(dom, runs: dict, seeds: list[str], path: Path, title: str) -> dict:
    """Histograms of modlamp descriptors: training set, the pre-trained model's valid warm-up designs,
    and each method's valid designs from its last rounds (all seeds pooled). Returns the medians."""
    from flowdisco.plotting import save_figure, subplots

    def valid_designs(run, first_round: int, last_round: int) -> list[str]:
        buf = run.buffer
        sel = buf.valid & (buf.round >= first_round) & (buf.round <= last_round)
        return [d for d in dom.decode_safe(buf.x[sel]) if d]

    groups: dict[str, list[str]] = {"training set": dom.splits()["train"]}
    groups["pre-trained"] = [d for s in seeds for d in valid_designs(runs["rec-f"][s], 0, 0)]
    for m in METHODS:
        pooled = []
        for s in seeds:
            last = int(runs[m][s].buffer.round.max())
            pooled += valid_designs(runs[m][s], max(1, last - LAST_ROUNDS + 1), last)
        groups[m] = pooled
    desc = {g: dom.peptide_descriptors(v) for g, v in groups.items() if v}
    names = ["Length", "Charge", "HydrophRatio", "pI", "InstabilityInd", "AliphaticInd", "BomanInd",
             "HydrophobicMoment"]
    names = [n for n in names if all(n in d for d in desc.values())]
    fig, axes = subplots(2, 4, figsize=(16, 6.4), dpi=100)
    colours = {"training set": "#999999", "pre-trained": "#264653", **COLORS}
    for ax, n in zip(axes.reshape(-1), names, strict=False):
        lo = min(np.percentile(d[n], 1) for d in desc.values())
        hi = max(np.percentile(d[n], 99) for d in desc.values())
        bins = np.linspace(lo, hi, 30)
        for g, d in desc.items():
            ax.hist(d[n], bins=bins, density=True, histtype="step", lw=1.6, color=colours[g], label=g)
        ax.set_title(n, fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{title}: modlamp descriptors before (pre-trained) and after expansion "
                 f"(valid designs of the last {LAST_ROUNDS} rounds)", fontsize=10)
    save_figure(fig, path)
    return {g: {"n": len(groups[g]), **{n: float(np.median(d[n])) for n in names}} for g, d in desc.items()}


if __name__ == "__main__":
    main()
