"""Continued training of the shipped QM9 model: squared-error against cross-entropy endpoint loss.

Each arm starts from the shipped model (``flowdisco pretrain qm9 --init ...``), trains ``--steps`` more
steps at batch 512 with the power EMA (σ_rel 0.05), and is scored by the validity and uniqueness of
``--eval-samples`` designs (Euler, ``--eval-steps`` steps, default 100 as in the shipped model's evaluation;
evaluation seed 0, identical starting noise for every arm).
``base`` is the shipped model itself; ``mse`` continues with its own loss; ``ce`` switches the endpoint
loss to the cross-entropy of the class probabilities (``--net endpoint_loss=ce``).

    python benchmarks/qm9_finetune.py --arms base mse ce --steps 600 --seeds 1 2 3
    python benchmarks/qm9_finetune.py --arms mse ce --lr 1e-4 --steps 600 --seeds 1 2 3

Writes benchmarks/results/qm9_finetune.json (arms × learning rates × training seeds; merged with earlier
runs).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from common import RESULTS, command, mean_std, write_result
from flowdisco.flow.model import FlowModel
from flowdisco.pretrain import pretrain
from qm9_stages import SHIPPED, paired_validity


def run_key(r: dict) -> str:
    """The key of one arm × learning rate × seed in the JSON (the base model has no learning rate)."""
    return r["arm"] if r["arm"] == "base" else f"{r['arm']}-steps{r['steps']}-lr{r['lr']:g}-s{r['seed']}"


def score(model: FlowModel, n: int, steps: int) -> dict[str, float]:
    out = paired_validity(model, n, steps=steps)
    return {"validity": out["validity"], "uniqueness_of_valid": out["unique_valid"] / max(out["n_valid"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arms", nargs="+", default=["base", "mse", "ce"], choices=["base", "mse", "ce"])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds (batches, noise)")
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--eval-steps", type=int, default=100, help="Euler steps of the evaluation sampler")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    started = time.time()
    done: list[dict] = []
    for arm in opts.arms:
        for seed in ([0] if arm == "base" else opts.seeds):
            t0 = time.time()
            if arm == "base":
                model = FlowModel.load(SHIPPED)
            else:
                model = pretrain("qm9", steps=opts.steps, seed=seed, init=SHIPPED, lr=opts.lr, progress=False,
                                 network_kwargs={"endpoint_loss": arm}, device=opts.device).to("cpu")
            train_s = time.time() - t0
            result = {"arm": arm, "seed": seed, "steps": 0 if arm == "base" else opts.steps, "lr": opts.lr,
                      "train_seconds": train_s, **score(model, opts.eval_samples, opts.eval_steps),
                      "eval_samples": opts.eval_samples, "eval_steps": opts.eval_steps, "command": command(),
                      "threads": opts.threads}
            print(json.dumps(result), flush=True)
            done.append(result)
    # earlier runs are read back only now, so that invocations running side by side (one arm each) all land
    path = RESULTS / "qm9_finetune.json"
    earlier = json.loads(path.read_text())["runs"].values() if path.is_file() else []
    runs: dict[str, dict] = {run_key(r): r for r in [*earlier, *done]}
    groups: dict[str, list[dict]] = {}  # arm × steps × lr → its seeds' runs
    for r in runs.values():
        groups.setdefault(run_key({**r, "seed": "*"}).removesuffix("-s*"), []).append(r)
    summary = {g: {"validity": mean_std([r["validity"] for r in rows]), "seeds": sorted(r["seed"] for r in rows)}
               for g, rows in sorted(groups.items())}
    write_result("qm9_finetune", {"runs": runs, "summary": summary}, started)


if __name__ == "__main__":
    main()
