"""Where QM9's coverage plateau sits: in what the run finds, or in what the fine-tuned model keeps of it.

Nothing is sampled: the script reads finished run directories of ``benchmarks/molecules.py qm9`` (they
are not committed; the commands in BENCHMARKS.md make them). Per run it takes the valid designs the run
generated after warm-up (its buffer at the last round) and measures their LeaderPicker coverage at 0.85:
of all of them, and of 500 drawn at random (10 draws; the evaluation's count). Next to it, the coverage
of the final model's own 500 valid samples, as the run's last evaluation recorded it. If the buffer's
500 cover far more than the model's 500, the rounds found diversity that fine-tuning did not keep; if
about as much, the rounds did not find more.

    python benchmarks/qm9_buffer.py runs/bench-qm9-gp50-neg03 runs/bench-qm9-r18     # every run dir below them
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from common import mean_std, write_result
from expansion import evaluation_rows
from flowdisco.domains import get_domain
from flowdisco.expand.loop import found_in_rounds
from flowdisco.expand.state import RoundStore


def last_evaluation(run_dir: Path) -> dict[str, Any]:
    """The last record of metrics.jsonl that carries an evaluation."""
    evals = evaluation_rows(run_dir)
    if not evals:
        raise SystemExit(f"{run_dir}: no evaluation recorded (is the run finished?)")
    return evals[-1]


def one_run(run_dir: Path, dom: Any, draws: int, n: int) -> dict[str, Any]:
    round_, buf = RoundStore(run_dir / "state", writable=False).load_buffer(tuple(dom.shape))
    smiles = sorted(found_in_rounds(buf, dom))  # canonical SMILES, sorted so the draws do not depend on order
    desc = dom.descriptors(smiles)
    sampled = [dom.coverage(desc[random.Random(k).sample(range(len(smiles)), min(n, len(smiles)))])
               for k in range(draws)]
    final = last_evaluation(run_dir)
    return {"run": str(run_dir), "round": round_, "generated": int((buf.round > 0).sum()),
            "valid_unique": len(smiles), "buffer_coverage_all": dom.coverage(desc),
            "buffer_coverage_500": mean_std(sampled), "model_coverage_500": final["eval_coverage"],
            "model_validity": final["eval_validity"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work_dirs", nargs="+", help="molecules.py work dirs (their METHOD-sSEED run dirs are read)")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--name", default="qm9_buffer")
    args = ap.parse_args()
    started = time.time()
    dom = get_domain("qm9")
    run_dirs = sorted(d for w in args.work_dirs for d in Path(w).glob("*-s*")
                      if (d / "state" / "LATEST.json").is_file())
    if not run_dirs:
        raise SystemExit(f"no finished run directories under {', '.join(args.work_dirs)}")
    rows = []
    for d in run_dirs:
        row = one_run(d, dom, args.draws, args.n)
        rows.append(row)
        b = row["buffer_coverage_500"]
        print(f"{d}: round {row['round']}, {row['valid_unique']} valid unique designs cover "
              f"{row['buffer_coverage_all']}; 500 of them {b['mean']:.1f} ± {b['std']:.1f}; the final model's 500 "
              f"samples {row['model_coverage_500']:.0f}", flush=True)
    write_result(args.name, {"settings": vars(args), "runs": rows}, started)


if __name__ == "__main__":
    main()
