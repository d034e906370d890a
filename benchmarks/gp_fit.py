"""What fitting the GP surrogate costs as the buffer grows, on the CPU in float64 (where `GPSurrogate.fit`
always runs), and what the batched sphere-exclusion subset saves over the one-by-one loop it replaced.

Features are synthetic: N unit vectors in d = 128 (the width of φ on the shipped QM9 model), drawn as
noisy copies of N / 8 random directions, half with a small noise (0.0002 per coordinate: within the
subset radius ℓ/8 = 0.0125 of each other, as near-repeats of a design are) and half with a larger one
(0.01: outside it), so the subset drops some points and keeps others. Per N: seconds of the subset
(batched, as shipped), of the one-by-one reference, of the whole fit, the subset's size, whether both
subsets are identical, and of one guidance evaluation (σ and its gradient for a chunk of 64 designs, as
the sampler asks each step). Up to --direct-max points it also times the kernel the GP used before, which built the
[M, n, d] difference tensor (17 GB at n = 4,096, so not beyond). The median of --repeats runs is
reported; the references run once per N.

    python benchmarks/gp_fit.py                       # N = 1024, 2048, 4096, 8192
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


def direct_kernel(a: torch.Tensor, b: torch.Tensor, lengthscale: float) -> torch.Tensor:
    """The kernel as it was computed before: through the [M, n, d] tensor of differences."""
    return torch.exp(-(a[:, None, :] - b[None, :, :]).pow(2).sum(-1) / (2 * lengthscale**2))


def features(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(max(1, n // 8), d, generator=g, dtype=torch.float64)
    x = directions[torch.randint(0, directions.shape[0], (n,), generator=g)]
    scale = torch.where(torch.arange(n) % 2 == 0, 0.0002, 0.01).to(torch.float64)[:, None]
    x = x / x.norm(dim=1, keepdim=True) + scale * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def _guidance_step(gp: GPSurrogate, queries: torch.Tensor) -> torch.Tensor:
    """σ of 64 designs' features and its gradient, the GP's part of one guided sampler step."""
    q = queries.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gp.uncertainty(q).sum(), q)
    return grad


def timed(fn, repeats: int) -> tuple[float, object]:
    seconds, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), out


def measure(n: int, gp: GPSurrogate, opts: argparse.Namespace) -> dict[str, object]:
    """One row of the table: the subset, kernel, fit and guidance timings at N = n."""
    x = features(n, opts.dim, opts.seed)
    batched_s, batched = timed(lambda: greedy_subset(x, gp.subset_radius), opts.repeats)
    reference_s, reference = timed(lambda: one_by_one_subset(x, gp.subset_radius), 1)
    fit_s, _ = timed(lambda: gp.fit(x), opts.repeats)
    points = gp.points
    kernel_s, k = timed(lambda: gp.kernel(points, points), opts.repeats)
    queries = features(64, opts.dim, opts.seed + 1)
    guide_s, _ = timed(lambda: _guidance_step(gp, queries), opts.repeats)
    row = {"n": n, "subset_size": int(batched.numel()), "subset_seconds": batched_s,
           "one_by_one_subset_seconds": reference_s, "subset_speedup": reference_s / batched_s,
           "identical": torch.equal(batched, reference), "fit_seconds": fit_s,
           "points_conditioned": int(points.shape[0]), "kernel_seconds": kernel_s,
           "guidance_step_seconds": guide_s}
    if n <= opts.direct_max:
        direct_s, kd = timed(lambda: direct_kernel(points, points, gp.lengthscale), 1)
        row |= {"direct_kernel_seconds": direct_s, "kernel_speedup": direct_s / kernel_s,
                "kernel_max_abs_difference": float((kd - k).abs().max())}
    print(f"N {n}: subset {row['subset_size']} points in {batched_s:.3f} s (one by one {reference_s:.3f} s, "
          f"{row['subset_speedup']:.1f}×, identical {row['identical']}); kernel {kernel_s:.3f} s"
          + (f" (direct {row['direct_kernel_seconds']:.3f} s, {row['kernel_speedup']:.0f}×, max |Δ| "
             f"{row['kernel_max_abs_difference']:.1e})" if "direct_kernel_seconds" in row else "")
          + f"; whole fit {fit_s:.3f} s; σ and its gradient for 64 designs {guide_s * 1e3:.1f} ms", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--direct-max", type=int, default=2048, help="largest N for the old kernel (memory n²·d·16 B)")
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    started = time.time()
    gp = GPSurrogate()  # ℓ = 0.1, subset radius ℓ/8, at most 4,096 points
    rows = [measure(n, gp, opts) for n in opts.sizes]
    write_result("gp_fit", {"settings": vars(opts), "rows": rows}, started)


if __name__ == "__main__":
    main()
