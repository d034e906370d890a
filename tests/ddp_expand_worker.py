"""Launched by test_distributed.py under torchrun: a tiny ActFlow run on the toy, shared sampling
(guided, each round's designs chosen by uncertainty selection from twice as many candidates).

argv: model_dir run_dir out.safetensors world_size [device]"""

import os
import sys

import torch

import flowdisco as fd
from flowdisco import dist
from flowdisco.io import save_tensors
from test_expand import SHARDED

torch.set_num_threads(1)
model_dir, run_dir, out, world = sys.argv[1:5]
device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
model = model_dir
if device == "cuda":  # the ranks share the GPU(s)
    gpu = int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count()
    model = fd.FlowModel.load(model_dir, map_location=f"cuda:{gpu}")
run = fd.expand(model, "toy2d", rounds=2, seed=5, run_dir=run_dir, progress=False,
                **SHARDED, select_factor=2)
assert dist.world_size() == int(world)
if dist.is_main():
    save_tensors(out, {**{f"net.{k}": v.cpu() for k, v in run.model.net.state_dict().items()},
                       "buffer.x": run.buffer.x.cpu(), "buffer.valid": run.buffer.valid.cpu().to(torch.uint8),
                       "eval.coverage": torch.tensor(run.history[-1]["eval"]["coverage"]),
                       "eval.validity": torch.tensor(run.history[-1]["eval"]["validity"]),
                       "select_reward_kept": torch.tensor([h["select_reward_kept"] for h in run.history[1:]],
                                                          dtype=torch.float64)})
dist.barrier()
dist.shutdown()
