"""Two model families on one molecule data set: the Gaussian flow on one-hots and the masked discrete flow.

Each model (a run directory or model directory written by ``flowdisco pretrain``) is evaluated on
``--draws`` evaluation draws (seeds ``derive_seed(k, "eval")``, as in ``decoding.py`` and
``molecules.py``) by the library's ``evaluate`` on the domain named in the model's own file (``qm9``
or ``qm9-discrete``), so both families are sampled, decoded (argmax: the model's *own* graph, no
correction) and scored by the same code. Models are given per family, one per training seed; the
summary pairs the families by position (training seed) and reports, per metric, the mean ± sd over all
(training seed, draw) pairs and the discrete / Gaussian ratio of validity per training seed. Training
cost (steps, seconds, last loss) is read from each run directory's ``metrics.jsonl`` when there is one.

    python benchmarks/families.py qm9 --gaussian runs/qm9-g-s0 runs/qm9-g-s1 --discrete runs/qm9-d-s0 runs/qm9-d-s1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import RESULTS, grouped_bars, mean_std, training_record, write_result
from flowdisco.domains import get_domain
from flowdisco.evaluate import evaluate, format_rejections, rejection_counts
from flowdisco.flow.model import FlowModel
from flowdisco.seeding import derive_seed

FAMILIES = ("gaussian", "discrete")
KEYS = ("validity", "uniqueness", "novel_fraction", "novelty", "coverage", "coverage_0.9", "vendi", "n_valid",
        "frechet_to_test")


def evaluate_model(path: str, args: argparse.Namespace) -> dict[str, Any]:
    model = FlowModel.load(path).eval()
    dom = get_domain(model.domain_name)
    draws = []
    for k in range(args.draws):
        stats, raw, _ = evaluate(model, dom, n_samples=args.n_samples, n_valid=args.n_valid,
                                 seed=derive_seed(k, "eval"), steps=args.steps, extra=False,
                                 max_batches=args.max_batches, return_samples=True)
        stats["rejections"] = rejection_counts(dom, raw, args.n_samples)
        draws.append(stats)
        print(f"{path} ({dom.name}) draw {k}: validity {stats['validity']:.3f}, uniqueness "
              f"{stats.get('uniqueness')}, FCD {stats.get('frechet_to_test')}; "
              f"{format_rejections(stats['rejections'], args.n_samples)}", flush=True)
    return {"model": path, "domain": dom.name, "kind": getattr(model, "kind", "continuous"),
            "training": training_record(path), "draws": draws}


def summary(result: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fam in FAMILIES:
        runs = result[fam]
        out[fam] = {key: mean_std([d.get(key) for r in runs for d in r["draws"]]) for key in KEYS}
        reasons = sorted({x for r in runs for d in r["draws"] for x in d["rejections"]})
        out[fam]["rejections"] = {x: mean_std([d["rejections"].get(x, 0) for r in runs for d in r["draws"]])
                                  for x in reasons}
    pairs = list(zip(result["gaussian"], result["discrete"], strict=False))
    ratios = []
    for g, d in pairs:
        vg = np.mean([x["validity"] for x in g["draws"]])
        vd = np.mean([x["validity"] for x in d["draws"]])
        ratios.append(float(vd / vg) if vg > 0 else None)
    out["validity_ratio_discrete_over_gaussian"] = mean_std(ratios)
    out["validity_ratio_per_training_seed"] = ratios
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    keys = [k for k in ("validity", "uniqueness", "novel_fraction") if s["gaussian"][k] and s["discrete"][k]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    grouped_bars(axes[0], {fam: s[fam] for fam in FAMILIES}, keys)
    for i, fam in enumerate(FAMILIES):
        fcd = s[fam]["frechet_to_test"]
        if fcd:
            axes[1].bar(i, fcd["mean"], 0.6, yerr=fcd["std"], capsize=3, label=fam)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend()
    axes[1].set_xticks(range(len(FAMILIES)), FAMILIES)
    axes[1].set_ylabel("FCD to the test split (lower is better)")
    n_models = len(result["gaussian"]), len(result["discrete"])
    fig.suptitle(f"{result['data']}: Gaussian vs masked discrete flow, own (argmax) decoding "
                 f"({n_models[0]}+{n_models[1]} models × {result['draws_per_model']} draws, mean ± sd)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", choices=["qm9", "moses"])
    ap.add_argument("--gaussian", nargs="+", required=True, help="Gaussian-flow models, one per training seed")
    ap.add_argument("--discrete", nargs="+", required=True, help="masked discrete models, one per training seed")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--n-valid", type=int, default=500)
    ap.add_argument("--max-batches", type=int, default=1, help="sample batches to find the valid molecules")
    ap.add_argument("--steps", type=int, default=100, help="sampler steps, both families")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default=None, help="result name (default DATA_families)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    seeds = [derive_seed(k, "eval") for k in range(args.draws)]
    result: dict[str, Any] = {"data": args.data, "n_samples": args.n_samples, "n_valid": args.n_valid,
                              "draws_per_model": args.draws, "seeds": seeds,
                              "sampler": f"{args.steps} steps (Euler ODE / Euler unmasking)"}
    for fam in FAMILIES:
        result[fam] = [evaluate_model(p, args) for p in getattr(args, fam)]
        wrong = [r["domain"] for r in result[fam] if (r["kind"] == "discrete") != (fam == "discrete")]
        if wrong:
            raise SystemExit(f"--{fam} was given models of domain(s) {wrong}")
    result["summary"] = summary(result)
    name = args.name or f"{args.data}_families"
    write_result(name, result, started)
    plot(result, RESULTS / f"{name}.png")
    v = result["summary"]
    print(f"validity: gaussian {v['gaussian']['validity']['mean']:.3f} ± {v['gaussian']['validity']['std']:.3f}, "
          f"discrete {v['discrete']['validity']['mean']:.3f} ± {v['discrete']['validity']['std']:.3f}")


if __name__ == "__main__":
    main()
