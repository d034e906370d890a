"""Launched by test_distributed.py under torchrun: a tiny fit, weights written by rank 0."""

import sys

import torch

from flowdisco import FitConfig, FlowModel, dist, fit
from flowdisco.io import save_tensors

torch.set_num_threads(1)
torch.manual_seed(0)
model = FlowModel("mlp", {"shape": [2], "width": 16, "depth": 2}, (2,))
data = {"x": torch.randn(128, 2, generator=torch.Generator().manual_seed(0)),
        "weight": torch.rand(128, generator=torch.Generator().manual_seed(1))}
shards = None if sys.argv[3] == "none" else int(sys.argv[3])
fit(model, data, FitConfig(steps=15, batch_size=32, lr=1e-2, progress=False, log_every=5, grad_shards=shards))
assert dist.world_size() == int(sys.argv[2])
if dist.is_main():
    save_tensors(sys.argv[1], model.net.state_dict())
dist.barrier()  # no rank leaves while rank 0 is still writing
dist.shutdown()
