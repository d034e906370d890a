"""Is the sampler the limit? Validity of the shipped QM9 model under several samplers, paired noise.

Every sampler draws ``--n`` designs from evaluation seed 0 (so the atom counts and starting noise are
shared), and the table reports validity, valid unique designs and wall-clock. Samplers are given as
SOLVER:STEPS, or em:STEPS for the exploration sampler of ``flowdisco expand`` (Euler–Maruyama with the
memoryless noise schedule at scale 1, no guidance).

    python benchmarks/qm9_sampler.py --threads 1 euler:25 euler:100 euler:200 heun:50 em:50 em:100

Writes benchmarks/results/qm9_sampler.json.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from common import write_result
from flowdisco.flow.model import FlowModel
from flowdisco.flow.solvers import NoiseSchedule
from qm9_stages import SHIPPED, binomial_stderr, paired_validity

SOLVER_NAMES = {"euler": "euler", "heun": "heun", "em": "euler-maruyama"}


def parse_sampler(spec: str) -> tuple[str, int]:
    """``"heun:50"`` → ("heun", 50); raises ValueError naming the accepted forms."""
    name, _, steps = spec.partition(":")
    if name not in SOLVER_NAMES or not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"sampler {spec!r}: expected SOLVER:STEPS with SOLVER one of {', '.join(SOLVER_NAMES)}")
    return name, int(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("samplers", nargs="+", metavar="SOLVER:STEPS")
    ap.add_argument("--model", default=SHIPPED)
    ap.add_argument("--n", type=int, default=1000, help="designs per sampler")
    ap.add_argument("--threads", type=int, default=1)
    opts = ap.parse_args()
    try:
        samplers = [parse_sampler(s) for s in opts.samplers]
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(opts.threads)
    started = time.time()
    model = FlowModel.load(opts.model)
    results = {}
    for name, steps in samplers:
        noise = NoiseSchedule("memoryless", 1.0) if name == "em" else None
        t0 = time.time()
        out = paired_validity(model, opts.n, steps, solver=SOLVER_NAMES[name], noise=noise)
        p = out["validity"]
        results[f"{name}:{steps}"] = {"validity": p, "binomial_stderr": binomial_stderr(p, opts.n),
                                      "unique_valid": out["unique_valid"], "seconds": time.time() - t0}
        print(json.dumps({f"{name}:{steps}": results[f"{name}:{steps}"]}), flush=True)
    write_result("qm9_sampler", {"model": opts.model, "model_sha256": model.loaded_sha256, "n": opts.n,
                                 "eval_seed": 0, "threads": opts.threads, "samplers": results}, started)


if __name__ == "__main__":
    main()
