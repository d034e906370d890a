"""Launched by test_distributed.py under torchrun: AGD adapter training, adapter weights written by rank 0.

argv: OUT_PATH SOURCE ("trajectories" | "standard")."""

import sys

import torch

from flowdisco import dist
from flowdisco.io import save_tensors
from test_agd import distill_tiny

torch.set_num_threads(1)
student = distill_tiny(sys.argv[2])
if dist.is_main():
    save_tensors(sys.argv[1], student.adapters.state_dict())
dist.barrier()  # no rank leaves while rank 0 is still writing
dist.shutdown()
