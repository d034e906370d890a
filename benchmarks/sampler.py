"""Benchmark: flowdisco's Euler sampler vs Meta's flow_matching ODESolver on the same network.

flow_matching (CC BY-NC) is only a benchmark-time comparator, never a dependency: `make bench-sampler`
installs it (with torchdiffeq, --no-deps) into the venv before running this script.

Measures samples/second of both on the same velocity network, step count and initial noise, for
several batch sizes and seeds (timings interleaved to share machine noise), and the max absolute
difference of the samples. Writes benchmarks/results/sampler.json.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import RESULTS, mean_std, write_result
from flowdisco import FlowModel
from flowdisco.flow.solvers import solve_ode
from flowdisco.plotting import save_figure, subplots
from flowdisco.pretrain import pretrain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 4096])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pretrain-steps", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from flow_matching.solver import ODESolver
    except ImportError:
        raise SystemExit("flow_matching is not installed; run `make bench-sampler` (installs it for the "
                         "benchmark only)") from None

    started = time.time()
    model: FlowModel = pretrain("toy2d", steps=args.pretrain_steps, seed=0, progress=False)
    model.eval()
    net = model.net

    class Wrapped(torch.nn.Module):  # flow_matching passes a scalar t
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor, t: torch.Tensor, **extras) -> torch.Tensor:
            return self.net(x, t.expand(x.shape[0]))

    theirs = ODESolver(velocity_model=Wrapped())
    ours_vf = model.velocity_fn()

    rows = []
    for bs in args.batch_sizes:
        for seed in args.seeds:
            x0 = torch.randn(bs, 2, generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                a = solve_ode(ours_vf, x0, args.steps, method="euler")
                b = theirs.sample(x0, step_size=1.0 / args.steps, method="euler")
            max_diff = float((a - b).abs().max())
            t_ours, t_theirs = [], []
            for _ in range(args.repeats):  # interleaved: both see the same machine state
                with torch.no_grad():
                    t = time.perf_counter()
                    solve_ode(ours_vf, x0, args.steps, method="euler")
                    t_ours.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    theirs.sample(x0, step_size=1.0 / args.steps, method="euler")
                    t_theirs.append(time.perf_counter() - t)
            ratios = [tt / to for to, tt in zip(t_ours, t_theirs, strict=True)]
            rows.append({"batch_size": bs, "seed": seed, "max_abs_diff": max_diff,
                         "ours_samples_per_s": mean_std([bs / s for s in t_ours]),
                         "flow_matching_samples_per_s": mean_std([bs / s for s in t_theirs]),
                         "throughput_ratio_ours_over_theirs": mean_std(ratios)})
            print(f"batch {bs:5d} seed {seed}: ours/theirs throughput {mean_std(ratios)['mean']:.3f} "
                  f"± {mean_std(ratios)['std']:.3f}, max |diff| {max_diff:.2e}")

    summary = {}
    for bs in args.batch_sizes:
        r = [row for row in rows if row["batch_size"] == bs]
        summary[str(bs)] = {
            "throughput_ratio_mean_over_seeds": mean_std([x["throughput_ratio_ours_over_theirs"]["mean"] for x in r]),
            "max_abs_diff": max(x["max_abs_diff"] for x in r)}
    goal = {"throughput_ratio_at_least": 1.0, "agreement_at_most": 1e-5,
            "met": all(s["throughput_ratio_mean_over_seeds"]["mean"] >= 1.0 and s["max_abs_diff"] <= 1e-5
                       for s in summary.values())}
    _plot(rows, args.batch_sizes)
    write_result("sampler", {"settings": vars(args), "network": {"name": model.network_name,
                 "kwargs": model.network_kwargs, "parameters": sum(p.numel() for p in net.parameters())},
                 "rows": rows, "summary": summary, "goal": goal}, started)


def _plot(rows: list[dict], batch_sizes: list[int]) -> None:
    fig, ax = subplots(figsize=(4.5, 3.2), dpi=110)
    for i, bs in enumerate(batch_sizes):
        r = [row["throughput_ratio_ours_over_theirs"]["mean"] for row in rows if row["batch_size"] == bs]
        ax.scatter([i] * len(r), r, color="#1d3557")
        ax.bar(i, sum(r) / len(r), color="#a8dadc", width=0.5)
    ax.axhline(1.0, color="#e63946", lw=1, ls="--", label="parity")
    ax.set_xticks(range(len(batch_sizes)), [f"batch {b}" for b in batch_sizes])
    ax.set_ylabel("throughput flowdisco / flow_matching")
    ax.set_title("Euler sampler, same network (dots: seeds)", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, RESULTS / "sampler.png")


if __name__ == "__main__":
    main()
