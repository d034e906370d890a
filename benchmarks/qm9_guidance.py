"""What ActFlow's guidance does in one round on QM9, as a function of its strength λ.

The coverage goal of `benchmarks/molecules.py qm9` is not met, and ActFlow's coverage there equals
Rec-F's (guidance on vs off). This script isolates the guidance step: from the shipped model it runs
the warm-up of an ActFlow run (W valid designs, no guidance), fits the round-1 surrogate on φ of that
buffer exactly as `flowdisco expand` does, then draws ``--n`` designs per λ from the *same* starting
noise and Brownian increments, λ = 0 being Rec-F's sampler. Per λ it measures:

- validity, and the surrogate's uncertainty σ(φ(x)) of the drawn designs (what guidance ascends);
- how far guidance moves the designs: ‖x_λ − x_0‖ / ‖x_0‖ against the λ = 0 draw of the same noise,
  and the mean ‖u‖ / ‖v‖ of the control against the velocity over the sampler's steps;
- among valid designs: unique, not in the buffer, not in QM9, mean nearest-neighbour Tanimoto to the
  buffer's valid molecules, and the LeaderPicker clusters (Tanimoto distance 0.85) that the valid
  designs add to the buffer's — the round's contribution to coverage.

    python benchmarks/qm9_guidance.py                                   # λ 0 10 30 100 300, seeds 0 1 2
    python benchmarks/qm9_guidance.py --strengths 0 10 --seeds 0 --n 128  # quick look

Writes benchmarks/results/qm9_guidance.json and qm9_guidance.png.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from common import RESULTS, mean_std, write_result
from flowdisco.cli import parse_settings
from flowdisco.domains import get_domain
from flowdisco.expand import expand
from flowdisco.expand.exploration import UncertaintyGuidance
from flowdisco.expand.loop import fit_round_surrogate, round_guidance
from flowdisco.flow.model import FlowModel
from flowdisco.flow.solvers import GuidanceState, NoiseSchedule
from flowdisco.generate import generate
from flowdisco.seeding import derive_seed, make_generator
from qm9_stages import SHIPPED


class RecordingGuidance:
    """Wraps a guidance hook and records, per step, the mean ‖u‖ / ‖v‖ (norms over each design) and the
    mean reward σ(φ(x̂1)) that the control ascends."""

    def __init__(self, inner: UncertaintyGuidance, ratios: list[float] | None = None,
                 rewards: list[float] | None = None) -> None:
        self.inner = inner
        self.ratios: list[float] = [] if ratios is None else ratios
        self.rewards: list[float] = [] if rewards is None else rewards

    def fork(self, generator: torch.Generator) -> RecordingGuidance:
        """As the sampler forks the real guidance per chunk; the records stay shared."""
        return RecordingGuidance(self.inner.fork(generator), self.ratios, self.rewards)

    def __call__(self, state: GuidanceState) -> torch.Tensor:
        u = self.inner(state)
        un = u.reshape(u.shape[0], -1).norm(dim=1)
        vn = state.v.detach().reshape(u.shape[0], -1).norm(dim=1).clamp_min(1e-12)
        self.ratios.append(float((un / vn).mean()))
        self.rewards.append(float(self.inner.last_reward))
        return u


def one_seed(model: FlowModel, strengths: list[float], n: int, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    dom = get_domain("qm9")
    warm = expand(model, dom, "actflow", rounds=0, seed=seed, eval_every=0, progress=False, **options)
    cfg, buf = warm.config, warm.buffer
    fitted = fit_round_surrogate(model, buf, cfg, round_=1)  # exactly as round 1 of expand
    rep, feats, surrogate = fitted.rep, fitted.features, fitted.surrogate
    buffer_smiles = [s for s, v in zip(dom.decode_safe(buf.x), buf.valid.tolist(), strict=True) if v and s]
    buffer_keys = {dom.key(s) for s in buffer_smiles}
    buffer_desc = dom.descriptors(buffer_smiles)
    buffer_clusters = dom.coverage(buffer_desc)
    qm9_keys = dom.dataset_keys()
    schedule = NoiseSchedule(cfg.noise, cfg.noise_scale)
    with torch.no_grad():
        sigma_buffer = surrogate.uncertainty(feats)
    out: dict[str, Any] = {"surrogate": cfg.surrogate, "warmup_designs": len(buf), "warmup_valid": int(buf.n_valid),
                           "buffer_clusters": buffer_clusters,
                           "surrogate_steps_trained": getattr(surrogate, "steps_trained", None),
                           "sigma_buffer_quantiles": torch.quantile(sigma_buffer.float(), torch.tensor(
                               [0.0, 0.1, 0.5, 0.9, 1.0])).tolist(), "per_strength": {}}
    print(f"seed {seed}: buffer {len(buf)} designs, σ on the buffer (0/10/50/90/100 %) "
          f"{[round(q, 3) for q in out['sigma_buffer_quantiles']]}", flush=True)
    reference_x = None
    for lam in strengths:
        # λ = 0 runs the hook too (its control is zero), so its reward trace is recorded
        hook = RecordingGuidance(round_guidance(rep, surrogate, cfg, round_=1, strength=lam))
        t0 = time.perf_counter()
        g = generate(model, dom, n, generator=make_generator(derive_seed(seed, "sample", 1)), steps=cfg.sampler_steps,
                     solver="euler-maruyama", noise=schedule, guidance=hook, chunk_size=cfg.sample_chunk)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            feats_drawn = rep.features(g.x, g.mask, generator=make_generator(derive_seed(seed, "phi", 2)))
            sigma = surrogate.uncertainty(feats_drawn)
        x = g.x.reshape(n, -1)
        if reference_x is None:
            reference_x = x
        valid = [s for s, v in zip(g.designs, g.valid, strict=True) if v and s]
        unique = sorted({dom.key(s) for s in valid})
        new_to_buffer = [k for k in unique if k not in buffer_keys]
        row: dict[str, Any] = {
            "validity": float(np.mean(g.valid)), "n_valid": len(valid), "n_valid_unique": len(unique),
            "sigma_mean": float(sigma.mean()), "sigma_valid_mean": float(sigma[torch.as_tensor(g.valid)].mean()),
            "relative_displacement": float(((x - reference_x).norm(dim=1) / reference_x.norm(dim=1)).mean()),
            "control_over_velocity": float(np.mean(hook.ratios)),
            "reward_trace": _trace(hook.rewards, cfg.sampler_steps),
            "new_to_buffer": len(new_to_buffer), "new_to_qm9": sum(k not in qm9_keys for k in new_to_buffer),
            "sample_seconds": seconds}
        if valid:
            desc = dom.descriptors(valid)
            row["nn_tanimoto_to_buffer"] = float(dom.similarity(desc, buffer_desc).max(dim=1).values.mean())
            row["clusters_added"] = dom.coverage(torch.cat([buffer_desc, desc])) - buffer_clusters
            row["clusters_added_per_valid"] = row["clusters_added"] / len(valid)
        out["per_strength"][f"{lam:g}"] = row
        tr = row["reward_trace"]
        print(f"seed {seed} λ {lam:g}: validity {row['validity']:.3f}, σ {row['sigma_mean']:.3f}, "
              f"moved {row['relative_displacement']:.3f}, u/v {row['control_over_velocity']:.3f}, "
              f"r(x̂1) {tr[0]:.3f}→{tr[len(tr) // 2]:.3f}→{tr[-1]:.3f}, clusters added {row.get('clusters_added')}, "
              f"NN Tanimoto {row.get('nn_tanimoto_to_buffer', 0):.3f}, "
              f"{seconds:.0f} s", flush=True)
    return out


def _trace(per_call: list[float], steps: int) -> list[float]:
    """Mean reward σ(φ(x̂1)) per sampler step [steps], averaged over the chunks (one call per chunk and step)."""
    a = np.asarray(per_call).reshape(-1, steps)
    return a.mean(0).round(5).tolist()


def plot(summary: dict[str, dict[str, Any]], strengths: list[float], path: str, surrogate: str) -> None:
    from flowdisco.plotting import save_figure, subplots

    keys = [("validity", "validity"), ("sigma_mean", "surrogate σ of the designs"),
            ("clusters_added", "LeaderPicker clusters added (0.85)"),
            ("nn_tanimoto_to_buffer", "NN Tanimoto to buffer")]
    fig, axes = subplots(1, len(keys), figsize=(4 * len(keys), 3.2), dpi=110)
    xs = sorted(strengths)
    for ax, (k, label) in zip(axes, keys, strict=True):
        stats = [summary[f"{s:g}"].get(k) for s in xs]
        m = [st["mean"] if st else np.nan for st in stats]
        e = [st["std"] if st else 0 for st in stats]
        ax.errorbar(xs, m, yerr=e, marker="o", capsize=3)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("guidance strength λ")
        ax.set_title(label, fontsize=10)
    fig.suptitle(f"ActFlow guidance strength ({surrogate} surrogate), one round from the shipped QM9 model "
                 "(mean ± std over seeds)")
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strengths", type=float, nargs="+", default=[0, 10, 30, 100, 300])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=256, help="designs per λ and seed")
    ap.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=JSON",
                    help="expand options, e.g. surrogate=gp warmup_valid=256")
    ap.add_argument("--name", default="qm9_guidance", help="result name: benchmarks/results/NAME.json and .png")
    ap.add_argument("--threads", type=int, default=2)
    opts = ap.parse_args()
    if opts.strengths[0] != 0:
        ap.error("the first strength must be 0 (the unguided reference draw)")
    torch.set_num_threads(opts.threads)
    started = time.time()
    model = FlowModel.load(SHIPPED)
    options = parse_settings(opts.set)
    per_seed = {str(s): one_seed(model, opts.strengths, opts.n, s, options) for s in opts.seeds}
    keys = sorted({k for r in per_seed.values() for row in r["per_strength"].values() for k, v in row.items()
                   if not isinstance(v, list)})
    summary = {f"{lam:g}": {k: mean_std([r["per_strength"][f"{lam:g}"].get(k) for r in per_seed.values()])
                            for k in keys} for lam in opts.strengths}
    plot(summary, opts.strengths, str(RESULTS / f"{opts.name}.png"), next(iter(per_seed.values()))["surrogate"])
    write_result(opts.name, {"settings": vars(opts), "expand_options": options, "model": SHIPPED,
                             "per_seed": per_seed, "summary": summary}, started)


if __name__ == "__main__":
    main()
