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
from flowdisco.flow.model import FlowModel
from flowdisco.generate import generate
from flowdisco.seeding import make_generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", metavar="NAME=DIR")
    ap.add_argument("--n", type=int, default=2000, help="designs per model")
    ap.add_argument("--steps", type=int, default=100, help="Euler steps")
    ap.add_argument("--threads", type=int, default=2)
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    started = time.time()
    dom = get_domain("qm9")
    results = {}
    for spec in opts.models:
        name, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"expected NAME=DIR, got {spec!r}")
        t0 = time.time()
        model = FlowModel.load(path)
        g = generate(model, dom, opts.n, generator=make_generator(0), steps=opts.steps)
        valid = [d for d, ok in zip(g.designs, g.valid, strict=True) if ok]
        results[name] = {"model": path, "validity": float(g.valid.mean()), "n_valid": len(valid),
                         "unique_valid": len(set(valid)), "seconds": time.time() - t0}
        print(json.dumps({name: results[name]}), flush=True)
    p = {k: v["validity"] for k, v in results.items()}
    stderr = {k: (v * (1 - v) / opts.n) ** 0.5 for k, v in p.items()}
    write_result("qm9_stages", {"n": opts.n, "sampler": f"euler, {opts.steps} steps", "eval_seed": 0,
                                "models": results, "binomial_stderr": stderr}, started)


if __name__ == "__main__":
    main()
