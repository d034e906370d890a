"""Every training and sampling path on a GPU (skipped where there is none; run on the lent device).

The numbers must match the CPU's within float tolerance: flowdisco draws its random numbers on the
CPU generator and moves them, so a GPU run sees the same noise, times and batches as a CPU run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import flowdisco as fd
from flowdisco.cli import main
from flowdisco.io import load_tensors

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
HERE = Path(__file__).parent
FAST = {"samples_per_round": 32, "finetune_steps": 20, "finetune_batch": 32, "sampler_steps": 10,
        "warmup_valid": 16, "warmup_batch": 32, "eval_every": 1, "eval_samples": 64, "eval_valid": 16}


def _close_weights(a, b, atol):
    for k, v in a.net.state_dict().items():
        assert torch.allclose(v.cpu(), b.net.state_dict()[k].cpu(), atol=atol), k


def test_pretrain_and_sampling_on_gpu_match_the_cpu():
    cpu = fd.pretrain("toy2d", steps=60, seed=0, progress=False)
    gpu = fd.pretrain("toy2d", steps=60, seed=0, progress=False, device="cuda")
    assert gpu.device.type == "cuda"
    _close_weights(cpu, gpu, atol=1e-4)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for solver in ("euler", "euler-maruyama"):
        a = cpu.sample(50, steps=8, solver=solver, generator=g1)
        b = gpu.sample(50, steps=8, solver=solver, generator=g2)
        assert torch.allclose(a, b.cpu(), atol=1e-3), solver


def test_actflow_on_gpu_runs_resumes_and_tracks_the_cpu(tmp_path):
    base = fd.pretrain("toy2d", steps=200, seed=0, progress=False)
    cpu = fd.expand(base, "toy2d", rounds=2, seed=1, progress=False, **FAST)
    gpu = fd.expand(base.clone().to("cuda"), "toy2d", rounds=2, seed=1, run_dir=tmp_path / "r", progress=False,
                    **FAST)
    assert gpu.model.device.type == "cuda" and len(gpu.history) == 3
    # the warm-up draws the same designs; verdicts near the boundary may differ by float rounding
    n = min(len(cpu.buffer), len(gpu.buffer))
    assert (cpu.buffer.x[:16] - gpu.buffer.x[:16].cpu()).abs().max() < 1e-3 and n > 16
    again = fd.expand(base.clone().to("cuda"), "toy2d", rounds=2, seed=1, run_dir=tmp_path / "r", resume=True,
                      progress=False, **FAST)
    assert torch.equal(again.buffer.x.cpu(), gpu.buffer.x.cpu())


def test_molecule_expansion_on_gpu():
    pytest.importorskip("rdkit")
    model = fd.pretrain("qm9", steps=400, seed=0, progress=False, batch_size=32, lr=3e-3, device="cuda",
                        network_kwargs={"dim": 32, "depth": 1, "heads": 2, "edge_dim": 8})
    run = fd.expand(model, "qm9", rounds=1, samples_per_round=16, finetune_steps=5, finetune_batch=8,
                    warmup_valid=1, warmup_batch=32, max_warmup_batches=20, sampler_steps=10, eval_every=0,
                    surrogate_options={"max_steps": 20}, progress=False)
    assert run.history[1]["n_generated"] == 16


def test_ensemble_surrogate_fits_on_the_gpu_and_keeps_its_shape():
    from flowdisco.expand.surrogates import EnsembleSurrogate

    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 2, generator=g) * 0.5
    y = (x[:, 0] > 0.25).float()
    ens = EnsembleSurrogate(max_steps=300).fit(x.cuda(), y.cuda(), seed=1)
    assert all(p.device.type == "cuda" for m in ens.members for p in m.parameters())
    near = ens.uncertainty(x[:50].cuda()).mean()
    far = ens.uncertainty((torch.rand(50, 2, generator=g) * 2 + 4).cuda()).mean()
    assert far > 3 * near  # the same contrast the CPU test asks for


def test_discrete_sequences_on_gpu():
    pytest.importorskip("modlamp")
    from flowdisco.domains.sequences import Peptides

    dom = Peptides(discrete=True)
    model = fd.pretrain(dom, steps=20, seed=0, progress=False, batch_size=16, device="cuda",
                        network_kwargs={"dim": 32, "depth": 1, "heads": 2})
    run = fd.expand(model, dom, rounds=1, samples_per_round=8, finetune_steps=3, finetune_batch=8, warmup_valid=1,
                    warmup_batch=16, max_warmup_batches=1, sampler_steps=6, eval_every=0, progress=False)
    assert run.history[1]["n_generated"] == 8


def test_dit_and_adapter_distillation_cli_on_gpu(tmp_path):
    run = tmp_path / "d"
    assert main(["dit", "train", "--config", "mp-rot-scale-gate", "--size", "micro", "--steps", "20",
                 "--run-dir", str(run), "--device", "cuda", "-q"]) == 0
    assert main(["dit", "sample", str(run), "--n-per-class", "2", "--cfg-scale", "2", "--steps", "4",
                 "--out", str(tmp_path / "g.png"), "--device", "cuda"]) == 0
    assert main(["dit", "evaluate", str(run), "--n-per-class", "3", "--steps", "4", "--device", "cuda",
                 "--json", str(tmp_path / "e.json")]) == 0
    assert "classifier_fd" in json.loads((tmp_path / "e.json").read_text())
    from flowdisco.guidance import DistillConfig, GuidanceStudent, collect_trajectories, distill
    from test_agd import micro_base

    base = micro_base().to("cuda")
    student = GuidanceStudent(base, adapter="cross-attention")
    distill(student, DistillConfig(steps=4, batch_size=8, lr=1e-2, progress=False),
            trajectories=collect_trajectories(base, per_class=1, steps=4, progress=False))
    x = student.sample(4, omega=2.0, cond=torch.arange(4, device="cuda"), steps=4)
    assert x.device.type == "cuda" and torch.isfinite(x).all()


def test_two_ranks_sharing_the_gpu_equal_one_process(tmp_path):
    """torchrun with 2 ranks on one GPU (gloo: NCCL refuses two ranks on one device) gives the same
    ActFlow run as one process on that GPU."""
    from test_expand import SHARDED

    model = fd.pretrain("toy2d", steps=200, seed=0, progress=False)
    model.save(tmp_path / "model")
    out = tmp_path / "two.safetensors"
    env = {**os.environ, "FLOWDISCO_DIST_BACKEND": "gloo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "ddp_expand_worker.py"), str(tmp_path / "model"), str(tmp_path / "run2"), str(out), "2", "cuda"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=HERE, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = load_tensors(out)
    one = fd.expand(fd.FlowModel.load(tmp_path / "model", map_location="cuda"), "toy2d", rounds=2, seed=5,
                    progress=False, **SHARDED, select_factor=2)  # as the worker: guided, with selection
    assert torch.equal(one.buffer.x.cpu(), two["buffer.x"])
    for k, v in one.model.net.state_dict().items():
        assert torch.allclose(v.cpu(), two[f"net.{k}"], atol=1e-6), k


def test_nccl_with_more_ranks_than_gpus_fails_with_one_clear_line(tmp_path):
    """Two NCCL ranks on this node's GPU(s): the CLI names the fix instead of NCCL's own error."""
    n = torch.cuda.device_count() + 1
    env = {k: v for k, v in os.environ.items() if k != "FLOWDISCO_DIST_BACKEND"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), "-m",
           "flowdisco.cli", "pretrain", "toy2d", "--steps", "5", "--device", "cuda", "-q", "--run-dir",
           str(tmp_path / "r")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    assert "FLOWDISCO_DIST_BACKEND=gloo" in proc.stderr and "NCCL needs one GPU per process" in proc.stderr
    assert not (tmp_path / "r").exists()
