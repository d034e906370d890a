"""Fault injection: kill flowdisco runs at random points, resume them, compare with the uninterrupted run.

Every run goes through the real command line (`flowdisco pretrain|expand ... --run-dir D`, then
`--resume`). A kill is either at a named point of the work, chosen at random among the passes an
uninterrupted run makes (flowdisco.faults: sample, verify, fit, write, commit — SIGKILL from inside,
so the phase is known), or from outside after a random wall-clock delay ("timer"). Some runs are
killed a second time while resuming. Each finished run must equal the uninterrupted one: the same
final weights bit for bit, the same buffer and history (expansion), the same metrics log
(flowdisco.runs.compare_runs).

    python benchmarks/faults.py                  # 30 trials over three run kinds (~15 min, 2 cores)
    python benchmarks/faults.py --trials 6 --kinds pretrain-toy2d

Writes benchmarks/results/faults.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import write_result
from flowdisco import faults
from flowdisco.runs import compare_runs

COMMON = ["-q", "--threads", "1", "--seed", "0"]


def kinds(model: Path) -> dict[str, list[str]]:
    return {
        "pretrain-toy2d": ["pretrain", "toy2d", "--steps", "400", "--checkpoint-every", "50"],
        "expand-toy2d-actflow": ["expand", "toy2d", "--model", str(model), "--rounds", "3", "--samples-per-round",
                                 "64", "--finetune-steps", "120", "--eval-every", "3", "--set", "eval_samples=256",
                                 "--set", "eval_valid=128", "--set", "sampler_steps=40"],
        # the masked discrete flow: tilted fine-tuning with ELBO weights, shipped model
        "expand-peptides-discrete": ["expand", "peptides-discrete", "--rounds", "2", "--samples-per-round", "32",
                                     "--finetune-steps", "40", "--eval-every", "2", "--set", "eval_samples=64",
                                     "--set", "eval_valid=32", "--set", "sampler_steps=20", "--set",
                                     "warmup_valid=32", "--set", "warmup_batch=64", "--set", "finetune_batch=32",
                                     "--set", "elbo_samples=2"],
    }


def launch(args: list[str], run_dir: Path, resume: bool = False, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "flowdisco.cli", *args, *COMMON, "--run-dir", str(run_dir)]
    return subprocess.Popen([*cmd, *(["--resume"] if resume else [])], env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, what: str) -> int:
    _, err = proc.communicate(timeout=1800)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"{what} failed with exit code {proc.returncode}:\n{err[-3000:]}")
    return proc.returncode


def reference(name: str, args: list[str], root: Path) -> tuple[Path, dict[str, int], float]:
    run_dir, counts = root / f"ref-{name}", root / f"counts-{name}.json"
    t0 = time.perf_counter()
    finish(launch(args, run_dir, env={faults.COUNTS_ENV: str(counts)}), f"reference {name}")
    return run_dir, json.loads(counts.read_text()), time.perf_counter() - t0


def kill_once(args: list[str], run_dir: Path, resume: bool, phase: str, counts: dict[str, int], seconds: float,
              rng: random.Random) -> dict:
    """One kill at a random pass of ``phase`` (or a random delay for "timer"); returns what happened."""
    if phase == "timer":
        delay = rng.uniform(0.5, max(1.0, 0.9 * seconds))
        proc = launch(args, run_dir, resume)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        code = finish(proc, "timer run")
        return {"phase": "timer", "delay_s": round(delay, 2), "killed": code == -signal.SIGKILL}
    k = rng.randint(1, counts[phase])
    code = finish(launch(args, run_dir, resume, env={faults.ENV: f"{phase}:{k}"}), f"{phase}:{k} run")
    return {"phase": phase, "pass": k, "of": counts[phase], "killed": code == -signal.SIGKILL}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", nargs="+", default=None, help="run kinds (default: all)")
    ap.add_argument("--second-kill", type=float, default=0.3, help="probability of killing the resume too")
    opts = ap.parse_args()
    started = time.time()
    rng = random.Random(opts.seed)
    root = Path(tempfile.mkdtemp(prefix="flowdisco-faults-"))
    try:
        # the toy expansion starts from the reference pre-training's model
        all_kinds = kinds(root / "ref-pretrain-toy2d" / "model")
        names = opts.kinds or list(all_kinds)
        if any(n.startswith("expand-toy2d") for n in names) and "pretrain-toy2d" not in names:
            names = ["pretrain-toy2d", *names]
        refs = {}
        for name in names:
            refs[name] = reference(name, all_kinds[name], root)
            print(f"reference {name}: {refs[name][2]:.1f} s, passes {refs[name][1]}", flush=True)
        trials = []
        for i in range(opts.trials):
            name = names[i % len(names)]
            ref_dir, counts, seconds = refs[name]
            run_dir = root / f"trial-{i:03d}"
            phases = [*sorted(p for p, c in counts.items() if c > 0), "timer"]
            t0 = time.perf_counter()
            kills = [kill_once(all_kinds[name], run_dir, False, rng.choice(phases), counts, seconds, rng)]
            resumed = kills[-1]["killed"]
            try:
                if kills[-1]["killed"] and rng.random() < opts.second_kill:
                    kills.append(kill_once(all_kinds[name], run_dir, True, rng.choice(phases), counts, seconds,
                                           rng))
                if resumed:
                    finish(launch(all_kinds[name], run_dir, resume=True), "resume")
                diffs = compare_runs(ref_dir, run_dir)
            except Exception as e:  # a resume that fails is a finding, recorded, not the end of the benchmark
                diffs = [f"resume failed: {str(e)[-400:]}"]
            trials.append({"trial": i, "kind": name, "kills": kills, "resumed": resumed, "equal": not diffs,
                           "differences": diffs[:5], "seconds": round(time.perf_counter() - t0, 1)})
            print(f"trial {i:2d} {name:26s} " + " + ".join(
                f"{k['phase']}{':' + str(k['pass']) if 'pass' in k else ''}{'' if k['killed'] else ' (finished)'}"
                for k in kills) + f" → {'equal' if not diffs else 'DIFFERENT: ' + '; '.join(diffs[:2])}", flush=True)
            shutil.rmtree(run_dir, ignore_errors=True)
        all_kills = [k for t in trials for k in t["kills"] if k["killed"]]
        summary = {"trials": len(trials), "kills": len(all_kills),
                   "kills_by_phase": dict(Counter(k["phase"] for k in all_kills)),
                   "kills_by_kind": dict(Counter(t["kind"] for t in trials for k in t["kills"] if k["killed"])),
                   "resumed_runs": sum(t["resumed"] for t in trials),
                   "all_equal": all(t["equal"] for t in trials),
                   "not_equal": [t["trial"] for t in trials if not t["equal"]]}
        print(json.dumps(summary, indent=1))
        write_result("faults", {"seed": opts.seed, "summary": summary,
                                "references": {n: {"seconds": r[2], "passes": r[1], "command": all_kinds[n]}
                                               for n, r in refs.items()},
                                "trials": trials}, started)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
