"""Benchmark: baseline DiT vs magnitude-preserving DiTs with scale/shift/gate/rotation modulation on digits.

Phase 1: every configuration at every learning rate of its family's sweep, seed 0.
Phase 2: each configuration at its own best learning rate (lowest classifier-FD in phase 1) with the
remaining seeds. Equal steps and batch for all. Metrics from the in-project digits classifier
(classifier-FD, KID, class accuracy of conditional samples at ω = 1; proxies, not FID), held-out
flow-matching loss, parameter counts, training step time, and the mechanism: per-block activation RMS
and weight norms over training. Also the parameter counts of the paper-sized models.

Writes benchmarks/results/mpdit.json, mpdit_fd.png, mpdit_mechanism.png. Run directories go to
--work-dir and are resumed when the script is started again.

    python benchmarks/mpdit.py                    # full: sweep + 3 seeds (≈ 1 h on 2 CPU cores)
    python benchmarks/mpdit.py --steps 300 --seeds 0 --baseline-lrs 1e-3 --mp-lrs 1e-2   # smoke test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from common import RESULTS, mean_std, write_result
from flowdisco.domains import get_domain
from flowdisco.images.dit import CONFIGS, block_mechanism, evaluate_images, network_kwargs
from flowdisco.io import read_jsonl
from flowdisco.nn.dit import DiT
from flowdisco.plotting import save_figure, subplots
from flowdisco.pretrain import pretrain


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def paper_sizes() -> dict:
    """Parameter counts at the paper's scale: 16×16×4 latents, 1000 classes, learned-σ head (8 out)."""
    out = {}
    for size, patch in (("S", 4), ("XS", 2)):
        for config in ("baseline", "mp-adaln", "mp-rot-scale-gate", "mp-rot-scale"):
            kw = network_kwargs(config, size=size, patch=patch, image_size=16, channels=4, num_classes=1000,
                                out_channels=8)
            out[f"DiT-{size}/{patch} {config}"] = count(DiT(**kw))
    for size, patch in (("S", 4), ("XS", 2)):
        a = out[f"DiT-{size}/{patch} mp-adaln"]
        b = out[f"DiT-{size}/{patch} mp-rot-scale-gate"]
        out[f"DiT-{size}/{patch} rot-scale-gate saving vs mp-adaln"] = 1 - b / a
    return out


def train_and_eval(config: str, lr: float, seed: int, args: argparse.Namespace, work: Path) -> dict:
    dom = get_domain("digits")
    kwargs = network_kwargs(config, size=args.size, patch=2)
    run_dir = work / f"{config}-lr{lr:g}-s{seed}"
    probe_x, probe_y, probe_t = dom.training_data()[:40], torch.arange(10).repeat(4), torch.linspace(0.05, 0.95, 40)

    def mechanism(rec: dict, model) -> None:
        rec.update(block_mechanism(model.net, probe_x, probe_t, probe_y))

    t0 = time.perf_counter()
    model = pretrain(dom, steps=args.steps, seed=seed, run_dir=run_dir, resume=(run_dir / "config.json").is_file(),
                     network="dit", network_kwargs=kwargs, progress=False, on_log=mechanism,
                     batch_size=args.batch_size, lr=lr, ema_sigma_rel=args.ema, checkpoint_every=500,
                     log_every=args.log_every)
    train_s = time.perf_counter() - t0
    recs = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("phase") == "pretrain"]
    t0 = time.perf_counter()
    stats = evaluate_images(model, n_per_class=args.n_per_class, steps=args.sample_steps, solver="euler", seed=seed)
    stats.update({"config": config, "lr": lr, "seed": seed, "parameters": count(model.net),
                  "train_seconds": train_s, "eval_seconds": time.perf_counter() - t0,
                  "mechanism": {"step": [r["step"] for r in recs],
                                "activation_rms": [r.get("activation_rms") for r in recs],
                                "weight_norm": [r.get("weight_norm") for r in recs],
                                "loss": [r["loss"] for r in recs]}})
    stats["step_ms"] = _step_ms(config, lr, args)
    print(f"{config:18s} lr {lr:<7g} seed {seed}: classifier-FD {stats['classifier_fd']:7.2f}  "
          f"KID {stats['kid']:.4f}  acc {stats['class_accuracy']:.3f}  ({train_s:.0f} s)", flush=True)
    return stats


_STEP_MS: dict[str, float] = {}


