"""Argmax, valence-capped and connected decoding of one molecule model: what the decoding alone changes.

All decodings read the *same* samples: each evaluation draw k runs the library's ``evaluate`` on the
domain (``qm9``) with the seed ``derive_seed(k, "eval")`` (the evaluation draws of ``molecules.py``'s
runs), and the same sampled tensors are then decoded and verified by its capped variant
(``qm9-capped``: bonds lowered or dropped to fit valences) and its connected variant
(``qm9-connected``: the capped graph with its fragments joined) and scored by the same metric code
(``sample_metrics``), so only the decoding differs. (Each decoding's set metrics read its first
``--n-valid`` valid molecules among the samples the argmax evaluation drew.) Reported per decoding over
the draws: validity on the raw samples, uniqueness, novelty, LeaderPicker coverage and Vendi of the
first ``--n-valid`` valid molecules, FCD to the test set, and why the invalid samples were rejected
(the verifier's first failed check). Each correction is also compared with the decoding it builds on
(capped with argmax, connected with capped), per draw: how many raw samples it changed, how many it
made valid ("rescued"), how many molecules valid before it changed and how many it made invalid
("lost"). By construction neither correction touches a molecule that was valid before it (a valid
molecule has no atom over its valence and is one fragment); the counts check that.

    python benchmarks/decoding.py qm9 --draws 3 --threads 2
    python benchmarks/decoding.py moses --draws 3 --n-samples 500 --n-valid 100 --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import RESULTS, grouped_bars, mean_std, write_result
from flowdisco.domains import get_domain
from flowdisco.domains.molgraph import DECODINGS  # argmax, capped, connected
from flowdisco.evaluate import evaluate, format_rejections, redecoded, rejection_counts, sample_metrics
from flowdisco.flow.model import FlowModel
from flowdisco.seeding import derive_seed

KEYS = ("validity", "uniqueness", "novel_fraction", "novelty", "coverage", "coverage_0.9", "vendi", "n_valid",
        "frechet_to_test")
STEPS = (("capped", "argmax"), ("connected", "capped"))  # each correction and the decoding it builds on
COUNTS = ("changed", "rescued", "valid_before_changed", "lost")


def one_draw(model: FlowModel, domains: dict[str, Any], k: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every decoding's metrics of evaluation draw k, and what each correction changed on its raw samples."""
    n = args.n_samples
    stats_a, raw_a, _ = evaluate(model, domains["argmax"], n_samples=n, n_valid=args.n_valid,
                                 seed=derive_seed(k, "eval"), steps=args.steps, extra=False,
                                 max_batches=args.max_batches, return_samples=True)
    raw, out = {"argmax": raw_a}, {"draw": k, "argmax": stats_a}
    for d in DECODINGS[1:]:
        raw[d] = redecoded(domains[d], raw_a)  # the same tensors through another decoder
        valid = raw[d].select(np.flatnonzero(raw[d].valid)[: args.n_valid])
        out[d] = sample_metrics(domains[d], raw[d], n, valid)
    for d, before in STEPS:
        a, b = raw[before], raw[d]
        changed = np.array([da != db for da, db in zip(a.designs[:n], b.designs[:n], strict=True)])
        out[f"{d}_vs_{before}"] = {"changed": int(changed.sum()),
                                   "rescued": int(np.sum(~a.valid[:n] & b.valid[:n])),
                                   "valid_before_changed": int(np.sum(a.valid[:n] & changed)),
                                   "lost": int(np.sum(a.valid[:n] & ~b.valid[:n]))}
    out["rejections"] = {d: rejection_counts(domains[d], raw[d], n) for d in DECODINGS}
    return out


def summary(draws: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {d: {key: mean_std([r[d].get(key) for r in draws]) for key in KEYS} for d in DECODINGS}
    for d, before in STEPS:
        out[f"{d}_minus_{before}"] = {key: mean_std([None if r[before].get(key) is None or r[d].get(key) is None
                                                    else r[d][key] - r[before][key] for r in draws])
                                      for key in KEYS}
        out[f"{d}_vs_{before}"] = {key: mean_std([r[f"{d}_vs_{before}"][key] for r in draws]) for key in COUNTS}
    out["rejections"] = {}
    for d in DECODINGS:
        reasons = sorted({reason for r in draws for reason in r["rejections"][d]})
        out["rejections"][d] = {reason: mean_std([r["rejections"][d].get(reason, 0) for r in draws])
                                for reason in reasons}
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = {d: result["summary"][d] for d in DECODINGS}
    keys = [k for k in ("validity", "uniqueness", "novel_fraction", "novelty") if summaries["argmax"][k]]
    counts = [k for k in ("coverage", "coverage_0.9", "vendi") if all(s[k] for s in summaries.values())]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    grouped_bars(axes[0], summaries, keys, width=0.27)
    grouped_bars(axes[1], summaries, counts, width=0.27)
    axes[0].set_ylim(0, 1.05)
    axes[1].set_xticks(range(len(counts)), [f"{k} (up to {result['n_valid']} valid)" for k in counts], fontsize=8)
    axes[0].legend()
    fig.suptitle(f"{result['domain']}: argmax, valence-capped and connected decoding of the same samples "
                 f"({len(result['draws'])} draws, mean ± sd)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domain", choices=["qm9", "moses"])
    ap.add_argument("--model", default=None, help="model directory (default: the domain's shipped model)")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--n-valid", type=int, default=500)
    ap.add_argument("--max-batches", type=int, default=1, help="sample batches to find the valid molecules")
    ap.add_argument("--steps", type=int, default=50, help="Euler steps (molecules.py's evaluations use 50)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default=None, help="result name (default DOMAIN_decoding)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    domains = {d: get_domain(args.domain if d == "argmax" else f"{args.domain}-{d}") for d in DECODINGS}
    path = args.model or domains["argmax"].pretrained_model_path()
    if path is None:
        raise SystemExit(f"{args.domain} ships no model; pass --model")
    model = FlowModel.load(path).eval()
    draws = []
    for k in range(args.draws):
        draws.append(one_draw(model, domains, k, args))
        r = draws[-1]
        print(f"draw {k}: validity " + " -> ".join(f"{r[d]['validity']:.3f}" for d in DECODINGS) + ", coverage "
              + " -> ".join(str(r[d].get("coverage")) for d in DECODINGS), flush=True)
        for d, before in STEPS:
            print(f"  {d} vs {before}: " + ", ".join(f"{c} {r[f'{d}_vs_{before}'][c]}" for c in COUNTS), flush=True)
        for d in DECODINGS:
            print(f"  {d}: {format_rejections(r['rejections'][d], args.n_samples)}", flush=True)
    name = args.name or f"{args.domain}_decoding"
    result = {"domain": args.domain, "model": str(path), "seeds": [derive_seed(k, "eval") for k in range(args.draws)],
              "n_samples": args.n_samples, "n_valid": args.n_valid, "sampler": f"euler, {args.steps} steps",
              "draws": draws, "summary": summary(draws)}
    write_result(name, result, started)
    plot(result, RESULTS / f"{name}.png")


if __name__ == "__main__":
    main()
