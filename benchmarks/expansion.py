"""Shared machinery of the expansion benchmarks (molecules.py, sequences.py).

``compare_methods`` runs Rec-NF, Rec-F and ActFlow from one pre-trained model with identical budgets
for several seeds (resuming or reading back earlier runs in the work dir), and returns the per-seed
curves, the final table (mean ± std over seeds, with the pre-trained model's round-0 evaluation),
the ratios ActFlow/pre-trained and ActFlow/Rec-F computed per seed, and what each run discovered.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flowdisco as fd
from common import RESULTS, mean_std
from flowdisco.flow.model import FlowModel

METHODS = ["rec-nf", "rec-f", "actflow"]
COLORS = {"actflow": "#e76f51", "rec-f": "#2a9d8f", "rec-nf": "#6d597a"}


def pretrained_model(dom: Any, model_path: str | None, pretrain_steps: int | None, work: Path,
                     network_kwargs: dict[str, Any] | None = None) -> tuple[FlowModel, dict]:
    """The model to expand: ``model_path``, the domain's shipped one, or one pre-trained (and kept)
    in ``work/pretrained`` (``network_kwargs`` override the domain's network for that pre-training).
    The info dict records what the model actually is: steps and network as its run's config.json says."""
    if model_path:
        return FlowModel.load(model_path), _given_model_info(Path(model_path), dom)
    shipped = dom.pretrained_model_path()
    if shipped is not None and not network_kwargs:
        return FlowModel.load(shipped), {"source": "shipped", "path": shipped}
    target = work / "pretrained"
    if (target / "model" / "flowdisco_model.json").is_file():
        print(f"using the pre-trained model in {target}", flush=True)
        return FlowModel.load(target), _pretrain_info(target, dom)
    t0 = time.time()
    model = fd.pretrain(dom, steps=pretrain_steps, run_dir=target, resume=(target / "config.json").is_file(),
                        network_kwargs=network_kwargs or None, progress=False)
    info = {**_pretrain_info(target, dom), "seconds": time.time() - t0}
    print(f"pre-trained {dom.name} in {info['seconds']:.0f} s", flush=True)
    return model, info


def _given_model_info(path: Path, dom: Any) -> dict[str, Any]:
    """What a model given by path is: its weights' checksum, and, when it sits in a pre-training run
    directory, that run's steps, network and command (so a result names the model it started from)."""
    model_dir = path / "model" if (path / "model" / "flowdisco_model.json").is_file() else path
    meta = json.loads((model_dir / "flowdisco_model.json").read_text())
    info: dict[str, Any] = {"source": str(path), "sha256": meta.get("sha256"), "network": meta.get("network"),
                            "network_kwargs": meta.get("network_kwargs")}
    run_dir = model_dir.parent
    if (run_dir / "config.json").is_file():
        cfg = json.loads((run_dir / "config.json").read_text())
        info.update(_pretrain_info(run_dir, dom), source=str(path), init=cfg.get("init"),
                    device=cfg.get("provenance", {}).get("device"))
    return info


def _pretrain_info(run_dir: Path, dom: Any) -> dict[str, Any]:
    cfg = json.loads((run_dir / "config.json").read_text())
    steps = cfg["fit"]["steps"]
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():  # a run stopped by its time limit did fewer steps than it was given
        for line in metrics.read_text().splitlines():
            if '"steps_done"' in line:
                steps = json.loads(line)["steps_done"]
    return {"source": str(run_dir), "steps": steps, "batch_size": cfg["fit"]["batch_size"],
            "network": cfg["network"], "network_kwargs": cfg["network_kwargs"],
            "command": cfg.get("provenance", {}).get("command"), "training_designs": len(dom.training_data())}


def compare_methods(model: FlowModel, dom: Any, *, seeds: list[int], work: Path, keys: list[str],
                    options: dict[str, Any], rounds: int | None = None, eval_every: int | None = None,
                    method_options: dict[str, dict[str, Any]] | None = None,
                    discovered: Callable[[Any, Any], dict[str, float]] | None = None,
                    summary: Callable[[dict], str] | None = None,
                    baselines: dict[str, Any] | None = None,
                    methods: list[str] | None = None) -> dict[str, Any]:
    """Run the methods (default: all of ``METHODS``) for every seed; returns per_seed, final,
    discovered(_summary), ratios, seconds.

    ``method_options`` {method: options} are added to ``options`` for that method only. ``baselines``, an
    earlier result of the same budget (see ``check_baselines``), supplies Rec-NF and Rec-F instead of
    running them again; the pre-trained row then comes from ActFlow's own round 0, and
    ``round0_difference`` says how far it is from the earlier result's. A ratio whose methods did not
    run (e.g. ActFlow / Rec-F with ``methods=["actflow"]``) is None."""
    reused = ["rec-nf", "rec-f"] if baselines else []
    unknown = sorted(set(methods or []) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    ran = [m for m in METHODS if m in (methods or METHODS) and m not in reused]
    shown = [m for m in METHODS if m in ran or m in reused]
    if not ran:
        raise ValueError("no method left to run: the pre-trained row comes from a method's own round 0")
    per_seed: dict[str, dict[str, dict]] = {m: {} for m in ["pretrained", *shown]}
    found: dict[str, dict[str, dict]] = {m: {} for m in shown}
    timing: dict[str, list[float]] = {m: [] for m in ran}
    runs: dict[str, dict[str, Any]] = {m: {} for m in ran}
    for seed in seeds:
        for method in reused:
            per_seed[method][str(seed)] = baselines["per_seed"][method][str(seed)]
            found[method][str(seed)] = baselines["discovered"][method][str(seed)]
        for method in ran:
            run_dir = work / f"{method}-s{seed}"
            # an existing run with the same settings is continued (or, if complete, read back)
            run = fd.expand(model, dom, method=method, rounds=rounds, eval_every=eval_every, seed=seed,
                            run_dir=run_dir, resume=(run_dir / "config.json").is_file(), progress=False,
                            **{**options, **(method_options or {}).get(method, {})})
            timing[method].append(recorded_seconds(run))
            runs[method][str(seed)] = run
            evals = run.evaluations()
            curve: dict[str, list] = {"round": [h["round"] for h in evals]}
            curve.update({k: [h["eval"].get(k) for h in evals] for k in keys})
            if any("rejections" in h for h in evals):  # why each evaluation's invalid samples failed
                curve["rejections"] = [h.get("rejections") for h in evals]
            for k in ("round_validity", "round_new_valid_unique", "round_seconds", "tilt_ess"):
                if any(k in h for h in run.history[1:]):
                    curve[k] = [h.get(k) for h in run.history[1:]]
            per_seed[method][str(seed)] = curve
            per_seed["pretrained"].setdefault(str(seed), {k: evals[0]["eval"].get(k) for k in keys})
            found[method][str(seed)] = (discovered or new_designs)(run, dom)
            last, first = evals[-1]["eval"], evals[0]["eval"]
            line = (f"seed {seed} {method:8s} {timing[method][-1]:6.0f} s: validity {first['validity']:.3f} → "
                    f"{last['validity']:.3f}, coverage {first['coverage']:.0f} → {last['coverage']:.0f}, "
                    f"vendi {last.get('vendi', float('nan')):.1f}, "
                    f"new designs {found[method][str(seed)]['new_valid_unique']:.0f}")
            print(line + (summary(last) if summary else ""), flush=True)

    names = [str(s) for s in seeds]
    round0_difference = None
    if baselines:  # round 0 is the pre-trained model's evaluation: the same for every method of a seed
        round0_difference = {k: max(abs(per_seed["pretrained"][s][k] - baselines["per_seed"]["pretrained"][s][k])
                                    for s in names) for k in keys
                             if all(isinstance(baselines["per_seed"]["pretrained"][s].get(k), float)
                                    and per_seed["pretrained"][s].get(k) is not None for s in names)}
        print(f"round 0 against the reused baselines' (largest difference over seeds): {round0_difference}")
    final = {m: {k: mean_std([per_seed[m][s][k][-1] for s in names]) for k in keys} for m in shown}
    final["pretrained"] = {k: mean_std([per_seed["pretrained"][s][k] for s in names]) for k in keys}
    disc_keys = sorted({k for m in shown for s in names for k in found[m][s]})
    found_summary = {m: {k: mean_std([found[m][s].get(k) for s in names]) for k in disc_keys} for m in shown}
    out = {"per_seed": per_seed, "final": final, "discovered": found, "discovered_summary": found_summary,
           "ratios": _ratios(per_seed, names, keys), "methods": shown,
           "method_seconds": {m: mean_std(v) for m, v in timing.items()}, "runs": runs}
    if baselines:
        out["method_seconds"].update({m: baselines["method_seconds"][m] for m in reused})
        out["baselines_reused"] = {"methods": reused, "round0_difference": round0_difference}
    return out


def evaluations_by_seed(result: dict[str, Any], method: str, at_round: int | None = None,
                        seeds: list[str] | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
    """``method``'s evaluation per seed (at round ``at_round``; default the last) and the pre-trained model's,
    from either shape of result: ``molecules.py``/``compare_methods`` (per_seed[method][seed] holds curves
    over the evaluated rounds, per_seed["pretrained"][seed] one evaluation) or the older ``qm9_confirm.py``
    (per_seed[seed][method] holds the last evaluation; ``at_round`` does not apply). ``seeds``: these
    seeds in this order (default: all, sorted)."""
    per_seed = result["per_seed"]
    if "pretrained" in per_seed:
        names = seeds or sorted(per_seed["pretrained"])
        finals = {}
        for s in names:
            curves = per_seed[method][s]
            i = curves["round"].index(at_round) if at_round is not None else -1
            finals[s] = {k: v[i] for k, v in curves.items() if isinstance(v, list)}
        return finals, {s: per_seed["pretrained"][s] for s in names}
    names = seeds or sorted(per_seed)
    return {s: per_seed[s][method] for s in names}, {s: per_seed[s]["pretrained"] for s in names}


def against_pretrained(finals: dict[str, dict], pretrained: dict[str, dict]) -> dict[str, list[float | None]]:
    """Per seed of ``finals`` (see :func:`evaluations_by_seed`): validity minus the pre-trained model's and
    coverage over the pre-trained model's (None where that coverage is 0)."""
    pairs = [(finals[s], pretrained[s]) for s in finals]
    return {"validity_minus_pretrained": [c["validity"] - p["validity"] for c, p in pairs],
            "coverage_over_pretrained": [c["coverage"] / p["coverage"] if p["coverage"] else None for c, p in pairs]}


def evaluation_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl that carry an evaluation, in order."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "eval_coverage" in r]


def _ratios(per_seed: dict[str, dict[str, dict]], names: list[str], keys: list[str]) -> dict[str, Any]:
    """The goals' quantities, per seed then mean ± std: ActFlow's final coverage over the pre-trained
    model's and Rec-F's, and ActFlow's and Rec-NF's validity minus the pre-trained model's. None where
    a method did not run."""
    def last(m: str, k: str) -> list[float] | None:
        return [per_seed[m][s][k][-1] for s in names] if m in per_seed else None

    def over(a: list[float] | None, b: list[float] | None) -> dict | None:
        return None if a is None or b is None else mean_std([x / y if y else None for x, y in zip(a, b, strict=True)])

    def change(m: str, what: str) -> dict | None:
        if m not in per_seed:
            return None
        return mean_std(against_pretrained(*evaluations_by_seed({"per_seed": per_seed}, m, seeds=names))[what])

    ratios = {"actflow_coverage_over_pretrained": change("actflow", "coverage_over_pretrained"),
              "actflow_coverage_over_rec_f": over(last("actflow", "coverage"), last("rec-f", "coverage")),
              "actflow_validity_minus_pretrained": change("actflow", "validity_minus_pretrained"),
              "rec_nf_validity_minus_pretrained": change("rec-nf", "validity_minus_pretrained")}
    for k in keys:  # the stricter / other coverage measures, where the domain reports them
        a, r = last("actflow", k), last("rec-f", k)
        if k.startswith("coverage_") and a is not None and r is not None and None not in a + r:
            ratios[f"actflow_{k}_over_rec_f"] = over(a, r)
    return ratios


def check_baselines(earlier: dict[str, Any], *, domain: str, seeds: list[int], rounds: int, eval_every: int,
                    options: dict[str, Any], pretrain: dict[str, Any]) -> None:
    """Raise SystemExit naming the first difference unless ``earlier`` (a result JSON of this script)
    ran the same domain, model, budget, shared options and seeds, so its Rec-NF and Rec-F runs are the
    ones this run would make."""
    lacking = [k for k in ("settings", "per_seed", "discovered", "method_seconds") if k not in earlier]
    lacking += [f"per_seed.{m}" for m in ("pretrained", "rec-nf", "rec-f") if m not in earlier.get("per_seed", {})]
    if lacking:
        raise SystemExit(f"--baselines-from: not a result of benchmarks/molecules.py (it lacks {', '.join(lacking)})")

    def model_id(info: dict[str, Any]) -> Any:
        return info.get("sha256") or (info.get("source"), Path(str(info.get("path"))).name)

    checks = [("domain", earlier.get("domain"), domain),
              ("rounds", earlier["settings"].get("rounds"), rounds),
              ("eval_every", earlier["settings"].get("eval_every"), eval_every),
              ("expand options for every method (--set)", earlier.get("expand_options"), options),
              ("model", model_id(earlier.get("pretrain", {})), model_id(pretrain))]
    for what, was, now in checks:
        if was != now:
            raise SystemExit(f"--baselines-from: the earlier result has {what} {was!r}, this run {now!r}; "
                             "run the baselines again (leave out --baselines-from)")
    missing = [s for s in seeds if str(s) not in earlier["per_seed"]["rec-f"]]
    if missing:
        raise SystemExit(f"--baselines-from: the earlier result has no seed {missing}; it has "
                         f"{sorted(earlier['per_seed']['rec-f'])}")


def recorded_seconds(run: Any) -> float:
    """Seconds of work a run recorded (its rounds and evaluations): the same whether the run was made
    by this process, resumed, or read back finished."""
    return float(sum(h.get("round_seconds", 0.0) + h.get("eval", {}).get("seconds", 0.0) for h in run.history))


def new_designs(run: Any, dom: Any) -> dict[str, float]:
    """What a run generated after warm-up: valid unique designs, those not in the data set, and their coverage."""
    return run.discovered(dom)


def ratio(result: dict, key: str) -> float:
    r = result["ratios"].get(key)
    return float("nan") if r is None else r["mean"]


def band(curves: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    n = min(len(c) for c in curves)
    cols = [[c[i] for c in curves] for i in range(n)]
    return [statistics.fmean(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]


def plot_curves(per_seed: dict, seeds: list[str], keys: list[str], path: Path, title: str) -> None:
    """One panel per metric: mean over seeds with the min–max band, per method."""
    from flowdisco.plotting import save_figure, subplots

    fig, axes = subplots(1, len(keys), figsize=(4 * len(keys), 3.6), dpi=110, squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        for m in [m for m in METHODS if m in per_seed]:
            curves = [per_seed[m][s][k] for s in seeds]
            if any(v is None for c in curves for v in c):
                continue
            rounds = per_seed[m][seeds[0]]["round"]
            mean, lo, hi = band(curves)
            ax.plot(rounds[: len(mean)], mean, color=COLORS[m], label=m, marker="o", ms=3)
            ax.fill_between(rounds[: len(mean)], lo, hi, color=COLORS[m], alpha=0.2)
        ax.set_title(k.replace("_", " ") + (" (FCD)" if k.startswith("frechet") else ""), fontsize=10)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{title}: mean and min–max over seeds {', '.join(seeds)}", fontsize=10)
    save_figure(fig, path)


def common_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--rounds", type=int, default=None, help="default: the domain's")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-every", type=int, default=None, help="default: the domain's")
    ap.add_argument("--model", default=None, help="model directory (default: shipped, or pre-trained here)")
    ap.add_argument("--pretrain-steps", type=int, default=None, help="steps when this script pre-trains")
    ap.add_argument("--net", nargs="*", action="extend", default=[], metavar="KEY=JSON",
                    help="network settings when this script pre-trains (e.g. edge_dim=0: the pre-edge network)")
    ap.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=JSON",
                    help="expand options for every method")
    ap.add_argument("--actflow-set", nargs="*", action="extend", default=[], metavar="KEY=JSON",
                    help="expand options for ActFlow only (e.g. surrogate=gp guidance_strength=3); the baselines' "
                         "runs keep their settings, so finished baseline runs in the work dir are read back")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fresh", action="store_true",
                    help="delete earlier runs in the work dir (default: continue or reuse them)")
    ap.add_argument("--work-dir", default=None, help="run directories (default runs/bench-DOMAIN, not committed)")


__all__ = [
    "COLORS",
    "METHODS",
    "RESULTS",
    "against_pretrained",
    "check_baselines",
    "common_arguments",
    "compare_methods",
    "evaluation_rows",
    "evaluations_by_seed",
    "new_designs",
    "plot_curves",
    "pretrained_model",
    "ratio",
]
