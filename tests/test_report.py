"""flowdisco report: reading run directories, the numbers in the page, and what it says when a run
lacks something. The browser check is in test_report_browser.py."""

import re

import pytest

import flowdisco as fd
from flowdisco.cli import main
from flowdisco.report import ReportError, read_run, render, write_report
from report_runs import SMILES, make_expand_run


@pytest.fixture
def runs(tmp_path):
    a0 = make_expand_run(tmp_path, "actflow", 0, [0.3, 0.4, 0.5], [50, 55, 60])
    a1 = make_expand_run(tmp_path, "actflow", 1, [0.3, 0.5, 0.7], [50, 60, 70], corrupt_line=True)
    r0 = make_expand_run(tmp_path, "rec-f", 0, [0.3, 0.35, 0.4], [50, 50, 50], discoveries=False)
    return [a0, a1, r0]


def _cells(page: str, row: str) -> list[str]:
    m = re.search(rf"<tr><td>{re.escape(row)}</td>(.*?)</tr>", page)
    assert m, row
    return [re.sub("<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(1))]


def test_final_table_gives_mean_and_spread_over_seeds(runs):
    page = render([read_run(p) for p in runs])
    # actflow final: validity (0.5, 0.7) → 0.6 ± 0.141; coverage (60, 70) → 65 ± 7.07
    assert _cells(page, "actflow (final)")[:3] == ["2", "0.6 ± 0.141", "65 ± 7.07"]
    assert _cells(page, "rec-f (final)")[:3] == ["1", "0.4", "50"]  # one seed: no spread
    assert _cells(page, "pre-trained (round 0)")[:2] == ["3", "0.3 ± 0"]
    assert '<td class="best">0.6 ± 0.141</td>' in page


def test_what_a_run_lacks_is_said_not_hidden(runs):
    page = render([read_run(p) for p in runs])
    assert "metrics.jsonl line 4 is not JSON" in page  # the crash-cut line of actflow-s1
    assert "Discoveries not recorded by rec-f-s0" in page
    # the pre-trained model has no distance to itself: not applicable, not "not recorded"
    assert _cells(page, "pre-trained (round 0)")[-1] == "n/a"
    assert _cells(page, "actflow (final)")[-1] == "1 ± 0"
    assert page.count("<svg") >= 2 + len(SMILES)  # curves, and every molecule drawn (RDKit)
    for s in SMILES:
        assert s in page
    assert "17 valid designs not in the data set" in page and "0.60" in page  # nearest similarity


def test_why_samples_were_invalid_is_tabled_per_method(tmp_path, runs):
    frag, val = "several fragments", "an atom over its valence"
    a = [make_expand_run(tmp_path / "why", "actflow", s, [0.3, 0.4, 0.5], [50, 55, 60],
                         rejections=[{val: 50, frag: 20}, {val: 40}, {frag: f}]) for s, f in ((0, 10), (1, 20))]
    r = make_expand_run(tmp_path / "why", "rec-f", 0, [0.3, 0.35, 0.4], [50, 50, 50], rejections=[{val: 50}] * 3)
    page = render([read_run(p) for p in [*a, r]])
    section = page[page.index('id="rejections"'):]
    assert "among its 100 raw samples" in section
    assert section.index(val) < section.index(frag)  # reasons ordered by how often they occur overall
    assert _cells(section, "pre-trained (round 0)") == ["3", "50 ± 0", "13.3 ± 11.5"]
    assert _cells(section, "actflow (final)") == ["2", "0 ± 0", "15 ± 7.07"]  # the last evaluation, not round 2
    assert _cells(section, "rec-f (final)") == ["1", "50", "0"]
    # runs that recorded no reasons (older runs) get no section
    assert 'id="rejections"' not in render([read_run(p) for p in runs])


def test_bad_run_directories_give_one_clear_error(tmp_path):
    with pytest.raises(ReportError, match="no such run directory"):
        read_run(tmp_path / "missing")
    with pytest.raises(ReportError, match="not a flowdisco run"):
        read_run(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ReportError, match="unreadable"):
        read_run(tmp_path)
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_report_of_a_real_toy_run_and_the_cli(tmp_path, capsys):
    from test_expand import FAST

    model = fd.pretrain("toy2d", steps=100, seed=0, progress=False)
    fd.expand(model, "toy2d", rounds=2, seed=0, run_dir=tmp_path / "toy", progress=False,
              **{**FAST, "eval_every": 1, "eval_samples": 100, "eval_valid": 30})
    out = write_report([tmp_path / "toy"])
    assert out == tmp_path / "toy" / "report.html"
    page = out.read_text()
    assert "generable set, round 00002" in page and page.count("data:image/png;base64,") >= 2
    assert "generable coverage" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(\s*["']?https?:|@import""", page)  # no network
    assert main(["report", str(tmp_path / "toy"), "-o", str(tmp_path / "r.html")]) == 0
    assert "report of 1 run(s)" in capsys.readouterr().out
