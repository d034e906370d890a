"""1 process against 2 torchrun processes (gloo): the same results, and how much faster.

For each seed, the same pre-training and the same short ActFlow run are launched through the command
line in three ways: 1 process × 1 thread, 1 process × 2 threads, and `torchrun --nproc_per_node 2`
with 1 thread each. Gradients are cut into 2 pieces (--grad-shards 2, UpdateFlow's grad_shards=2) and
sampling into chunks, so the weights and the buffer should be identical, not merely close. The
metrics may differ at round-off level: numpy's OpenBLAS runs on OMP_NUM_THREADS threads, which torchrun
sets to 1 (before commit 556a805 this moved the FCDs by up to 8.4e-8). The benchmark checks identity
with flowdisco.runs.compare_runs, records the largest difference of any metric, and reports wall-clock
ratios.

    python benchmarks/distributed.py                 # 3 seeds (32 min on 2 cores; --quick 11 min)
    python benchmarks/distributed.py --seeds 0 --quick
    python benchmarks/distributed.py --seeds 0 --jobs actflow-qm9 --name distributed_actflow_s0

Writes benchmarks/results/NAME.json and NAME.png (NAME: --name, default distributed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, mean_std, write_result
from flowdisco.runs import compare_runs

LAYOUTS = {"1proc-1thread": (1, 1), "1proc-2threads": (1, 2), "2procs-1thread": (2, 1)}


def jobs(quick: bool) -> dict[str, list[str]]:
    return {
        "pretrain-qm9": ["pretrain", "qm9", "--steps", "60" if quick else "300", "--batch-size", "128",
                         "--grad-shards", "2", "--checkpoint-every", "100"],
        "actflow-qm9": ["expand", "qm9", "--rounds", "2", "--samples-per-round", "128", "--finetune-steps",
                        "20" if quick else "60", "--eval-every", "2", "--set", "eval_samples=256", "--set",
                        "eval_valid=128", "--set", "finetune_batch=128", "--set", "grad_shards=2", "--set",
                        "sample_chunk=32", "--set", "warmup_valid=128", "--set", "warmup_batch=128",
                        "--set", "sampler_steps=" + ("20" if quick else "50")],
    }


def run(args: list[str], layout: str, seed: int, run_dir: Path) -> float:
    procs, threads = LAYOUTS[layout]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] \
        if procs > 1 else [sys.executable]
    cmd = [*launcher, "-m", "flowdisco.cli", *args, "-q", "--threads", str(threads), "--seed", str(seed),
           "--run-dir", str(run_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def final_eval(run_dir: Path) -> dict[str, float]:
    lines = [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines() if s.strip()]
    last = [r for r in lines if any(k.startswith("eval_") for k in r)][-1]
    return {k[5:]: v for k, v in last.items() if k.startswith("eval_") and isinstance(v, (int, float))
            and not k.endswith("seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    ap.add_argument("--jobs", nargs="+", choices=list(jobs(False)), default=list(jobs(False)))
    ap.add_argument("--name", default="distributed", help="result file stem (a partial run keeps the full one)")
    opts = ap.parse_args()
    started = time.time()
    root = Path(tempfile.mkdtemp(prefix="flowdisco-dist-"))
    results: dict[str, dict] = {}
    try:
        for job, args in jobs(opts.quick).items():
            if job not in opts.jobs:
                continue
            per_seed = []
            for seed in opts.seeds:
                dirs = {lay: root / f"{job}-s{seed}-{lay}" for lay in LAYOUTS}
                seconds = {lay: run(args, lay, seed, d) for lay, d in dirs.items()}
                base = dirs["1proc-1thread"]
                same = {lay: compare_runs(base, d) for lay, d in dirs.items() if lay != "1proc-1thread"}
                row = {"seed": seed, "seconds": seconds,
                       "speedup_vs_1proc_1thread": {lay: seconds["1proc-1thread"] / s for lay, s in seconds.items()},
                       "identical_to_1proc_1thread": {lay: not d for lay, d in same.items()},
                       "differences": {lay: d[:5] for lay, d in same.items() if d}}
                if job.startswith("actflow"):
                    evals = {lay: final_eval(d) for lay, d in dirs.items()}
                    row["final_eval"] = evals
                    row["max_metric_abs_diff"] = {
                        lay: max(abs(v - evals["1proc-1thread"].get(k, v)) for k, v in e.items())
                        for lay, e in evals.items() if lay != "1proc-1thread"}
                per_seed.append(row)
                print(f"{job} seed {seed}: " + ", ".join(f"{lay} {s:.1f} s" for lay, s in seconds.items())
                      + f"; identical: {row['identical_to_1proc_1thread']}", flush=True)
                for d in dirs.values():
                    shutil.rmtree(d, ignore_errors=True)
            results[job] = {
                "command": args, "per_seed": per_seed,
                "speedup": {lay: mean_std([r["speedup_vs_1proc_1thread"][lay] for r in per_seed]) for lay in LAYOUTS},
                "all_identical": {lay: all(r["identical_to_1proc_1thread"][lay] for r in per_seed)
                                  for lay in LAYOUTS if lay != "1proc-1thread"}}
        write_result(opts.name, {"seeds": opts.seeds, "quick": opts.quick, "layouts": LAYOUTS,
                                     "jobs": results}, started)
        plot(results, RESULTS / f"{opts.name}.png")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.25
    for i, lay in enumerate(LAYOUTS):
        means = [results[j]["speedup"][lay]["mean"] for j in results]
        stds = [results[j]["speedup"][lay]["std"] for j in results]
        ax.bar([x + (i - 1) * width for x in range(len(results))], means, width, yerr=stds, label=lay, capsize=3)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(results)), list(results))
    ax.set_ylabel("speed-up vs 1 process × 1 thread")
    ax.legend(fontsize=8)
    ax.set_title("torchrun (gloo, CPU): wall-clock speed-up, mean ± sd over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
