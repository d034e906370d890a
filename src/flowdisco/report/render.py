"""One self-contained HTML page for one or several runs: inline SVG/PNG and CSS, no network.

Sections: runs (settings and provenance), metric curves (mean ± std over seeds per method), the final
comparison table, discoveries (molecule drawings or an alignment-style sequence listing, with the
similarity to the nearest training design), property distributions, and pictures the runs left (toy
frames, sample grids). Whatever a run did not record is shown as such.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from flowdisco import __version__
from flowdisco.evaluate import UNEXPLAINED_REJECTION
from flowdisco.report.collect import METRICS, RunSummary

COLOURS = ["#e76f51", "#2a9d8f", "#264653", "#e9c46a", "#8d6cab", "#6c757d", "#f4a261", "#3a86ff"]
NOT_RECORDED = '<span class="na" title="the run did not record this">not recorded</span>'
NOT_APPLICABLE = '<span class="na" title="the pre-trained model is the reference">n/a</span>'

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2329;background:#f7f7f5}
header{background:#264653;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
main{padding:8px 32px 48px;max-width:1400px}
section{background:#fff;border:1px solid #e3e3de;border-radius:8px;margin:18px 0;padding:14px 20px}
h2{font-size:17px;margin:4px 0 12px;color:#264653}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid #ecece8;padding:4px 10px;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}th{background:#f1f1ed;font-weight:600}
td.best{font-weight:700;color:#1b6b5f}
.na{color:#b5651d;font-style:italic}.warn{color:#b5651d;font-size:13px}
.figs{display:flex;flex-wrap:wrap;gap:12px}.fig{flex:0 0 auto}.fig svg{max-width:440px;height:auto}
.figs img{max-width:440px;border:1px solid #eee}
.grid{display:flex;flex-wrap:wrap;gap:8px}.cell{border:1px solid #eee;border-radius:6px;padding:4px;width:190px;
font-size:11px;text-align:center;background:#fff}.cell svg{width:180px;height:140px}
.cell code{word-break:break-all;display:block}
pre.seqs{font-size:12px;line-height:1.5;overflow-x:auto}
.h{background:#ffe8a3}.p{background:#c8dcff}.n{background:#ffc9c9}.o{background:#d9f2d9}.s{background:#e7e7e7}
details summary{cursor:pointer;font-size:13px;color:#264653}
"""

