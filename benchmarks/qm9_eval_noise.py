"""How much of a QM9 run's measured coverage and validity is the evaluation's own noise.

Each evaluation of ``molecules.py qm9`` samples 1,000 molecules (validity) and scores the first 500
valid ones (LeaderPicker coverage at 0.85). Its seed is the run's, so round 0 of seeds 0–5 evaluates
the *same* pre-trained model six times with six different draws: any spread there is evaluation noise.
This script re-evaluates models with several evaluation seeds (``derive_seed(k, "eval")``, k = 0..K−1:
the evaluation draws of runs with seeds 0..K−1, so k = the run's own seed reproduces the number the
run recorded) and reports, per model, the mean and spread over the draws; per run, the final model's
mean against the pre-trained model's mean over all its draws (the per-seed ratio with the
evaluation noise of both ends averaged down); and how strongly one draw's luck is shared between
the pre-trained and a fine-tuned model (the correlation over common evaluation seeds). ``--arms``
also sets the recorded final evaluations of whole benchmark arms against that pooled mean. Where the
work dirs hold ActFlow and Rec-F runs of the same seed, ``paired`` compares their final models on the
same evaluation draws (mean over draws, ActFlow over Rec-F per seed). The domain is the runs' own
(``qm9``, ``qm9-discrete``, ...; one domain per call).

Results of each (model, evaluation seed) are cached as JSON under ``--cache``, so processes given
different ``--part i/n`` share the work and a last call without ``--part`` writes the summary.

    python benchmarks/qm9_eval_noise.py runs/bench-qm9-gp50-neg03-bal1-mw01 runs/bench-qm9-confirm-bal1-mw01 \\
        --pretrained-draws 10 --final-draws 3 --threads 1 --arms benchmarks/results/qm9_gp50_neg03_bal1_mw01.json ...
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from common import mean_std, runs_domain, write_result
from expansion import evaluation_rows, evaluations_by_seed
from flowdisco.evaluate import evaluate
from flowdisco.expand.state import RoundStore
from flowdisco.flow.model import FlowModel
from flowdisco.io import atomic_write_json, read_json
from flowdisco.seeding import derive_seed

PRETRAINED = "pretrained"
KEYS = ("validity", "coverage", "coverage_0.9", "coverage_0.7", "vendi")


def run_dirs_under(work_dirs: list[str]) -> list[Path]:
    dirs = sorted(d for w in work_dirs for d in Path(w).glob("*-s*") if (d / "state" / "LATEST.json").is_file())
    if not dirs:
        raise SystemExit(f"no finished run directories under {', '.join(work_dirs)}")
    return dirs


def load_model(name: str, dom: Any) -> FlowModel:
    """The shipped pre-trained model, or a run's latest committed model (the pre-trained one's network
    with the run's weights)."""
    model = FlowModel.load(dom.pretrained_model_path())
    if name != PRETRAINED:
        store = RoundStore(Path(name) / "state", writable=False)
        store.load_model_weights(store.latest_round(), model.net)
    return model.eval()


def run_config(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / "config.json", what="run config")["config"]


def one_evaluation(name: str, k: int, dom: Any, cache: Path, n_samples: int, n_valid: int,
                   steps: int) -> dict[str, float]:
    """Metrics of model ``name`` at evaluation seed k (cached)."""
    key = f"{dom.name}-{PRETRAINED}" if name == PRETRAINED else name.replace("/", "__")  # one cache, many domains
    path = cache / f"{key}__k{k}.json"
    if path.is_file():
        return read_json(path, what="cached evaluation")
    t0 = time.perf_counter()
    stats = evaluate(load_model(name, dom), dom, n_samples=n_samples, n_valid=n_valid, seed=derive_seed(k, "eval"),
                     steps=steps, solver="euler", extra=False)
    row = {key: float(stats[key]) for key in KEYS if key in stats} | {"seconds": time.perf_counter() - t0}
    atomic_write_json(path, row)
    print(f"{name} k={k}: validity {row['validity']:.3f}, coverage {row['coverage']:.0f} "
          f"({row['seconds']:.0f} s)", flush=True)
    return row


