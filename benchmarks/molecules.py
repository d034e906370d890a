"""Benchmark: Pre-trained / Rec-NF / Rec-F / ActFlow on a molecule domain, same budget, several seeds.

Domains:
  qm9      the shipped QM9 model (flowdisco/assets/qm9_model) → benchmarks/results/qm9.json
  qm9-ood  pre-trains on QM9 without fluorine and without 3-/4-membered rings, then measures how
           much of the held-out rest each method reaches → benchmarks/results/qm9_ood.json
  moses    a MOSES model given by --model (or pre-trained here with --pretrain-steps)
           → benchmarks/results/moses.json
  qm9-capped, moses-capped   the same models with valence-capped decoding (README, Molecules)
  qm9-connected, moses-connected   the same models, capped decoding with the fragments joined
  qm9-discrete, moses-discrete   masked discrete flows on token graphs (the shipped CPU-trained models);
           ActFlow explores by reward-tilted fine-tuning (no gradient guidance on discrete tokens)
  qm9-discrete-known-rings   the discrete QM9 model with a stricter verifier: every ring system must
           occur in a training molecule (flowdisco.domains.rings)

Each method runs the domain's expansion defaults (ensemble surrogate, φ from the node head, gradient
guidance) for --rounds rounds and is evaluated every --eval-every rounds on 1000 raw samples
(validity) and 500 valid ones: LeaderPicker coverage at Tanimoto distance 0.85 (the paper's) and at
0.7 and 0.9, Vendi (Tanimoto kernel), uniqueness, novelty (mean nearest-neighbour Tanimoto to the
training set), valid unique molecules not in the data set, FCD to the test split and to the
pre-trained model's samples. For qm9-ood also: held-out molecules and Murcko scaffolds among the
evaluation samples and among every valid design generated during the run.

    python benchmarks/molecules.py qm9                          # 3 seeds × 12 rounds of 250 fine-tuning steps
    python benchmarks/molecules.py qm9-ood --pretrain-steps 8000
    python benchmarks/molecules.py qm9 --rounds 2 --seeds 0 --work-dir runs/quick   # quick look
    python benchmarks/molecules.py qm9 --seeds 0 --set warmup_valid=1024 warmup_batch=1024 \\
        --work-dir runs/bench-qm9-w1024 --name qm9_w1024               # a variant, in its own result file
    python benchmarks/molecules.py qm9 --actflow-set surrogate=gp guidance_strength=3 \\
        --work-dir runs/bench-qm9-gp --name qm9_gp      # ActFlow variant; copy finished baseline runs in to reuse them
    python benchmarks/molecules.py qm9 --actflow-set surrogate=gp mean_weight=0.1 --name qm9_mw01 \\
        --baselines-from benchmarks/results/qm9.json      # ActFlow variant; Rec-NF and Rec-F read from a result
    python benchmarks/molecules.py qm9 --methods actflow --seeds 3 4 5 --actflow-set surrogate=gp \\
        --name qm9_fresh                  # ActFlow only (against its own round 0): e.g. a setting on fresh seeds

A killed benchmark continues where it stopped when run again with the same arguments: finished
runs are read back from their run directories, unfinished ones resume (--fresh starts over).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

import flowdisco as fd
from common import RESULTS, write_result
from expansion import (
    METHODS,
    check_baselines,
    common_arguments,
    compare_methods,
    new_designs,
    plot_curves,
    pretrained_model,
)

KEYS = ["validity", "uniqueness", "coverage", "coverage_0.7", "coverage_0.9", "vendi", "novelty", "novel_fraction",
        "n_new_unique", "frechet_to_test", "frechet_to_reference", "outside_restriction_fraction",
        "held_out_molecules", "held_out_scaffolds"]
DOMAINS = ("qm9", "qm9-ood", "moses", "qm9-capped", "moses-capped", "qm9-connected", "moses-connected",
           "qm9-discrete", "moses-discrete", "qm9-discrete-known-rings")
# The benchmark's budget for the QM9 domains (the results in BENCHMARKS.md), larger than the main job's
# defaults, which are cut to finish `flowdisco expand qm9` within 10 minutes on 2 cores.
QM9_BUDGET = {"rounds": 12, "eval_every": 6, "finetune_steps": 250}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domain", choices=sorted(DOMAINS))
    ap.add_argument("--max-train", type=int, default=None, help="moses: training molecules used")
    ap.add_argument("--name", default=None,
                    help="result name: benchmarks/results/NAME.json and its plots (default: the domain, - as _)")
    ap.add_argument("--baselines-from", default=None, metavar="RESULT.json",
                    help="take Rec-NF and Rec-F from this earlier result of the same model, budget and seeds "
                         "instead of running them (only ActFlow runs; for ActFlow variants)")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS,
                    help="the methods to run (default all); a ratio or goal whose methods did not run is null")
    common_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    from flowdisco.cli import parse_settings

    options = parse_settings(args.set)
    actflow_options = parse_settings(args.actflow_set)
    if args.domain.startswith("qm9"):
        options.setdefault("finetune_steps", QM9_BUDGET["finetune_steps"])
        args.rounds = args.rounds or QM9_BUDGET["rounds"]
        args.eval_every = args.eval_every or QM9_BUDGET["eval_every"]
    work = Path(args.work_dir or f"runs/bench-{args.domain}")
    kwargs = {"max_train": args.max_train} if args.max_train else {}
    dom = fd.domains.get_domain(args.domain, **kwargs)
    model, pretrain_info = pretrained_model(dom, args.model, args.pretrain_steps, work, parse_settings(args.net))
    baselines = None
    if args.baselines_from:
        try:
            baselines = json.loads(Path(args.baselines_from).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"--baselines-from {args.baselines_from}: cannot read it as a result JSON ({e})") from e
        check_baselines(baselines, domain=args.domain, seeds=args.seeds, rounds=args.rounds,
                        eval_every=args.eval_every, options=options, pretrain=pretrain_info)
    if args.fresh:
        for sub in work.glob("*-s*"):
            shutil.rmtree(sub)
    res = compare_methods(model, dom, seeds=args.seeds, work=work, keys=KEYS, options=options, rounds=args.rounds,
                          eval_every=args.eval_every, method_options={"actflow": actflow_options},
                          discovered=_discovered, baselines=baselines, methods=args.methods,
                          summary=lambda e: f", FCD test {e.get('frechet_to_test', float('nan')):.2f}")
    ratios = res["ratios"]
    goals = {"actflow_coverage_at_least_1.5x_pretrained": _at_least(ratios["actflow_coverage_over_pretrained"], 1.5),
             "actflow_coverage_at_least_1.3x_rec_f": _at_least(ratios["actflow_coverage_over_rec_f"], 1.3),
             "actflow_validity_not_below_pretrained": _at_least(ratios["actflow_validity_minus_pretrained"], 0.0)}
    name = args.name or args.domain.replace("-", "_")
    keys = ["validity", "coverage", "vendi", "frechet_to_test"]
    if args.domain == "qm9-ood":
        keys = ["validity", "coverage", "outside_restriction_fraction", "held_out_scaffolds"]
    plot_curves(res["per_seed"], [str(s) for s in args.seeds], keys, RESULTS / f"{name}_curves.png", args.domain)
    grid = work / f"actflow-s{args.seeds[0]}" / "plots" / "new_designs.png"
    if grid.is_file():
        shutil.copyfile(grid, RESULTS / f"{name}_new_molecules.png")
    res.pop("runs")
    write_result(name, {"settings": vars(args), "domain": args.domain, "pretrain": pretrain_info,
                        "expand_defaults": dom.expand_defaults(), "expand_options": options,
                        "actflow_options": actflow_options, **res,
                        "goals": goals}, started)
    for k, v in ratios.items():
        if v is not None:
            print(f"{k}: {v['mean']:.3f} ± {v['std']:.3f}")
    print("goals:", goals)


def _at_least(ratio: dict | None, goal: float) -> bool | None:
    """Whether a ratio's mean over seeds meets its goal; None when its methods did not run."""
    return None if ratio is None else ratio["mean"] >= goal


def _discovered(run, dom) -> dict[str, float]:
    """What the whole run generated (warm-up excluded): valid unique molecules not in the data set, the
    share of the distinct valid ones with a ring system no training molecule has (and the same share
    among the warm-up's valid samples of the pre-trained model), and for qm9-ood the held-out molecules
    and scaffolds among them."""
    from flowdisco.domains.rings import unknown_ring_fraction
    from flowdisco.expand.loop import found_in_rounds

    out = new_designs(run, dom)
    buf, known = run.buffer, dom.known_ring_systems()
    warmup = {dom.key(d): d for d in dom.decode_safe(buf.x[buf.valid & (buf.round == 0)]) if d}
    out["unknown_ring_fraction"] = unknown_ring_fraction(list(found_in_rounds(buf, dom).values()), known)
    out["warmup_unknown_ring_fraction"] = unknown_ring_fraction(list(warmup.values()), known)
    if dom.name == "qm9-ood":
        from flowdisco.domains.qm9 import ood_counts

        buf = run.buffer
        designs = [d for d in dom.decode_safe(buf.x[buf.valid & (buf.round > 0)]) if d]
        out.update(ood_counts(dom, designs))
    return out


if __name__ == "__main__":
    main()
