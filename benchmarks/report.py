"""Benchmark: how long `flowdisco report` takes on a 3-method × 3-seed molecule comparison, and how
large the HTML is → benchmarks/results/report.json, plus a screenshot (report_screenshot.png) when
Chromium is installed.

    python benchmarks/report.py                          # the runs of benchmarks/molecules.py qm9
    python benchmarks/report.py --runs runs/bench-qm9-edge/*-s* --repeats 5
"""

from __future__ import annotations

import argparse
import glob
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from common import RESULTS, mean_std, write_result
from flowdisco.report import read_runs, write_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=None,
                    help="run directories (default runs/bench-qm9/*-s*: benchmarks/molecules.py qm9's work dir)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    runs = args.runs or sorted(glob.glob("runs/bench-qm9/*-s*"))
    if not runs:
        raise SystemExit("no run directories: run `python benchmarks/molecules.py qm9` first or give --runs")
    summaries = read_runs(runs)
    out = Path(tempfile.mkdtemp()) / "report.html"
    seconds = []
    for _ in range(args.repeats):  # each repeat reads the run directories and renders from scratch
        t0 = time.perf_counter()
        write_report(runs, out)
        seconds.append(time.perf_counter() - t0)
    page = out.read_text()
    shot = _screenshot(out, RESULTS / "report_screenshot.png")
    res = {"runs": runs, "n_runs": len(runs), "methods": sorted({r.method for r in summaries}),
           "seeds": sorted({r.seed for r in summaries if r.seed is not None}),
           "runs_with_discoveries": sum(r.discoveries is not None for r in summaries),
           "seconds": mean_std(seconds), "seconds_each": seconds, "html_bytes": len(page.encode()),
           "svg_elements": page.count("<svg"), "png_images": page.count("data:image/png"),
           "goal_at_most_10_s": max(seconds) <= 10.0, "screenshot": shot}
    write_result("report", res, started)
    print(f"{len(runs)} runs: {mean_std(seconds)['mean']:.2f} s per report, {len(page.encode()) / 1e6:.2f} MB")


def _screenshot(page: Path, target: Path) -> str | None:
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        return None
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", "--window-size=1400,3200", f"--screenshot={target}",
                        page.resolve().as_uri()], capture_output=True, timeout=120)
    return str(target) if target.is_file() else None


if __name__ == "__main__":
    main()