def correlation(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3 or statistics.pstdev(a) == 0 or statistics.pstdev(b) == 0:
        return None
    return statistics.correlation(a, b)


def summarize(runs: list[Path], pre: list[dict[str, float]], finals: dict[Path, list[dict[str, float]]],
              recorded: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    pre_cov, pre_val = [r["coverage"] for r in pre], [r["validity"] for r in pre]
    base_cov, base_val = statistics.fmean(pre_cov), statistics.fmean(pre_val)
    rows = []
    for d in runs:
        f = finals[d]
        cov, val = [r["coverage"] for r in f], [r["validity"] for r in f]
        common = range(min(len(f), len(pre)))
        rows.append({"run": str(d), "method": recorded[d]["method"], "seed": recorded[d]["seed"], "draws": len(f),
                     "coverage": mean_std(cov), "validity": mean_std(val),
                     "coverage_over_pretrained_mean": statistics.fmean(cov) / base_cov,
                     "validity_minus_pretrained_mean": statistics.fmean(val) - base_val,
                     "recorded_coverage_over_own_round0": recorded[d]["ratio"],
                     "recorded_validity_minus_own_round0": recorded[d]["delta"],
                     "coverage_correlation_with_pretrained_same_draw": correlation(
                         [pre_cov[k] for k in common], [cov[k] for k in common])})
    return {"pretrained": {"draws": len(pre), "coverage": mean_std(pre_cov), "validity": mean_std(pre_val),
                           "per_draw": pre},
            "runs": rows,
            "coverage_over_pretrained_mean": mean_std([r["coverage_over_pretrained_mean"] for r in rows]),
            "validity_minus_pretrained_mean": mean_std([r["validity_minus_pretrained_mean"] for r in rows]),
            "runs_meeting_both_against_pretrained_mean": sum(
                r["coverage_over_pretrained_mean"] >= 1.5 and r["validity_minus_pretrained_mean"] >= 0 for r in rows),
            "paired": paired_against_rec_f(rows, finals)}


def paired_against_rec_f(rows: list[dict[str, Any]],
                         finals: dict[Path, list[dict[str, float]]]) -> dict[str, Any] | None:
    """Per seed with an ActFlow and a Rec-F run: their final models' coverage and validity averaged over the
    same evaluation draws, ActFlow's coverage over Rec-F's and its validity minus Rec-F's; then mean ± std."""
    by = {(r["method"], r["seed"]): Path(r["run"]) for r in rows}
    seeds = sorted(s for m, s in by if m == "actflow" and ("rec-f", s) in by)
    if not seeds:
        return None
    per_seed = []
    for s in seeds:
        a, b = finals[by["actflow", s]], finals[by["rec-f", s]]
        n = min(len(a), len(b))  # the common draws
        cov = [statistics.fmean(r["coverage"] for r in x[:n]) for x in (a, b)]
        val = [statistics.fmean(r["validity"] for r in x[:n]) for x in (a, b)]
        per_seed.append({"seed": s, "draws": n, "actflow_coverage": cov[0], "rec_f_coverage": cov[1],
                         "coverage_ratio": cov[0] / cov[1], "validity_difference": val[0] - val[1]})
    return {"per_seed": per_seed, "coverage_ratio": mean_std([p["coverage_ratio"] for p in per_seed]),
            "validity_difference": mean_std([p["validity_difference"] for p in per_seed])}


def arms_against_pooled(files: list[str], base_cov: float, base_val: float) -> list[dict[str, Any]]:
    """ActFlow's recorded final evaluation in ``molecules.py`` result files, per seed, against the pre-trained
    model's mean over all its evaluation draws instead of the one draw of the run's own round 0."""
    out = []
    for f in files:
        final, _ = evaluations_by_seed(read_json(Path(f), what="benchmark result"), "actflow")
        seeds = list(final)
        cov = [final[s]["coverage"] / base_cov for s in seeds]
        val = [final[s]["validity"] - base_val for s in seeds]
        out.append({"file": Path(f).name, "seeds": seeds, "coverage_over_pretrained_mean": cov,
                    "validity_minus_pretrained_mean": val, "coverage_ratio": mean_std(cov),
                    "validity_change": mean_std(val),
                    "seeds_meeting_both": sum(c >= 1.5 and v >= 0 for c, v in zip(cov, val, strict=True))})
    return out


def recorded_against_round0(run_dir: Path) -> dict[str, Any]:
    """What the run itself recorded: final coverage over its round-0 coverage, validity difference."""
    evals = evaluation_rows(run_dir)
    first, last = evals[0], evals[-1]
    cfg = run_config(run_dir)
    return {"seed": cfg["seed"], "method": cfg["method"], "ratio": last["eval_coverage"] / first["eval_coverage"],
            "delta": last["eval_validity"] - first["eval_validity"],
            "round0": {"coverage": first["eval_coverage"], "validity": first["eval_validity"]},
            "final": {"coverage": last["eval_coverage"], "validity": last["eval_validity"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work_dirs", nargs="+", help="molecules.py work dirs (their METHOD-sSEED run dirs are read)")
    ap.add_argument("--pretrained-draws", type=int, default=10)
    ap.add_argument("--final-draws", type=int, default=4)
    ap.add_argument("--part", default=None, help="i/n: compute only every n-th evaluation from the i-th (0-based)")
    ap.add_argument("--arms", nargs="*", default=[], help="molecules.py result files whose recorded ActFlow finals are "
                    "also compared with the pre-trained model's mean over its draws")
    ap.add_argument("--cache", default="runs/eval-noise")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="qm9_eval_noise")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    runs = run_dirs_under(args.work_dirs)
    dom = runs_domain(runs)
    cfg = run_config(runs[0])
    size = {"n_samples": cfg["eval_samples"], "n_valid": cfg["eval_valid"], "steps": cfg["sampler_steps"]}
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(PRETRAINED, k) for k in range(args.pretrained_draws)]
    jobs += [(str(d), k) for k in range(args.final_draws) for d in runs]
    if args.part:
        i, n = (int(v) for v in args.part.split("/"))
        for name, k in jobs[i::n]:
            one_evaluation(name, k, dom, cache, **size)
        return
    results = {job: one_evaluation(*job, dom, cache, **size) for job in jobs}
    pre = [results[(PRETRAINED, k)] for k in range(args.pretrained_draws)]
    finals = {d: [results[(str(d), k)] for k in range(args.final_draws)] for d in runs}
    summary = summarize(runs, pre, finals, {d: recorded_against_round0(d) for d in runs})
    # the evaluations ran (and were cached) by earlier calls too: their own seconds, not this call's wall-clock
    summary["evaluation_seconds"] = mean_std([r["seconds"] for r in results.values()]) | {
        "total": sum(r["seconds"] for r in results.values())}
    p = summary["pretrained"]
    summary["arms"] = arms_against_pooled(args.arms, p["coverage"]["mean"], p["validity"]["mean"])
    print(f"pre-trained over {p['draws']} draws: coverage {p['coverage']['mean']:.1f} ± {p['coverage']['std']:.1f}, "
          f"validity {p['validity']['mean']:.3f} ± {p['validity']['std']:.3f}")
    for r in summary["runs"]:
        print(f"{r['run']}: coverage {r['coverage']['mean']:.1f} ± {r['coverage']['std']:.1f} → "
              f"{r['coverage_over_pretrained_mean']:.2f}× (recorded {r['recorded_coverage_over_own_round0']:.2f}×), "
              f"validity {r['validity_minus_pretrained_mean']:+.3f} "
              f"(recorded {r['recorded_validity_minus_own_round0']:+.3f})")
    for a in summary["arms"]:
        print(f"{a['file']}: " + ", ".join(f"s{s} {c:.2f}× {v:+.3f}" for s, c, v in zip(
            a["seeds"], a["coverage_over_pretrained_mean"], a["validity_minus_pretrained_mean"], strict=True))
              + f"; mean {a['coverage_ratio']['mean']:.2f}× {a['validity_change']['mean']:+.3f}; "
              f"{a['seeds_meeting_both']} of {len(a['seeds'])} meet both")
    if summary["paired"]:
        pr = summary["paired"]
        print("ActFlow / Rec-F on the same draws: " + ", ".join(
            f"s{p['seed']} {p['coverage_ratio']:.2f}× {p['validity_difference']:+.3f}" for p in pr["per_seed"])
              + f"; mean {pr['coverage_ratio']['mean']:.2f} ± {pr['coverage_ratio']['std']:.2f}×, "
              f"validity {pr['validity_difference']['mean']:+.3f}")
    write_result(args.name, {"settings": {**vars(args), **size, "runs": [str(d) for d in runs]}, **summary}, started)


if __name__ == "__main__":
    main()
