"""Record a finished pre-training run (e.g. a model that ships) in benchmarks/results/NAME.json.

Copies what the run directory says about itself: the exact command and machine of its provenance,
the training settings, the network, how it stopped (step count or time limit, seconds), the loss
every log interval, and the saved model's SHA-256 — so a shipped file can be traced to its run after
`runs/` is gone. ``--validity`` names where the model's measured quality is (a result file and the
number), as text: this script measures nothing.

    python benchmarks/run_record.py runs/cpu-qm9-discrete-2k qm9_discrete_pretrain_cpu \\
        --what "the shipped qm9-discrete model" --validity "qm9_families.json: 0.739 ± 0.031"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import RESULTS, training_record
from flowdisco.io import atomic_write_json, read_json


def run_record(run_dir: Path, name: str, what: str, validity: str | None) -> dict:
    """The record of ``run_dir`` (a `flowdisco pretrain` run directory) as a dict."""
    rec = training_record(str(run_dir))
    cfg = rec.pop("config", None) if rec else None
    if cfg is None or cfg.get("kind") != "pretrain":
        raise SystemExit(f"{run_dir} is not a finished pre-training run (config.json and metrics.jsonl)")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if r.get("phase") == "pretrain" and "loss" in r]
    model_file = read_json(run_dir / "model" / "flowdisco_model.json", "model file")
    prov = dict(cfg.get("provenance", {}))
    prov["command"] = prov.get("command", "").replace("cli.py ", "flowdisco ", 1)
    return {"benchmark": name, "what": f"{what}: its pre-training run's config and loss curve, copied from {run_dir}",
            "command": prov["command"], "provenance": prov, "fit": cfg.get("fit"), "init": cfg.get("init"),
            "network": cfg.get("network"), "network_kwargs": cfg.get("network_kwargs"), "seed": cfg.get("seed"),
            "stopped": rec, "loss_every_log": [[r["step"], r["loss"]] for r in steps],
            "model_sha256": model_file.get("sha256"), "validity": validity}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("name", help="result name: benchmarks/results/NAME.json")
    ap.add_argument("--what", required=True, help="what the run made (e.g. 'the shipped qm9-discrete model')")
    ap.add_argument("--validity", default=None, help="where the model's measured validity is, as text")
    args = ap.parse_args()
    if not (args.run_dir / "config.json").is_file():
        raise SystemExit(f"{args.run_dir} is not a run directory (no config.json)")
    path = RESULTS / f"{args.name}.json"
    atomic_write_json(path, run_record(args.run_dir, args.name, args.what, args.validity))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
