"""Every one-round guidance screen of ``qm9_guidance.py`` (GP surrogate) in one picture: LeaderPicker
clusters a guided round adds against its validity, one point per setting and λ, mean ± std over seeds.

Nothing is run: the script reads finished ``qm9_guidance.py`` results. Files whose expand options
agree (after filling in the defaults: GP lengthscale 0.1, φ from the node head at s = 0.9) are one
setting, so per-seed files (``--seeds 0``, ``--seeds 1``, ...) merge here, and a seed measured twice
for the same λ (the λ = 0 reference of each file) is counted once. The λ = 0 draw is the same for
every setting (no control), so it is one reference point.

    python benchmarks/qm9_screens.py                    # the screens in BENCHMARKS.md
    python benchmarks/qm9_screens.py benchmarks/results/qm9_guidance_phi_*.json --name qm9_screens_phi
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common import RESULTS, mean_std, write_result

SCREENS = ["qm9_guidance_gp.json", "qm9_guidance_gp_lengthscale_0.1.json", "qm9_guidance_gp_lengthscale_0.3.json",
           "qm9_guidance_gp_lengthscale_1.0.json", "qm9_guidance_gp_lengthscale_1.0_large_s0.json",
           "qm9_guidance_gp_lengthscale_1.0_large_s1.json", "qm9_guidance_gp_lengthscale_1.0_large_s2.json",
           "qm9_guidance_phi_s0.5.json", "qm9_guidance_phi_s0.5_large.json", "qm9_guidance_phi_s0.7.json",
           "qm9_guidance_phi_s1.0.json", "qm9_guidance_phi_blocks.1.json", "qm9_guidance_phi_blocks.3.json",
           "qm9_guidance_phi_blocks.3_large.json"]
DEFAULTS = {"lengthscale": 0.1, "representation_layer": "node_head", "representation_time": 0.9, "mean_weight": 0.0}
KEYS = ["validity", "clusters_added", "relative_displacement", "control_over_velocity", "nn_tanimoto_to_buffer"]


def setting_of(result: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The screen's expand options with the defaults filled in, as a hashable key."""
    opts = dict(result.get("expand_options") or {})
    if opts.get("surrogate") != "gp":
        raise ValueError("only GP screens are compared here (the ensemble's λ acts differently per seed)")
    lengthscale = (opts.pop("surrogate_options", None) or {}).get("lengthscale", DEFAULTS["lengthscale"])
    full = {**DEFAULTS, **{k: v for k, v in opts.items() if k != "surrogate"}, "lengthscale": lengthscale}
    return tuple(sorted(full.items()))


def label(setting: tuple[tuple[str, Any], ...]) -> str:
    """φ layer and time, ℓ and w where not the defaults, e.g. 'φ blocks.3' or 'ℓ1 · φ s0.5'."""
    s = dict(setting)
    parts = []
    if s["lengthscale"] != DEFAULTS["lengthscale"]:
        parts.append(f"ℓ{s['lengthscale']:g}")
    if s["mean_weight"] != DEFAULTS["mean_weight"]:
        parts.append(f"w{s['mean_weight']:g}")
    if s["representation_layer"] != DEFAULTS["representation_layer"]:
        parts.append(f"φ {s['representation_layer']}")
    if s["representation_time"] != DEFAULTS["representation_time"]:
        parts.append(f"φ s{s['representation_time']:g}")
    rest = sorted(set(s) - set(DEFAULTS) - {"lengthscale"})
    parts += [f"{k}={s[k]}" for k in rest]
    return " · ".join(parts) or "default (ℓ0.1, node head, s0.9)"


def collect(paths: list[Path]) -> dict[tuple, dict[str, dict[str, dict[str, Any]]]]:
    """{setting: {λ: {seed: row}}} over the files; a (setting, λ, seed) seen twice keeps its first row."""
    out: dict[tuple, dict[str, dict[str, dict[str, Any]]]] = {}
    for path in paths:
        result = json.loads(path.read_text())
        key = setting_of(result)
        for seed, per in result["per_seed"].items():
            for lam, row in per["per_strength"].items():
                out.setdefault(key, {}).setdefault(lam, {}).setdefault(seed, row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="qm9_guidance.py results (default: the screens in BENCHMARKS.md)")
    ap.add_argument("--name", default="qm9_screens")
    args = ap.parse_args()
    started = time.time()
    paths = [Path(f) for f in args.files] or [RESULTS / f for f in SCREENS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)}")
    points: list[dict[str, Any]] = []
    reference: dict[str, dict[str, Any]] = {}
    for setting, per_lambda in collect(paths).items():
        for lam, per_seed in sorted(per_lambda.items(), key=lambda kv: float(kv[0])):
            if float(lam) == 0:
                reference.update(per_seed)
                continue
            points.append({"setting": dict(setting), "label": label(setting), "lambda": float(lam),
                           "seeds": sorted(per_seed), **{k: mean_std([r.get(k) for r in per_seed.values()])
                                                          for k in KEYS}})
    ref = {"seeds": sorted(reference), **{k: mean_std([r.get(k) for r in reference.values()]) for k in KEYS}}
    plot(points, ref, RESULTS / f"{args.name}.png")
    write_result(args.name, {"files": [p.name for p in paths], "unguided": ref, "points": points}, started)
    print(f"{'setting':34s} {'λ':>6s} seeds  validity         clusters added")
    for p in [{"label": "unguided (λ = 0)", "lambda": 0.0, **ref}, *points]:
        v, c = p["validity"], p["clusters_added"]
        print(f"{p['label']:34s} {p['lambda']:6g} {len(p['seeds']):5d}  {v['mean']:.3f} ± {v['std']:.3f}  "
              f"{c['mean']:5.1f} ± {c['std']:.1f}")


def plot(points: list[dict[str, Any]], ref: dict[str, Any], path: Path) -> None:
    from matplotlib import colormaps

    from flowdisco.plotting import save_figure, subplots

    fig, ax = subplots(1, 1, figsize=(9, 6.5), dpi=110)
    labels = sorted({p["label"] for p in points})
    cmap = colormaps["tab10"]
    for i, name in enumerate(labels):
        mine = sorted((p for p in points if p["label"] == name), key=lambda p: p["lambda"])
        xs = [p["validity"]["mean"] for p in mine]
        ys = [p["clusters_added"]["mean"] for p in mine]
        ax.plot(xs, ys, "-", color=cmap(i % 10), lw=0.8, alpha=0.6)
        for p, x, y in zip(mine, xs, ys, strict=True):
            ax.errorbar(x, y, xerr=p["validity"]["std"], yerr=p["clusters_added"]["std"], fmt="o", ms=4,
                        color=cmap(i % 10), capsize=2, label=name if p is mine[0] else None)
            ax.annotate(f"λ{p['lambda']:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    v, c = ref["validity"], ref["clusters_added"]
    ax.errorbar(v["mean"], c["mean"], xerr=v["std"], yerr=c["std"], fmt="s", color="black", ms=5, capsize=2,
                label="unguided (λ = 0, Rec-F's sampler)")
    ax.set_xlabel("validity of the round's 256 designs")
    ax.set_ylabel("LeaderPicker clusters (0.85) the valid designs add to the warm-up buffer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("QM9, one guided round from the shipped model (GP surrogate): mean ± std over seeds", fontsize=10)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
