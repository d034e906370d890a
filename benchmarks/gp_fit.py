"""What fitting the GP surrogate costs as the buffer grows, on the CPU in float64 (where `GPSurrogate.fit`
always runs), and what the batched sphere-exclusion subset saves over the one-by-one loop it replaced.

Features are synthetic: N unit vectors in d = 128 (the width of φ on the shipped QM9 model), drawn as
noisy copies of N / 8 random directions, so that the subset radius (ℓ/8 = 0.0125 at the default ℓ = 0.1)
drops some points as real buffers do. Per N: seconds of the subset (batched, as shipped), of the
one-by-one reference, of the whole fit, the subset's size, and whether both subsets are identical.
The median of --repeats runs is reported; the reference runs once per N (it is the slow one).

    python benchmarks/gp_fit.py                       # N = 1024, 4096, 8192
    python benchmarks/gp_fit.py --sizes 512 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import write_result
from flowdisco.expand.surrogates import GPSurrogate, greedy_subset


def one_by_one_subset(x: torch.Tensor, radius: float) -> torch.Tensor:
    """The loop `greedy_subset` replaced: one point at a time, the kept points grown by concatenation."""
    keep: list[int] = []
    centres = torch.empty(0, x.shape[1], dtype=x.dtype)
    for i in range(x.shape[0]):
        if centres.shape[0] == 0 or bool(((centres - x[i]) ** 2).sum(1).min() > radius * radius):
            keep.append(i)
            centres = torch.cat([centres, x[i:i + 1]])
    return torch.tensor(keep, dtype=torch.long)


def features(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(max(1, n // 8), d, generator=g, dtype=torch.float64)
    x = directions[torch.randint(0, directions.shape[0], (n,), generator=g)]
    x = x / x.norm(dim=1, keepdim=True) + 0.01 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def timed(fn, repeats: int) -> tuple[float, object]:
    seconds, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    started = time.time()
    gp = GPSurrogate()  # ℓ = 0.1, subset radius ℓ/8, at most 4,096 points
    rows = []
    for n in opts.sizes:
        x = features(n, opts.dim, opts.seed)
        batched_s, batched = timed(lambda x=x: greedy_subset(x, gp.subset_radius), opts.repeats)
        reference_s, reference = timed(lambda x=x: one_by_one_subset(x, gp.subset_radius), 1)
        fit_s, _ = timed(lambda x=x: gp.fit(x), opts.repeats)
        row = {"n": n, "subset_size": int(batched.numel()), "subset_seconds": batched_s,
               "one_by_one_subset_seconds": reference_s, "speedup": reference_s / batched_s,
               "identical": torch.equal(batched, reference), "fit_seconds": fit_s,
               "points_conditioned": int(gp.points.shape[0])}
        rows.append(row)
        print(f"N {n}: subset {row['subset_size']} points in {batched_s:.3f} s (one by one {reference_s:.3f} s, "
              f"{row['speedup']:.1f}×, identical {row['identical']}); whole fit {fit_s:.3f} s "
              f"on {row['points_conditioned']} points", flush=True)
    write_result("gp_fit", {"settings": vars(opts), "rows": rows}, started)


if __name__ == "__main__":
    main()
