"""Crash safety: runs SIGKILLed at chosen points resume to exactly the uninterrupted result."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import flowdisco as fd
from fault_worker import run_tiny
from flowdisco import faults
from flowdisco.runs import compare_runs

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault-refs")
    fd.pretrain("toy2d", steps=200, seed=0, progress=False).save(root / "model")
    for kind in ("pretrain", "expand"):
        run_tiny(kind, str(root / "model"), str(root / kind))
    return root


def killed(kind: str, model_dir: Path, run_dir: Path, fault: str, resume: bool = False) -> bool:
    """Run the tiny run in a subprocess that kills itself at ``fault``; True if it was killed."""
    env = {**os.environ, faults.ENV: fault, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(HERE / "fault_worker.py"), kind, str(model_dir), str(run_dir)]
    proc = subprocess.run([*cmd, *(["--resume"] if resume else [])], env=env, capture_output=True, text=True,
                          timeout=300, cwd=HERE)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-2000:]
    return proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize(("kind", "fault"), [
    ("pretrain", "fit:30"),      # between checkpoints (the one at step 20 is on disk)
    ("pretrain", "write:3"),     # half-way through writing a checkpoint file
    ("expand", "sample:3"),      # round 1 drawn, not verified
    ("expand", "verify:4"),      # round 2 verified, not yet saved as pending
    ("expand", "fit:70"),        # round 2 fine-tuning, after its checkpoint at step 50
    ("expand", "write:9"),       # half-way through a state file
    ("expand", "commit:2"),      # round 1's files in place, LATEST.json still at round 0
])
def test_sigkill_then_resume_reaches_the_uninterrupted_result(references, tmp_path, kind, fault):
    run_dir = tmp_path / "run"
    assert killed(kind, references / "model", run_dir, fault), "the fault point was never reached"
    assert not list(run_dir.rglob("model/model.safetensors")) or kind == "expand"  # pretrain: no final model yet
    run_tiny(kind, str(references / "model"), str(run_dir), resume=True)
    assert compare_runs(references / kind, run_dir) == []


def test_killed_twice_in_a_row_still_resumes(references, tmp_path):
    run_dir = tmp_path / "run"
    assert killed("expand", references / "model", run_dir, "sample:2")
    assert killed("expand", references / "model", run_dir, "fit:40", resume=True)
    run_tiny("expand", str(references / "model"), str(run_dir), resume=True)
    assert compare_runs(references / "expand", run_dir) == []


def test_fault_spec_is_checked():
    os.environ[faults.ENV] = "nowhere:1"
    try:
        with pytest.raises(ValueError, match="point"):
            faults.point("fit")
    finally:
        del os.environ[faults.ENV]
