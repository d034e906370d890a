"""A tiny pre-training or expansion run in its own process, for kill-and-resume tests.

argv: pretrain|expand MODEL_DIR RUN_DIR [--resume]. test_faults.py sets FLOWDISCO_FAULT to have it
SIGKILL itself at a chosen point; the settings are those of ``run_tiny`` (shared with the test)."""

import sys

import torch

import flowdisco as fd
from test_expand import FAST

PRETRAIN = {"steps": 60, "seed": 0, "checkpoint_every": 20, "batch_size": 64}
EXPAND = {**FAST, "rounds": 2, "seed": 3, "eval_every": 2, "eval_samples": 64, "eval_valid": 32}


def run_tiny(kind: str, model_dir: str, run_dir: str, resume: bool = False) -> None:
    torch.set_num_threads(1)
    if kind == "pretrain":
        fd.pretrain("toy2d", run_dir=run_dir, resume=resume, progress=False, **PRETRAIN)
    else:
        fd.expand(model_dir, "toy2d", run_dir=run_dir, resume=resume, progress=False, **EXPAND)


if __name__ == "__main__":
    run_tiny(sys.argv[1], sys.argv[2], sys.argv[3], resume="--resume" in sys.argv)