def _step_ms(config: str, lr: float, args: argparse.Namespace) -> float:
    """Training step time in ms, measured in this process on a short fresh run (after warm-up)."""
    if config not in _STEP_MS:
        from flowdisco.flow.fit import FitConfig, fit
        from flowdisco.pretrain import build_model

        dom = get_domain("digits")
        m = build_model(dom, seed=0, network="dit", network_kwargs=network_kwargs(config, size=args.size, patch=2))
        data = dom.training_set()
        fit(m, data, FitConfig(steps=10, batch_size=args.batch_size, lr=lr, progress=False))
        t0 = time.perf_counter()
        fit(m, data, FitConfig(steps=50, batch_size=args.batch_size, lr=lr, progress=False))
        _STEP_MS[config] = (time.perf_counter() - t0) / 50 * 1000
    return _STEP_MS[config]


def interleaved_step_times(configs: list[str], args: argparse.Namespace, repeats: int = 5,
                           steps: int = 30) -> dict[str, dict]:
    """Training step time per configuration, measured in one quiet pass: every repeat times each
    configuration in turn (same machine state), after a warm-up. Returns mean/std ms per config and
    the per-repeat ratio to the baseline."""
    import json

    from flowdisco.flow.fit import FitConfig, fit
    from flowdisco.pretrain import build_model

    dom = get_domain("digits")
    data = dom.training_set()
    models = {c: build_model(dom, seed=0, network="dit", network_kwargs=network_kwargs(c, size=args.size, patch=2))
              for c in configs}
    for c in configs:  # warm-up (the learning rate does not change the cost of a step)
        fit(models[c], data, FitConfig(steps=5, batch_size=args.batch_size, lr=1e-3, progress=False))
    times: dict[str, list[float]] = {c: [] for c in configs}
    for _ in range(repeats):
        for c in configs:
            t0 = time.perf_counter()
            fit(models[c], data, FitConfig(steps=steps, batch_size=args.batch_size, lr=1e-3, progress=False))
            times[c].append((time.perf_counter() - t0) / steps * 1000)
    out = {c: mean_std(v) for c, v in times.items()}
    if "baseline" in times:
        for c in configs:
            out[c]["ratio_to_baseline"] = mean_std([a / b for a, b in zip(times[c], times["baseline"], strict=True)])
    print(json.dumps({c: round(v["mean"], 2) for c, v in out.items()}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--baseline-lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2])
    ap.add_argument("--mp-lrs", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--ema", type=float, default=0.05)
    ap.add_argument("--n-per-class", type=int, default=100)
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work-dir", default="runs/bench-mpdit")
    ap.add_argument("--step-times-only", action="store_true",
                    help="only measure interleaved step times and merge them into results/mpdit.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    work = Path(args.work_dir)
    if args.step_times_only:
        _merge_step_times(args, started)
        return

    sweep: list[dict] = []
    for config in args.configs:
        lrs = args.baseline_lrs if CONFIGS[config]["kind"] == "baseline" else args.mp_lrs
        for lr in lrs:
            sweep.append(train_and_eval(config, lr, args.seeds[0], args, work))
    best_lr = {c: min((r for r in sweep if r["config"] == c), key=lambda r: r["classifier_fd"])["lr"]
               for c in args.configs}
    final: dict[str, list[dict]] = {c: [r for r in sweep if r["config"] == c and r["lr"] == best_lr[c]]
                                    for c in args.configs}
    for config in args.configs:
        for seed in args.seeds[1:]:
            final[config].append(train_and_eval(config, best_lr[config], seed, args, work))

    table = {}
    for c in args.configs:
        rows = final[c]
        table[c] = {"lr": best_lr[c], "parameters": rows[0]["parameters"], "step_ms": rows[0]["step_ms"],
                    **{k: mean_std([r[k] for r in rows]) for k in
                       ("classifier_fd", "kid", "class_accuracy", "heldout_loss_t0.5")}}
    ratios = {}
    if "baseline" in table and "mp-adaln" in table:
        fd_b = {r["seed"]: r["classifier_fd"] for r in final["baseline"]}
        fd_m = {r["seed"]: r["classifier_fd"] for r in final["mp-adaln"]}
        ratios["mp_adaln_fd_over_baseline"] = mean_std([fd_m[s] / fd_b[s] for s in fd_m if s in fd_b])
        ratios["mp_adaln_step_time_over_baseline"] = table["mp-adaln"]["step_ms"] / table["baseline"]["step_ms"]
    if "mp-rot-scale-gate" in table and "mp-adaln" in table:
        fd_r = {r["seed"]: r["classifier_fd"] for r in final["mp-rot-scale-gate"]}
        fd_m = {r["seed"]: r["classifier_fd"] for r in final["mp-adaln"]}
        ratios["rot_scale_gate_fd_over_mp_adaln"] = mean_std([fd_r[s] / fd_m[s] for s in fd_r if s in fd_m])
    sizes = paper_sizes()
    goals = {
        "mp_fd_at_most_0.75x_baseline": ratios.get("mp_adaln_fd_over_baseline", {}).get("mean", 9) <= 0.75,
        "rot_scale_gate_fd_within_5pct_of_mp_adaln":
            ratios.get("rot_scale_gate_fd_over_mp_adaln", {}).get("mean", 9) <= 1.05,
        "rot_scale_gate_at_least_5pct_fewer_params_DiT-S/4": sizes["DiT-S/4 rot-scale-gate saving vs mp-adaln"] >= 0.05,
        "mp_step_time_at_most_1.15x_baseline": ratios.get("mp_adaln_step_time_over_baseline", 9) <= 1.15,
    }
    _plots(final, table)
    write_result("mpdit", {"settings": vars(args), "sweep": _strip(sweep), "best_lr": best_lr,
                           "final": {c: _strip(v) for c, v in final.items()}, "table": table, "ratios": ratios,
                           "paper_size_parameters": sizes, "goals": goals,
                           "mechanism": {c: final[c][0]["mechanism"] for c in final}}, started)
    for c, row in table.items():
        fd = row["classifier_fd"]
        print(f"{c:18s} lr {row['lr']:<7g} FD {fd['mean']:7.2f} ± {fd['std']:.2f}  "
              f"acc {row['class_accuracy']['mean']:.3f}  params {row['parameters']}  step {row['step_ms']:.1f} ms")
    print("ratios:", ratios)
    print("goals:", goals)


def _merge_step_times(args: argparse.Namespace, started: float) -> None:
    import json

    from flowdisco.io import atomic_write_json

    path = RESULTS / "mpdit.json"
    result = json.loads(path.read_text())
    st = interleaved_step_times(args.configs, args)
    result["step_times_interleaved"] = {"command": " ".join(["python", *sys.argv]),
                                        "seconds": time.time() - started, "ms": st}
    for c, v in st.items():
        if c in result.get("table", {}):
            result["table"][c]["step_ms"] = v["mean"]
    if "baseline" in st and "mp-adaln" in st:
        ratio = st["mp-adaln"]["ratio_to_baseline"]["mean"]
        result["ratios"]["mp_adaln_step_time_over_baseline"] = ratio
        result["goals"]["mp_step_time_at_most_1.15x_baseline"] = ratio <= 1.15
    atomic_write_json(path, result)
    print(f"merged interleaved step times into {path}")


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "mechanism"} for r in rows]


