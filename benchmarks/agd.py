"""Benchmark: Adapter Guidance Distillation on digits — CFG vs distilled students, one NFE per step.

Per seed: a class-conditional MP-DiT (`tiny`, MP-AdaLN, lr 3e-2, 3000 steps, label dropout 0.1) is
trained; the CFG teacher's trajectories are collected (ω ~ U[1, 5] per trajectory, Euler, K steps);
then these students are trained through flowdisco's fit loop and compared with CFG from the same
noise and labels at ω ∈ {1.5, 2, 3, 4} (inside the range) and 6 (outside):

  agd-offset       offset adapters on every block's attention output, CFG trajectories (AGD)
  agd-xattn        cross-attention adapters, same placement, CFG trajectories (AGD)
  std-offset       offset adapters on standard forward-noised images, CFG target online
  std-xattn        cross-attention adapters on standard forward-noised images
  full-ft          all weights + an ω embedding on the conditioning output, standard images (Meng-style)

Metrics per method and ω: classifier-FD and class accuracy (in-project digits CNN; proxies, not FID),
mean L2 distance to the CFG sample from the same noise and label, counted NFEs per sample, seconds per
sample (methods timed back to back in one process), and trainable parameter fractions.

Writes benchmarks/results/agd.json, agd_metrics.png and agd_samples_w*.png. Work (models, adapters,
per-seed results) goes to --work-dir and is reused when the script is started again.

    python benchmarks/agd.py                                   # 3 seeds, 2 processes (≈ 30 min on 2 cores)
    python benchmarks/agd.py --seeds 0 --steps 300 --base-steps 300 --n-per-class 10 --omegas 2 6   # smoke
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import torch

from common import RESULTS, mean_std, write_result
from flowdisco.io import atomic_write_json, load_tensors, save_tensors

METHODS = {  # name: (adapter, data source, full fine-tuning)
    "agd-offset": ("offset", "trajectories", False),
    "agd-xattn": ("cross-attention", "trajectories", False),
    "std-offset": ("offset", "standard", False),
    "std-xattn": ("cross-attention", "standard", False),
    "full-ft": ("offset", "standard", True),
}
PRIMARY, STANDARD_TWIN = "agd-offset", "std-offset"


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    """Train the base, collect trajectories, train every student, compare; cached in the work dir."""
    torch.set_num_threads(args.threads)
    from flowdisco.domains import get_domain
    from flowdisco.domains.digits import load_digits_split
    from flowdisco.flow.model import FlowModel
    from flowdisco.guidance.adapters import GuidanceStudent
    from flowdisco.guidance.distill import DistillConfig, distill, full_finetune_student
    from flowdisco.guidance.trajectories import TrajectoryStore, collect_trajectories
    from flowdisco.images.agd import compare_guidance
    from flowdisco.images.dit import network_kwargs
    from flowdisco.pretrain import pretrain

    work = Path(args.work_dir)
    out = work / f"seed{seed}.json"
    if out.is_file():
        return json.loads(out.read_text())
    timing: dict[str, float] = {}
    base_dir = work / f"base-s{seed}"
    t0 = time.perf_counter()
    if (base_dir / "model").is_dir():
        base = FlowModel.load(base_dir / "model")
    else:
        base = pretrain(get_domain("digits"), steps=args.base_steps, seed=seed, run_dir=base_dir,
                        resume=(base_dir / "config.json").is_file(), network="dit",
                        network_kwargs=network_kwargs("mp-adaln", size="tiny"), progress=False, lr=3e-2,
                        ema_sigma_rel=0.05, batch_size=64)
    timing["base_train_s"] = time.perf_counter() - t0

    traj_dir = work / f"trajectories-s{seed}"
    t0 = time.perf_counter()
    if (traj_dir / "trajectories.json").is_file():
        store = TrajectoryStore.load(traj_dir)
    else:
        store = collect_trajectories(base, per_class=args.per_class, omega_range=tuple(args.omega_range),
                                     steps=args.sample_steps, solver="euler", seed=seed, progress=False)
        store.save(traj_dir)
    timing["collect_s"] = time.perf_counter() - t0

    xtr, ytr, _, _ = load_digits_split()
    students, params, train_s, losses = {}, {}, {}, {}
    for name in args.methods:
        adapter, source, full = METHODS[name]
        d = work / f"{name}-s{seed}"
        if (d / "flowdisco_adapters.json").is_file():
            student = GuidanceStudent.load(d, base)
            info = json.loads((d / "flowdisco_adapters.json").read_text())["info"]
        else:
            student = full_finetune_student(base) if full else GuidanceStudent(base, adapter=adapter)
            lr = args.full_lr if full else (args.offset_lr if adapter == "offset" else args.xattn_lr)
            cfg = DistillConfig(steps=args.steps, batch_size=args.batch_size, lr=lr,
                                omega_range=tuple(args.omega_range), seed=seed, progress=False)
            t0 = time.perf_counter()
            if source == "trajectories":
                res = distill(student, cfg, trajectories=store, state_dir=d / "state", resume=True)
            else:
                res = distill(student, cfg, images={"x": xtr, "cond": ytr}, teacher=base, state_dir=d / "state",
                              resume=True)
            info = {"train_seconds": time.perf_counter() - t0, "losses": res.losses, "lr": lr, "source": source}
            student.save(d, info=info)
        students[name] = student
        params[name] = student.parameter_report()
        train_s[name] = info["train_seconds"]
        losses[name] = info["losses"]
        print(f"seed {seed} {name}: final loss {info['losses'][-1]:.4f} ({info['train_seconds']:.0f} s)", flush=True)

    t0 = time.perf_counter()
    metrics, samples = compare_guidance(base, students, args.omegas, n_per_class=args.n_per_class,
                                        steps=args.sample_steps, solver="euler", seed=1000 + seed, keep_samples=1)
    timing["evaluate_s"] = time.perf_counter() - t0
    save_tensors(work / f"samples-s{seed}.safetensors",
                 {f"{m}|{w}": x for m, per in samples.items() for w, x in per.items()})
    result = {"seed": seed, "metrics": metrics, "parameters": params, "train_seconds": train_s,
              "losses": losses, "timing": timing, "trajectory_states": len(store)}
    atomic_write_json(out, result)
    return result


def summarise(per_seed: list[dict], args: argparse.Namespace) -> dict:
    methods = list(per_seed[0]["metrics"])
    keys = ("classifier_fd", "class_accuracy", "distance_to_cfg", "nfe_per_sample", "seconds_per_sample")
    table: dict = {}
    for m in methods:
        for w in per_seed[0]["metrics"][m]:
            table.setdefault(m, {})[w] = {k: mean_std([r["metrics"][m][w].get(k) for r in per_seed]) for k in keys}

    def ratios(num: str, den: str, key: str, w: str) -> dict | None:
        return mean_std([r["metrics"][num][w][key] / r["metrics"][den][w][key] for r in per_seed])

    in_range = [f"{w:g}" for w in args.omegas if args.omega_range[0] <= w <= args.omega_range[1]]
    all_w = [f"{w:g}" for w in args.omegas]
    goals: dict = {"fd_ratio_agd_over_cfg": {}, "nfe_ratio_agd_over_cfg": {}, "speedup_cfg_over_agd": {},
                   "distance_traj_over_standard": {}, "fd_traj_over_standard": {}}
    for w in all_w:
        goals["fd_ratio_agd_over_cfg"][w] = ratios(PRIMARY, "cfg", "classifier_fd", w)
        goals["nfe_ratio_agd_over_cfg"][w] = ratios(PRIMARY, "cfg", "nfe_per_sample", w)
        goals["speedup_cfg_over_agd"][w] = ratios("cfg", PRIMARY, "seconds_per_sample", w)
        if STANDARD_TWIN in methods:
            goals["distance_traj_over_standard"][w] = ratios(PRIMARY, STANDARD_TWIN, "distance_to_cfg", w)
            goals["fd_traj_over_standard"][w] = ratios(PRIMARY, STANDARD_TWIN, "classifier_fd", w)
    fractions = {m: per_seed[0]["parameters"][m]["trainable_fraction"] for m in per_seed[0]["parameters"]}
    verdict = {
        "agd_fd_within_1.05x_cfg_in_range": all(goals["fd_ratio_agd_over_cfg"][w]["mean"] <= 1.05 for w in in_range),
        "agd_half_nfe": all(abs(goals["nfe_ratio_agd_over_cfg"][w]["mean"] - 0.5) < 1e-9 for w in all_w),
        "agd_speedup_at_least_1.8x": all(goals["speedup_cfg_over_agd"][w]["mean"] >= 1.8 for w in all_w),
        "traj_closer_to_cfg_than_standard_at_w_ge_3": all(
            goals["distance_traj_over_standard"][w]["mean"] < 1.0 for w in all_w if float(w) >= 3)
        if STANDARD_TWIN in methods else None,
        "adapters_at_most_5pct": all(f <= 0.05 for m, f in fractions.items() if not METHODS[m][2]),
    }
    return {"table": table, "goals": goals, "verdict": verdict, "trainable_fraction": fractions}


def plots(per_seed: list[dict], args: argparse.Namespace) -> None:
    from flowdisco.plotting import image_grid, save_figure, subplots

    methods = list(per_seed[0]["metrics"])
    ws = [f"{w:g}" for w in args.omegas]
    colors = dict(zip(["cfg", *METHODS], ["#264653", "#e76f51", "#f4a261", "#2a9d8f", "#8ab17d", "#6d597a"],
                      strict=True))
    fig, axes = subplots(1, 3, figsize=(13, 3.6))
    for ax, key, label in zip(axes, ("classifier_fd", "distance_to_cfg", "class_accuracy"),
                              ("classifier-FD ↓ (proxy, not FID)", "mean L2 distance to the CFG sample ↓",
                               "class accuracy"), strict=True):
        for m in methods:
            if m.startswith("conditional"):
                continue
            vals = [[r["metrics"][m][w].get(key) for r in per_seed] for w in ws]
            if any(v is None for vs in vals for v in vs):
                continue
            mean = [sum(v) / len(v) for v in vals]
            lo, hi = [min(v) for v in vals], [max(v) for v in vals]
            xs = [float(w) for w in ws]
            ax.plot(xs, mean, marker="o", label=m, color=colors[m])
            ax.fill_between(xs, lo, hi, alpha=0.15, color=colors[m])
        if key == "classifier_fd":
            ref = [r["metrics"]["conditional (ω = 1)"]["1"]["classifier_fd"] for r in per_seed]
            ax.axhline(sum(ref) / len(ref), color="grey", ls=":", label="no guidance (ω = 1)")
        ax.axvspan(args.omega_range[1], max(float(w) for w in ws) + 0.5, color="grey", alpha=0.08)
        ax.set_xlabel("guidance scale ω (shaded: outside the training range)")
        ax.set_title(label, fontsize=9)
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    save_figure(fig, RESULTS / "agd_metrics.png")
    tensors = load_tensors(Path(args.work_dir) / f"samples-s{per_seed[0]['seed']}.safetensors")
    for w in ws:
        rows = [m for m in methods if f"{m}|{w}" in tensors]
        image_grid(RESULTS / f"agd_samples_w{w}.png", torch.cat([tensors[f"{m}|{w}"] for m in rows]), nrow=10,
                   title=f"ω = {w}: rows {', '.join(rows)} (same noise per column)", row_labels=rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--omegas", type=float, nargs="+", default=[1.5, 2.0, 3.0, 4.0, 6.0])
    ap.add_argument("--omega-range", type=float, nargs=2, default=[1.0, 5.0])
    ap.add_argument("--base-steps", type=int, default=3000)
    ap.add_argument("--per-class", type=int, default=100, help="teacher trajectories per class")
    ap.add_argument("--sample-steps", type=int, default=50, help="Euler steps (teacher, students, evaluation)")
    ap.add_argument("--steps", type=int, default=5000, help="distillation steps per student")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--offset-lr", type=float, default=1e-2)
    ap.add_argument("--xattn-lr", type=float, default=3e-3)
    ap.add_argument("--full-lr", type=float, default=1e-3)
    ap.add_argument("--n-per-class", type=int, default=100, help="evaluation samples per class")
    ap.add_argument("--jobs", type=int, default=2, help="seeds run in parallel processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--work-dir", default="runs/bench-agd")
    ap.add_argument("--replot", action="store_true", help="only redraw the plots from results/agd.json")
    args = ap.parse_args()
    if args.replot:
        saved = json.loads((RESULTS / "agd.json").read_text())
        args.omegas, args.omega_range = saved["settings"]["omegas"], saved["settings"]["omega_range"]
        plots(saved["per_seed"], args)
        return 0
    started = time.time()
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    if args.jobs > 1 and len(args.seeds) > 1:
        with mp.get_context("spawn").Pool(min(args.jobs, len(args.seeds))) as pool:
            per_seed = pool.starmap(run_seed, [(s, args) for s in args.seeds])
    else:
        per_seed = [run_seed(s, args) for s in args.seeds]
    summary = summarise(per_seed, args)
    plots(per_seed, args)
    settings = {k: v for k, v in vars(args).items() if k not in ("work_dir",)}
    write_result("agd", {"settings": settings, **summary, "per_seed": per_seed}, started)
    for m, per in summary["table"].items():
        for w, row in per.items():
            fd, dist = row["classifier_fd"], row["distance_to_cfg"]
            print(f"{m:22s} ω {w:>4s}: FD {fd['mean']:7.2f} ± {fd['std']:5.2f}   "
                  f"dist {dist['mean'] if dist else float('nan'):.3f}   acc {row['class_accuracy']['mean']:.3f}   "
                  f"NFE {row['nfe_per_sample']['mean']:.0f}   {1e3 * row['seconds_per_sample']['mean']:.2f} ms")
    print(json.dumps(summary["verdict"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