# checks, once the page is loaded, that every picture decoded: tests read the body's data attributes
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
  document.body.setAttribute('data-svgs', String(document.querySelectorAll('svg').length));
});
"""


def render(runs: list[RunSummary], title: str | None = None) -> str:
    """The HTML of a report on ``runs`` (already read by :func:`flowdisco.report.collect.read_runs`)."""
    groups = _group(runs)
    domains = sorted({r.domain for r in runs})
    title = title or f"flowdisco report · {', '.join(domains)} · {len(runs)} run{'s' * (len(runs) > 1)}"
    parts = [f"<header><h1>{_e(title)}</h1><p>methods: {_e(', '.join(groups))} · written by flowdisco "
             f"{_e(__version__)}</p></header><main>"]
    parts.append(_runs_section(runs))
    expands = [r for r in runs if r.kind == "expand"]
    if expands:
        parts.append(_curves_section(_group(expands)))
        parts.append(_table_section(_group(expands)))
        parts.append(_rejections_section(_group(expands)))
        parts.append(_discoveries_section(expands))
    trains = [r for r in runs if r.kind != "expand"]
    if trains:
        parts.append(_loss_section(trains))
    parts.append(_pictures_section(runs))
    parts.append("</main>")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}<script>{SCRIPT}</script></body></html>")


# ---------------------------------------------------------------------------------------- sections
def _runs_section(runs: list[RunSummary]) -> str:
    rows = []
    for r in runs:
        prov = r.provenance
        wall = r.wall_clock()
        cells = [r.name, r.kind, r.domain, r.method, "—" if r.seed is None else str(r.seed),
                 prov.get("command"), prov.get("device"), prov.get("machine"), prov.get("flowdisco_version"),
                 prov.get("started"), None if wall is None else _duration(wall)]
        rows.append("<tr>" + "".join(f"<td>{NOT_RECORDED if c is None else _e(str(c))}</td>" for c in cells)
                    + "</tr>")
    head = ["run", "kind", "domain", "method", "seed", "command", "device", "machine", "version", "started",
            "wall-clock"]
    settings = "".join(f"<details><summary>{_e(r.name)}: all settings</summary><pre>{_e(_settings_text(r))}"
                       f"</pre></details>" for r in runs)
    warns = "".join(f"<p class=\"warn\">{_e(r.name)}: {_e(w)}</p>" for r in runs for w in r.warnings)
    return (f"<section id=\"runs\"><h2>Runs and provenance</h2>{_table(head, rows)}{settings}{warns}</section>")


def _curves_section(groups: dict[str, list[RunSummary]]) -> str:
    metrics = [m for m in METRICS if any(m in ev for rs in groups.values() for r in rs for _, ev in r.evaluations())]
    if not metrics:
        return ("<section id=\"curves\"><h2>Metrics over rounds</h2><p class=\"na\">No run recorded an "
                "evaluation (eval_every = 0?): there are no curves to draw.</p></section>")
    from matplotlib.ticker import MaxNLocator

    figs = []
    for m in metrics:
        fig, ax = _figure()
        for i, (method, rs) in enumerate(groups.items()):
            rounds, mean, std = _over_seeds(rs, m)
            if not rounds:
                continue
            colour = COLOURS[i % len(COLOURS)]
            ax.plot(rounds, mean, "-o", ms=3, color=colour, label=f"{method} (n={len(rs)})")
            if len(rs) > 1:
                ax.fill_between(rounds, mean - std, mean + std, color=colour, alpha=0.18, lw=0)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(m.replace("_", " "), fontsize=11)
        ax.legend(fontsize=8)
        figs.append(f"<div class=\"fig\">{_svg(fig)}</div>")
    note = "<p>Lines: mean over seeds; bands: ± one standard deviation (where there are several seeds).</p>"
    return _section("curves", "Metrics over rounds", note + _figs(figs))


def _start_and_final(groups: dict[str, list[RunSummary]], series: Any) -> dict[str, list[dict[str, Any]]]:
    """The rows of a comparison table: "pre-trained (round 0)" (every run's round-0 entry) and "METHOD
    (final)" (each run's last entry), from ``series(run)``, a run's [(round, {name: value})] in order."""
    rows_by: dict[str, list[dict[str, Any]]] = {"pre-trained (round 0)": []}
    for method, rs in groups.items():
        recorded = [entries for entries in map(series, rs) if entries]
        rows_by["pre-trained (round 0)"] += [entries[0][1] for entries in recorded if entries[0][0] == 0]
        rows_by[f"{method} (final)"] = [entries[-1][1] for entries in recorded]
    return rows_by


def _table_section(groups: dict[str, list[RunSummary]]) -> str:
    rows_by = _start_and_final(groups, RunSummary.evaluations)
    metrics = [m for m in METRICS if any(m in ev for evs in rows_by.values() for ev in evs)]
    if not metrics:
        return ("<section id=\"table\"><h2>Final comparison</h2><p class=\"na\">No evaluation was recorded, so "
                "there is nothing to compare.</p></section>")
    means = {name: {m: _mean_std([ev[m] for ev in evs if m in ev]) for m in metrics} for name, evs in rows_by.items()}
    lower_better = {"frechet_to_test", "frechet_to_reference", "mass_outside"}
    best = {}
    for m in metrics:
        vals = [(v[m][0], name) for name, v in means.items() if v[m] is not None and not name.startswith("pre")]
        if len(vals) > 1:
            best[m] = (min if m in lower_better else max)(vals)[1]
    rows = []
    for name, v in means.items():
        cells = [f"<td>{_e(name)}</td><td>{len(rows_by[name])}</td>"]
        for m in metrics:
            if v[m] is None:  # the distance of the pre-trained model to its own samples is not a gap
                na = name.startswith("pre") and m == "frechet_to_reference"
                cells.append(f"<td>{NOT_APPLICABLE if na else NOT_RECORDED}</td>")
            else:
                mu, sd = v[m]
                cls = " class=\"best\"" if best.get(m) == name else ""
                cells.append(f"<td{cls}>{_mean_sd(mu, sd)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = ["", "runs", *[m.replace("_", " ") for m in metrics]]
    return (f"<section id=\"table\"><h2>Final comparison</h2><p>Mean ± standard deviation over seeds at each run's "
            f"last evaluated round; bold: the best expansion method per column.</p>{_table(head, rows)}</section>")


def _rejections_section(groups: dict[str, list[RunSummary]], max_reasons: int = 8) -> str:
    """Why the invalid samples of the first (round 0) and each method's last evaluation were rejected:
    mean ± sd count per reason over seeds; empty when no run recorded reasons."""
    rows_by = {name: counts for name, counts in _start_and_final(groups, RunSummary.rejections).items() if counts}
    totals: dict[str, float] = defaultdict(float)
    for counts in rows_by.values():
        for c in counts:
            for reason, n in c.items():
                totals[reason] += n
    if not totals or set(totals) == {UNEXPLAINED_REJECTION}:
        return ""  # no run recorded reasons, or its domain gives none
    reasons = sorted(totals, key=lambda k: -totals[k])[:max_reasons]
    rows = []
    for name, counts in rows_by.items():
        cells = [f"<td>{_e(name)}</td><td>{len(counts)}</td>"]
        for reason in reasons:
            cells.append(f"<td>{_mean_sd(*_mean_std([c.get(reason, 0) for c in counts]))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    sizes = sorted({r.config.get("config", {}).get("eval_samples") for rs in groups.values() for r in rs} - {None})
    among = f" among its {', '.join(map(str, sizes))} raw samples" if sizes else ""
    return (f"<section id=\"rejections\"><h2>Why samples were invalid</h2><p>Invalid samples of each evaluation"
            f"{_e(among)} by the first check of the verifier they fail (mean ± standard deviation over seeds), at "
            f"round 0 and at each method's last evaluated round.</p>{_table(['', 'runs', *reasons], rows)}</section>")


def _discoveries_section(runs: list[RunSummary]) -> str:
    parts = []
    missing = [r.name for r in runs if r.discoveries is None and r.domain != "toy2d"]
    if missing:
        parts.append(f"<p class=\"na\">Discoveries not recorded by {_e(', '.join(missing))}: these runs finished "
                     "before flowdisco recorded discoveries (discoveries.json), or were stopped before their last "
                     "round.</p>")
    for r in runs:
        d = r.discoveries
        if d is None:
            continue
        designs = d.get("designs", [])
        head = (f"<h3>{_e(r.name)}: {d.get('n_new', len(designs))} valid designs not in the data set "
                f"(the latest {len(designs)} shown)</h3>")
        errors = "".join(f"<p class=\"na\">{_e(k)} not computed: {_e(v)}</p>" for k, v in d.get("errors", {}).items())
        if not designs:
            parts.append(head + "<p class=\"na\">The expansion found no valid design outside the data set.</p>")
            continue
        sim = d.get("similarity", "similarity")
        body = _molecule_grid(designs, sim) if _looks_like_smiles(r, designs) else _sequence_listing(designs, sim)
        parts.append(head + errors + body + _properties(d))
    if not parts:
        return ""
    return f"<section id=\"discoveries\"><h2>Discoveries</h2>{''.join(parts)}</section>"


def _loss_section(runs: list[RunSummary]) -> str:
    fig, ax = _figure()
    drawn = 0
    for i, r in enumerate(runs):
        pts = r.losses()
        if pts:
            steps, loss = zip(*pts, strict=True)
            ax.plot(steps, loss, color=COLOURS[i % len(COLOURS)], lw=1.2, label=r.name)
            drawn += 1
    if not drawn:
        return ("<section id=\"training\"><h2>Training</h2><p class=\"na\">No training loss was recorded."
                "</p></section>")
    ax.set_xlabel("step (log interval)")
    ax.set_yscale("log")
    ax.set_title("training loss", fontsize=11)
    ax.legend(fontsize=8)
    return _section("training", "Training", _figs([f"<div class=\"fig\">{_svg(fig)}</div>"]))


def _pictures_section(runs: list[RunSummary]) -> str:
    cells = []
    for r in runs:
        for caption, path in r.images:
            cells.append(f"<figure class=\"fig\"><img alt=\"{_e(caption)}\" src=\"{_png_uri(path)}\">"
                         f"<figcaption>{_e(r.name)}: {_e(caption)}</figcaption></figure>")
    if not cells:
        return ""
    return _section("pictures", "Pictures from the runs", _figs(cells))


# ---------------------------------------------------------------------------------------- pieces
def _molecule_grid(designs: list[dict[str, Any]], sim: str) -> str:
    try:
        from rdkit import Chem
        from rdkit.Chem.Draw import rdMolDraw2D
    except ImportError:
        return ("<p class=\"na\">RDKit is not installed here, so the molecules are listed, not drawn "
                "(pip install 'flowdisco[chem]').</p>" + _sequence_listing(designs, sim, colour=False))
    cells = []
    for d in designs:
        mol = Chem.MolFromSmiles(d["design"])
        if mol is None:
            pic = "<p class=\"na\">cannot be drawn</p>"
        else:
            drawer = rdMolDraw2D.MolDraw2DSVG(180, 140)
            drawer.DrawMolecule(mol)
            drawer.FinishDrawing()
            pic = _strip_xml(drawer.GetDrawingText())
        cells.append(f"<div class=\"cell\">{pic}<code>{_e(d['design'])}</code>round {d.get('round')} · "
                     f"nearest training {_sim(d.get('nearest_similarity'))}</div>")
    return f"<p>Nearest-neighbour similarity: {_e(sim)}.</p><div class=\"grid\">{''.join(cells)}</div>"


def _sequence_listing(designs: list[dict[str, Any]], sim: str, colour: bool = True) -> str:
    width = max(len(str(d["design"])) for d in designs)
    lines = []
    for d in designs:
        s = str(d["design"])
        body = "".join(f"<span class=\"{_residue_class(c)}\">{_e(c)}</span>" for c in s) if colour else _e(s)
        lines.append(f"{body}{' ' * (width - len(s))}  round {d.get('round'):>3}  "
                     f"nearest {_sim(d.get('nearest_similarity'))}")
    legend = ("<p>Residues: <span class=\"h\">hydrophobic</span> <span class=\"p\">positive</span> "
              "<span class=\"n\">negative</span> <span class=\"o\">polar</span> <span class=\"s\">G/P/C</span>"
              f" · nearest-neighbour similarity: {_e(sim)}.</p>") if colour else ""
    return f"{legend}<pre class=\"seqs\">{chr(10).join(lines)}</pre>"


def _properties(d: dict[str, Any]) -> str:
    props = d.get("properties")
    if not props:
        return ""
    names = sorted(set.intersection(*(set(t) for t in props.values())))
    figs = []
    for name in names:
        fig, ax = _figure(size=(3.6, 2.6))
        vals = {g: np.asarray(t[name], dtype=float) for g, t in props.items()}
        allv = np.concatenate([v[np.isfinite(v)] for v in vals.values()])
        if allv.size == 0:
            continue
        bins = np.linspace(np.percentile(allv, 1), np.percentile(allv, 99) + 1e-9, 25)
        for i, (g, v) in enumerate(vals.items()):
            ax.hist(v[np.isfinite(v)], bins=bins, density=True, histtype="step", lw=1.5,
                    color=COLOURS[i % len(COLOURS)], label=f"{g} (n={len(v)})")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=6)
        figs.append(f"<div class=\"fig\">{_svg(fig)}</div>")
    return f"<h3>Property distributions</h3><div class=\"figs\">{''.join(figs)}</div>"


def _group(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    out: dict[str, list[RunSummary]] = defaultdict(list)
    for r in runs:
        out[r.method if len({x.domain for x in runs}) == 1 else f"{r.domain} · {r.method}"].append(r)
    return dict(out)


def _over_seeds(runs: list[RunSummary], metric: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Rounds evaluated in every run of a method, and the metric's mean and std over the runs there."""
    per = [{k: ev[metric] for k, ev in r.evaluations() if metric in ev} for r in runs]
    rounds = sorted(set.intersection(*(set(p) for p in per))) if per else []
    vals = np.array([[p[k] for k in rounds] for p in per], dtype=float)
    if not rounds:
        return [], np.array([]), np.array([])
    return rounds, vals.mean(0), vals.std(0, ddof=1) if len(per) > 1 else np.zeros(len(rounds))


def _mean_std(values: list[float]) -> tuple[float, float | None] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None)


def _mean_sd(mu: float, sd: float | None) -> str:
    """ "mean ± sd" as a table shows it; the mean alone for one run."""
    return _num(mu) + (f" ± {_num(sd)}" if sd is not None else "")


def _looks_like_smiles(run: RunSummary, designs: list[dict[str, Any]]) -> bool:
    return "Tanimoto" in str((run.discoveries or {}).get("similarity", "")) and all(
        isinstance(d.get("design"), str) for d in designs)


def _residue_class(c: str) -> str:
    return "h" if c in "AILMFVWY" else "p" if c in "KRH" else "n" if c in "DE" else "s" if c in "GPC" else "o"


def _figure(size: tuple[float, float] = (4.4, 3.0)) -> tuple[Any, Any]:
    from flowdisco.plotting import subplots

    return subplots(figsize=size, dpi=100)


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.tight_layout()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return _strip_xml(buf.getvalue())


def _strip_xml(svg: str) -> str:
    i = svg.find("<svg")
    return svg[i:] if i >= 0 else svg


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _section(key: str, title: str, body: str) -> str:
    return f"<section id=\"{key}\"><h2>{_e(title)}</h2>{body}</section>"


def _figs(items: list[str]) -> str:
    return f"<div class=\"figs\">{''.join(items)}</div>"


def _table(head: list[str], rows: list[str]) -> str:
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _settings_text(r: RunSummary) -> str:
    import json

    return json.dumps({k: v for k, v in r.config.items() if k != "provenance"}, indent=1, sort_keys=True,
                      default=str)


def _num(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "nan"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _sim(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else NOT_RECORDED


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _e(s: str) -> str:
    return html.escape(s, quote=True)
