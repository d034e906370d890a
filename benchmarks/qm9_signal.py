"""What ActFlow's exploration signal points at on the discrete QM9 model.

On the discrete QM9 model ActFlow's margin over a Rec-F given the same fine-tuning terms stays small
whatever the tilt temperature (`qm9_tilt_alpha.py`) and whether the designs are selected by the
reward or not. This script asks the signal itself: from saved states of benchmark runs (the model and
buffer of run DIR at round R), it draws ``--n`` candidates from that model, fits each signal on the
buffer as the round after R would (ActFlow's own ``fit_round_surrogate``), and measures over the
candidates:

- Spearman correlation of the signal with *fingerprint novelty* (Tanimoto distance of a valid
  candidate to its nearest valid buffer design: what sphere-exclusion coverage rewards) and with
  validity;
- the top 1/8 of the candidates by the signal (what uncertainty selection with factor 8 and a cold
  temperature keeps): their validity, fingerprint novelty, and share of new clusters (nearest buffer
  design at Tanimoto distance ≥ 0.85, the coverage threshold, or ≥ 0.7).

Signals: the paper's φ (node head of the current network) with the ensemble's σ and σ + 0.1·μ
(the benchmark's reward), a GP's σ on φ at two lengthscales, and a GP on the domain's descriptors
(L2-normalised Morgan bits, ``representation_layer=descriptors``) with σ and σ + 0.1·μ. The
descriptor signal is built from the same bits as the novelty it is scored on, so its correlation is
expected; the question is how far φ is from it.

    python benchmarks/qm9_signal.py          # the balanced runs of qm9_discrete_balanced.json, rounds 0 and 12
    python benchmarks/qm9_signal.py --states runs/bench-qm9d-bal1/actflow-s0@12 --n 512   # one state

The default states are run directories of `python benchmarks/molecules.py qm9-discrete --set
finetune_balance=1.0 --actflow-set mean_weight=0.1 --work-dir runs/bench-qm9d-bal1` (not part of a
checkout). Writes benchmarks/results/qm9_discrete_signal.json.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import mean_std, write_result
from flowdisco.domains import get_domain
from flowdisco.expand.buffer import DesignBuffer
from flowdisco.expand.loop import ExpandConfig, fit_round_surrogate
from flowdisco.expand.state import RoundStore
from flowdisco.flow.model import FlowModel
from flowdisco.generate import generate
from flowdisco.io import read_json
from flowdisco.seeding import derive_seed, make_generator

DEFAULT_STATES = [f"runs/bench-qm9d-bal1/{m}-s{s}@{r}" for r in (0, 12) for m, s in
                  (("actflow", 0), ("actflow", 1), ("actflow", 2), ("rec-f", 0), ("rec-f", 1), ("rec-f", 2))
                  if not (r == 0 and m == "rec-f")]  # round 0 is the same warm-up for both methods
# name: (representation_layer, surrogate, surrogate_options, mean_weight)
SIGNALS: dict[str, tuple[str, str, dict[str, Any], float]] = {
    "phi ensemble σ": ("node_head", "ensemble", {}, 0.0),
    "phi ensemble σ+0.1μ": ("node_head", "ensemble", {}, 0.1),
    "phi GP(0.1) σ": ("node_head", "gp", {"lengthscale": 0.1}, 0.0),
    "phi GP(0.4) σ": ("node_head", "gp", {"lengthscale": 0.4}, 0.0),
    "descriptors GP(1) σ": ("descriptors", "gp", {"lengthscale": 1.0}, 0.0),
    "descriptors GP(1) σ+0.1μ": ("descriptors", "gp", {"lengthscale": 1.0}, 0.1),
}
TOP_SHARE = 8  # the top 1/8: what selection with factor 8 keeps at a cold temperature


def load_state(dom: Any, state: str) -> tuple[FlowModel, DesignBuffer, ExpandConfig, int]:
    """The model, buffer and config of run DIR at round R, from 'DIR@R'."""
    run_dir, sep, r = state.rpartition("@")
    if not sep or not r.isdigit():
        raise SystemExit(f"--states {state!r}: expected RUN_DIR@ROUND")
    store = RoundStore(Path(run_dir) / "state", writable=False)
    d = store.round_dir(int(r))
    if not (d / "model.safetensors").is_file():
        raise SystemExit(f"{state}: no saved round {r} in {run_dir} (rounds 0 and the last are kept)")
    cfg = replace(ExpandConfig(), **read_json(Path(run_dir) / "config.json", what="run config")["config"])
    model = FlowModel.load(dom.pretrained_model_path())
    store.load_model_weights(int(r), model.net)
    return model, DesignBuffer.load(d / "buffer.safetensors", dom.shape), cfg, int(r)


def one_state(dom: Any, state: str, n: int, seed: int) -> dict[str, Any]:
    model, buf, cfg, r = load_state(dom, state)
    g = generate(model, dom, n, generator=make_generator(derive_seed(seed, "candidates", state)),
                 steps=cfg.sampler_steps)
    valid = torch.as_tensor(g.valid)
    buffer_fps = dom.descriptors([d for d in dom.decode_safe(buf.x[buf.valid]) if d])
    valid_idx = np.flatnonzero(g.valid)
    novelty = torch.full((n,), float("nan"), dtype=torch.float64)  # of valid candidates only
    novelty[torch.as_tensor(valid_idx)] = dom.distance(dom.descriptors([g.designs[i] for i in valid_idx]),
                                                       buffer_fps).min(1).values.double()
    out: dict[str, Any] = {"state": state, "buffer_designs": len(buf), "buffer_valid": int(buf.n_valid),
                           "candidates": n, "all": _scores(valid, novelty, torch.arange(n))}
    for name, (layer, surrogate, options, mean_weight) in SIGNALS.items():
        t0 = time.perf_counter()
        sig_cfg = replace(cfg, representation_layer=layer, surrogate=surrogate, surrogate_options=options)
        fitted = fit_round_surrogate(model, buf, sig_cfg, round_=r + 1, domain=dom)
        feats = fitted.rep.features(g.x, g.mask, generator=make_generator(derive_seed(seed, "phi", state)))
        with torch.no_grad():
            reward = fitted.surrogate.reward(feats, mean_weight, torch.float64)
        top = reward.topk(n // TOP_SHARE).indices
        ok = ~torch.isnan(novelty)
        out[name] = {"spearman_novelty": _spearman(reward[ok], novelty[ok]),
                     "spearman_validity": _spearman(reward, valid.double()),
                     "top": _scores(valid, novelty, top), "seconds": time.perf_counter() - t0}
    print(f"{state}: validity {out['all']['validity']:.3f}, novelty {out['all']['novelty']:.3f} | " + " | ".join(
        f"{k}: ρ_nov {v['spearman_novelty']:+.2f} ρ_val {v['spearman_validity']:+.2f} top validity "
        f"{v['top']['validity']:.2f} novelty {v['top']['novelty']:.3f}" for k, v in out.items() if k in SIGNALS),
        flush=True)
    return out


def _scores(valid: torch.Tensor, novelty: torch.Tensor, idx: torch.Tensor) -> dict[str, float]:
    """Validity of the candidates idx, and over the valid ones among them: mean fingerprint novelty and
    the shares at Tanimoto distance ≥ 0.85 / ≥ 0.7 from every valid buffer design."""
    nov = novelty[idx][~torch.isnan(novelty[idx])]
    return {"validity": float(valid[idx].double().mean()),
            "novelty": float(nov.mean()) if nov.numel() else float("nan"),
            "new_at_0.85": float((nov >= 0.85).double().mean()) if nov.numel() else float("nan"),
            "new_at_0.7": float((nov >= 0.7).double().mean()) if nov.numel() else float("nan")}


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of a, b [N] (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a.numpy(), b.numpy()).statistic)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± sd over the states of each signal's numbers, and of all candidates."""
    out: dict[str, Any] = {"all": {k: mean_std([row["all"][k] for row in rows]) for k in rows[0]["all"]}}
    for name in SIGNALS:
        out[name] = {"spearman_novelty": mean_std([row[name]["spearman_novelty"] for row in rows]),
                     "spearman_validity": mean_std([row[name]["spearman_validity"] for row in rows]),
                     **{f"top_{k}": mean_std([row[name]["top"][k] for row in rows]) for k in rows[0]["all"]}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", nargs="+", default=DEFAULT_STATES, metavar="RUN_DIR@ROUND")
    ap.add_argument("--n", type=int, default=1024, help="candidates drawn per state")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="qm9_discrete_signal")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    dom = get_domain("qm9-discrete")
    rows = [one_state(dom, s, args.n, args.seed) for s in args.states]
    by_round: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["state"].rpartition("@")[2], []).append(row)
    fields = ("representation_layer", "surrogate", "surrogate_options", "mean_weight")
    signals = {k: dict(zip(fields, v, strict=True)) for k, v in SIGNALS.items()}
    write_result(args.name, {"settings": vars(args), "signals": signals, "top_share": 1 / TOP_SHARE,
                             "per_state": rows, "summary_by_round": {r: summarise(v) for r, v in by_round.items()}},
                 started)


if __name__ == "__main__":
    main()
