"""Benchmark: Pre-trained / Rec-NF / Rec-F / ActFlow on the 2-D toy, same budget, several seeds.

For every seed a model is pre-trained (3000 steps) and expanded by the three methods with the toy's
defaults (the paper's toy column: GP ℓ = 0.08, λ = 13, 64 samples/round, 250 fine-tuning steps of
batch 256), evaluating every --eval-every rounds: exact generable coverage (share of Ω*'s 100×100
grid cells with p_θ ≥ 0.01), probability mass outside Ω*, validity of raw samples, sphere-exclusion
coverage and Vendi of 500 valid samples, Fréchet distance to the pre-trained model's samples.

Writes benchmarks/results/toy2d.json (per-seed curves, final values, ratios, goals), curves
(toy2d_curves.png), frames of the generable set per method and round (toy2d_frames.png), and the
GP surrogate's cost: subset GP vs exact GP on ActFlow's final buffer (toy2d_surrogate.png).

    python benchmarks/toy2d.py                       # 3 seeds × 60 rounds (≈ 25 min on 2 CPU cores)
    python benchmarks/toy2d.py --rounds 10 --seeds 0  # quick look
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
from expansion import recorded_seconds
from flowdisco.domains.toy2d import GRID
from flowdisco.expand.surrogates import GPSurrogate
from flowdisco.io import load_tensors
from flowdisco.plotting import plot_toy_frame, save_figure, subplots

METHODS = ["rec-nf", "rec-f", "actflow"]
KEYS = ["generable_coverage", "mass_outside", "validity", "coverage", "vendi", "frechet_to_reference",
        "chambers_reached", "generable_outside_area"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work-dir", default="runs/bench-toy2d", help="run directories (not committed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    work = Path(args.work_dir)
    if work.exists():
        shutil.rmtree(work)
    dom = fd.domains.get_domain("toy2d")

    per_seed: dict[str, dict[str, dict]] = {m: {} for m in ["pretrained", *METHODS]}
    timing: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in args.seeds:
        t0 = time.time()
        model = fd.pretrain(dom, seed=seed, progress=False)
        print(f"seed {seed}: pre-trained in {time.time() - t0:.1f} s", flush=True)
        for method in METHODS:
            t0 = time.time()
            run = fd.expand(model, dom, method=method, rounds=args.rounds, eval_every=args.eval_every, seed=seed,
                            run_dir=work / f"{method}-s{seed}", progress=False)
            evals = run.evaluations()
            curve = {"round": [h["round"] for h in evals]}
            curve.update({k: [h["eval"].get(k) for h in evals] for k in KEYS})
            curve["round_seconds"] = [h["round_seconds"] for h in run.history[1:]]
            curve["surrogate_seconds"] = [h.get("surrogate_seconds", 0.0) for h in run.history[1:]]
            curve["round_validity"] = [h["round_validity"] for h in run.history[1:]]
            per_seed[method][str(seed)] = curve
            if "pretrained" not in per_seed or str(seed) not in per_seed["pretrained"]:
                per_seed["pretrained"][str(seed)] = {k: evals[0]["eval"].get(k) for k in KEYS}
            timing[method].append(recorded_seconds(run))
            first, last = evals[0]["eval"], evals[-1]["eval"]
            print(f"  {method:8s} {time.time() - t0:6.1f} s: generable coverage {first['generable_coverage']:.3f}"
                  f" → {last['generable_coverage']:.3f}, mass outside {last['mass_outside']:.3f}, "
                  f"validity {last['validity']:.3f}, coverage {last['coverage']:.0f}", flush=True)

    final = {m: {k: mean_std([per_seed[m][s][k][-1] for s in per_seed[m]]) for k in KEYS} for m in METHODS}
    final["pretrained"] = {k: mean_std([per_seed["pretrained"][s][k] for s in per_seed["pretrained"]]) for k in KEYS}
    seeds = [str(s) for s in args.seeds]
    gc = {m: [per_seed[m][s]["generable_coverage"][-1] for s in seeds] for m in METHODS}
    gc_pre = [per_seed["pretrained"][s]["generable_coverage"] for s in seeds]
    mo_pre = [per_seed["pretrained"][s]["mass_outside"] for s in seeds]
    ratios = {
        "actflow_over_pretrained": mean_std([a / p for a, p in zip(gc["actflow"], gc_pre, strict=True)]),
        "actflow_over_rec_f": mean_std([a / r for a, r in zip(gc["actflow"], gc["rec-f"], strict=True)]),
        "actflow_mass_outside_minus_pretrained": mean_std(
            [per_seed["actflow"][s]["mass_outside"][-1] - p for s, p in zip(seeds, mo_pre, strict=True)]),
        "rec_nf_mass_outside_minus_pretrained": mean_std(
            [per_seed["rec-nf"][s]["mass_outside"][-1] - p for s, p in zip(seeds, mo_pre, strict=True)]),
    }
    goals = {
        "actflow_generable_coverage_at_least_3x_pretrained": ratios["actflow_over_pretrained"]["mean"] >= 3.0,
        "actflow_generable_coverage_at_least_2x_rec_f": ratios["actflow_over_rec_f"]["mean"] >= 2.0,
        "actflow_mass_outside_at_most_pretrained_plus_0.05":
            ratios["actflow_mass_outside_minus_pretrained"]["mean"] <= 0.05,
        "rec_nf_drift_out_of_omega_visible": ratios["rec_nf_mass_outside_minus_pretrained"]["mean"] > 0.0,
    }
    surrogate = _surrogate_cost(work / f"actflow-s{args.seeds[0]}", dom)
    _plot_curves(per_seed, seeds)
    _plot_frames(work, args.seeds[0], args.rounds, args.eval_every, dom)
    _plot_surrogate(per_seed, seeds, surrogate)
    write_result("toy2d", {"settings": vars(args), "expand_defaults": dom.expand_defaults(),
                           "per_seed": per_seed, "final": final, "ratios": ratios, "goals": goals,
                           "method_seconds": {m: mean_std(v) for m, v in timing.items()},
                           "surrogate_cost": surrogate}, started)
    for k, v in ratios.items():
        print(f"{k}: {v['mean']:.3f} ± {v['std']:.3f}")
    print("goals:", goals)


def _surrogate_cost(run_dir: Path, dom) -> dict:
    """Subset GP (the default) vs the exact GP on the final ActFlow buffer: fit time, variance error."""
    buf = load_tensors(sorted((run_dir / "state").glob("round-*"))[-1] / "buffer.safetensors")
    x = buf["x"].double()
    q = dom._grid.double()
    out = {"buffer_size": int(x.shape[0])}
    for name, radius in (("exact", 0.0), ("subset", None)):
        t = time.perf_counter()
        gp = GPSurrogate(0.08, subset_radius=radius).fit(x)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        var = gp.variance(q)
        out[name] = {"points": int(gp.points.shape[0]), "fit_seconds": fit_s,
                     "grid_variance_seconds": time.perf_counter() - t}
        out[f"{name}_variance"] = var
    diff = out.pop("subset_variance") - out.pop("exact_variance")
    out["variance_error_max"] = float(diff.abs().max())
    out["variance_error_mean"] = float(diff.abs().mean())
    return out


def _band(curves: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    n = min(len(c) for c in curves)
    cols = [[c[i] for c in curves] for i in range(n)]
    return [statistics.fmean(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]


def _plot_curves(per_seed: dict, seeds: list[str]) -> None:
    colors = {"actflow": "#e76f51", "rec-f": "#2a9d8f", "rec-nf": "#6d597a"}
    keys = ["generable_coverage", "mass_outside", "validity", "coverage"]
    fig, axes = subplots(1, 4, figsize=(16, 3.6), dpi=110)
    for ax, k in zip(axes, keys, strict=True):
        for m in METHODS:
            rounds = per_seed[m][seeds[0]]["round"]
            mean, lo, hi = _band([per_seed[m][s][k] for s in seeds])
            ax.plot(rounds[: len(mean)], mean, color=colors[m], label=m)
            ax.fill_between(rounds[: len(mean)], lo, hi, color=colors[m], alpha=0.2)
        ax.set_title(k.replace("_", " "), fontsize=10)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"toy2d: mean and min–max over seeds {', '.join(seeds)}", fontsize=10)
    save_figure(fig, RESULTS / "toy2d_curves.png")


def _plot_frames(work: Path, seed: int, rounds: int, every: int, dom) -> None:

    picks = sorted({0, *(r - r % every for r in (rounds // 4, rounds // 2)), rounds})
    fig, axes = subplots(len(METHODS), len(picks), figsize=(2.6 * len(picks), 2.7 * len(METHODS)), dpi=100)
    for i, m in enumerate(METHODS):
        for j, r in enumerate(picks):
            f = work / f"{m}-s{seed}" / "frames" / f"round-{r:05d}.safetensors"
            density = load_tensors(f)["density"].reshape(GRID, GRID) if f.is_file() else None
            plot_toy_frame(None, dom, density=density, title=f"{m}, round {r}", ax=axes[i, j])
    fig.suptitle(f"generable set {{p ≥ 0.01}} (orange) over Ω* (grey), seed {seed}", fontsize=10)
    save_figure(fig, RESULTS / "toy2d_frames.png")


def _plot_surrogate(per_seed: dict, seeds: list[str], surrogate: dict) -> None:
    fig, ax = subplots(figsize=(5.5, 3.4), dpi=110)
    for m in METHODS:
        mean, _, _ = _band([per_seed[m][s]["round_seconds"] for s in seeds])
        ax.plot(range(1, len(mean) + 1), mean, label=f"{m}: round time")
    mean, _, _ = _band([per_seed["actflow"][s]["surrogate_seconds"] for s in seeds])
    ax.plot(range(1, len(mean) + 1), mean, ls="--", label="actflow: surrogate fit")
    ax.set_xlabel("round")
    ax.set_ylabel("seconds")
    ax.set_title(f"cost per round (exact GP on the final buffer: {surrogate['exact']['fit_seconds']:.2f} s, "
                 f"subset: {surrogate['subset']['fit_seconds']:.2f} s)", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, RESULTS / "toy2d_surrogate.png")


if __name__ == "__main__":
    main()