def _plots(final: dict[str, list[dict]], table: dict) -> None:
    names = list(table)
    fig, ax = subplots(figsize=(7, 3.4), dpi=110)
    for i, c in enumerate(names):
        vals = [r["classifier_fd"] for r in final[c]]
        ax.bar(i, sum(vals) / len(vals), color="#a8dadc")
        ax.scatter([i] * len(vals), vals, color="#1d3557", zorder=3, s=12)
    ax.set_xticks(range(len(names)), [f"{c}\nlr {table[c]['lr']:g}" for c in names], fontsize=7)
    ax.set_ylabel("classifier-FD (lower is better)")
    ax.set_title("digits, equal steps, each at its best learning rate (dots: seeds)", fontsize=9)
    save_figure(fig, RESULTS / "mpdit_fd.png")

    show = [c for c in ("baseline", "mp-adaln", "mp-rot-scale-gate") if c in final]
    fig, axes = subplots(2, len(show), figsize=(4.2 * len(show), 6), dpi=100, squeeze=False)
    for j, c in enumerate(show):
        mech = final[c][0]["mechanism"]
        steps = mech["step"]
        for row, key in enumerate(("activation_rms", "weight_norm")):
            series = [v for v in mech[key] if v is not None]
            if not series:
                continue
            for b in range(len(series[0])):
                axes[row, j].plot(steps[: len(series)], [s[b] for s in series], label=f"block {b}")
            axes[row, j].set_title(f"{c}: {key.replace('_', ' ')}", fontsize=9)
            axes[row, j].set_xlabel("step")
            axes[row, j].grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    save_figure(fig, RESULTS / "mpdit_mechanism.png")


if __name__ == "__main__":
    main()
