"""The HTML report in a real browser: headless Chromium loads it with no console message, every picture
decodes, the tables are there, and a screenshot shows a non-blank page.

Chromium is Debian's package, installed by `make test` (tools/install_chromium.sh) where it can be;
elsewhere this test is skipped with the reason.
"""

import re
import shutil
import subprocess

import numpy as np
import pytest

from flowdisco.report import write_report
from report_runs import make_expand_run

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium here: `make test` installs Debian's "
                                "chromium where it has root and apt (tools/install_chromium.sh)")


def _chromium(tmp_path, *args):
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_renders_in_headless_chromium(tmp_path):
    from flowdisco.plotting import save_figure, subplots

    runs = [make_expand_run(tmp_path / "runs", m, s, [0.3, 0.4, 0.5 + s / 10], [50, 55, 60 + s])
            for m in ("actflow", "rec-f") for s in (0, 1)]
    (runs[0] / "frames").mkdir()
    fig, ax = subplots(figsize=(2, 2), dpi=60)
    ax.plot([0, 1], [1, 0])
    save_figure(fig, runs[0] / "frames" / "round-00000.png")
    page = write_report(runs, tmp_path / "report.html")
    url = page.resolve().as_uri()

    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # no errors, and no messages of any kind
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 1, loaded
    assert int(re.search(r'data-svgs="(\d+)"', dom.stdout).group(1)) >= 6  # curves + molecules
    assert dom.stdout.count("<table") >= 2 and "actflow (final)" in dom.stdout

    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, "--window-size=1400,2400", f"--screenshot={shot}", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1300
    assert float(np.std(pixels[..., :3])) > 0.05  # not a blank page
