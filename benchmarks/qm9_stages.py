"""Paired validity of saved QM9 models: the stages of the shipped model's continued training.

Every model draws ``--n`` designs from the same starting noise (evaluation seed 0, Euler, 100 steps, the
shipped model's evaluation sampler), so the differences between models are not sampling noise of
different draws. Models are given as NAME=DIRECTORY (a model directory or a run directory holding
``model/``); the stages of BENCHMARKS.md are produced by the ``flowdisco pretrain qm9 --init`` commands
listed there.

    python benchmarks/qm9_stages.py --n 2000 stage2=runs/qm9-s2/model stage3=runs/qm9-s3a/model \\
        stage4=src/flowdisco/assets/qm9_model

Writes benchmarks/results/qm9_stages.json.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from common import write_result
from flowdisco.domains import get_domain
from flowdisco.domains.base import shipped_model_path
from flowdisco.flow.model import FlowModel
from flowdisco.flow.solvers import NoiseSchedule
from flowdisco.generate import generate
from flowdisco.seeding import make_generator

# the shipped QM9 model, found through the installed package (so the scripts run from any directory)
SHIPPED = shipped_model_path("qm9_model")


def binomial_stderr(p: float, n: int) -> float:
    """Standard error of a proportion ``p`` measured on ``n`` independent designs."""
    return (p * (1 - p) / n) ** 0.5


def paired_validity(model: FlowModel, n: int, steps: int, solver: str = "euler",
                    noise: NoiseSchedule | None = None) -> dict[str, float]:
    """Validity and valid counts of ``n`` designs from evaluation seed 0's starting noise (the same for
    every model and sampler, so they are compared on paired samples)."""
    g = generate(model, get_domain("qm9"), n, generator=make_generator(0), steps=steps, solver=solver, noise=noise)
    valid = [d for d, ok in zip(g.designs, g.valid, strict=True) if ok]
    return {"validity": float(g.valid.mean()), "n_valid": len(valid), "unique_valid": len(set(valid))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", metavar="NAME=DIR")
    ap.add_argument("--n", type=int, default=2000, help="designs per model")
    ap.add_argument("--steps", type=int, default=100, help="Euler steps")
    ap.add_argument("--threads", type=int, default=2)
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    started = time.time()
    results = {}
    for spec in opts.models:
        name, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"expected NAME=DIR, got {spec!r}")
        t0 = time.time()
        results[name] = {"model": path, **paired_validity(FlowModel.load(path), opts.n, opts.steps),
                         "seconds": time.time() - t0}
        print(json.dumps({name: results[name]}), flush=True)
    p = {k: v["validity"] for k, v in results.items()}
    stderr = {k: binomial_stderr(v, opts.n) for k, v in p.items()}
    write_result("qm9_stages", {"n": opts.n, "sampler": f"euler, {opts.steps} steps", "eval_seed": 0,
                                "models": results, "binomial_stderr": stderr}, started)


if __name__ == "__main__":
    main()
