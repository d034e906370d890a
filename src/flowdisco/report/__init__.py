"""Self-contained HTML reports of runs: ``write_report(run_dirs, out)`` (CLI: ``flowdisco report``)."""

from __future__ import annotations

import os
from pathlib import Path

from flowdisco.io import atomic_write_text
from flowdisco.report.collect import ReportError, RunSummary, read_run, read_runs
from flowdisco.report.render import render

__all__ = ["ReportError", "RunSummary", "read_run", "read_runs", "render", "write_report"]


def write_report(run_dirs: list[str | os.PathLike], out: str | os.PathLike | None = None,
                 title: str | None = None) -> Path:
    """Write one HTML file about ``run_dirs`` (default: RUN_DIR/report.html for one run,
    ./flowdisco-report.html for several) and return its path. Nothing else is written."""
    runs = read_runs(list(run_dirs))
    target = Path(out) if out is not None else (runs[0].path / "report.html" if len(runs) == 1
                                                 else Path("flowdisco-report.html"))
    atomic_write_text(target, render(runs, title=title))
    return target
