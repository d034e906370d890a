"""Adapter guidance distillation: adapters, trajectories, distillation, persistence, CLI."""

from __future__ import annotations

import pytest
import torch

from flowdisco.cli import main
from flowdisco.flow.model import FlowModel
from flowdisco.flow.solvers import time_grid
from flowdisco.guidance import (
    DistillConfig,
    GuidanceStudent,
    TrajectoryStore,
    cfg_velocity,
    collect_trajectories,
    distill,
    full_finetune_student,
)
from flowdisco.images.agd import count_evaluations
from flowdisco.io import CheckpointError
from flowdisco.seeding import seeded

KINDS = ["offset", "cross-attention"]


def micro_base(seed: int = 0, depth: int | None = None) -> FlowModel:
    kwargs = {"image_size": 8, "channels": 1, "patch": 2, "kind": "mp", "size": "micro", "num_classes": 10,
              "mods": ["scale", "shift", "gate"]}
    if depth is not None:
        kwargs["depth"] = depth
    with seeded(seed):
        model = FlowModel("dit", kwargs, (1, 8, 8), domain="digits", extra={"num_classes": 10, "label_dropout": 0.1})
    # a fresh DiT zero-initialises its output and modulation layers: fill them so v_c ≠ v_u
    with torch.no_grad(), seeded(seed + 1):
        for p in model.net.parameters():
            if not p.any():
                p.normal_(0, 0.5)
    return model.eval()  # MP layers renormalise their weights in training mode


def distill_tiny(source: str) -> GuidanceStudent:
    """A few distillation steps on a micro base (also run under torchrun by ddp_agd_worker.py)."""
    base = micro_base()
    student = GuidanceStudent(base, adapter="cross-attention")
    cfg = DistillConfig(steps=6, batch_size=8, lr=1e-2, progress=False)
    if source == "trajectories":
        distill(student, cfg, trajectories=collect_trajectories(base, per_class=1, steps=4, progress=False))
    else:
        g = torch.Generator().manual_seed(0)
        distill(student, cfg, images={"x": torch.randn(30, 1, 8, 8, generator=g), "cond": torch.arange(30) % 10})
    return student


def batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.rand(n, generator=g), torch.randint(10, (n,), generator=g)


def perturb(student: GuidanceStudent, seed: int = 3) -> None:
    with torch.no_grad(), seeded(seed):
        for p in student.adapters.parameters():
            p.add_(0.1 * torch.randn_like(p))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_initialised_adapters_reproduce_the_conditional_model(kind: str) -> None:
    base = micro_base()
    x, t, c = batch()
    v_c = base.net(x, t, cond=c)
    student = GuidanceStudent(base, adapter=kind)
    for omega in (1.0, 3.0, torch.linspace(1, 6, 6)):
        assert torch.equal(student(x, t, cond=c, omega=omega), v_c)
    perturb(student)
    assert not torch.allclose(student(x, t, cond=c, omega=3.0), v_c)
    # the base network called on its own is untouched by the attached adapters, and detach removes them
    assert torch.equal(base.net(x, t, cond=c), v_c)
    student.detach()
    assert torch.equal(base.net(x, t, cond=c), v_c)


def test_base_is_frozen_and_adapters_are_small() -> None:
    base = micro_base()
    student = GuidanceStudent(base, adapter="offset", paths=["blocks.*.attn"])
    assert student.paths == ["blocks.0.attn", "blocks.1.attn"]
    assert all(not p.requires_grad for p in base.parameters())
    report = student.parameter_report()
    assert report["trainable_parameters"] == report["adapter_parameters"] > 0
    with pytest.raises(ValueError, match="no submodule"):
        GuidanceStudent(base, paths=["blocks.*.nothing"])
    with pytest.raises(ValueError, match="unknown adapter"):
        GuidanceStudent(base, adapter="lora")


def test_cfg_at_one_is_the_conditional_model_and_per_design_scales_match() -> None:
    base = micro_base()
    x, t, c = batch()
    v_c = base.net(x, t, cond=c)
    assert torch.allclose(cfg_velocity(base.net, x, t, c, 10, torch.ones(6)), v_c, atol=1e-6)
    scales = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    per_design = cfg_velocity(base.net, x, t, c, 10, scales)
    for i, w in enumerate(scales.tolist()):
        assert torch.allclose(per_design[i], cfg_velocity(base.net, x, t, c, 10, w)[i], atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        cfg_velocity(base.net, x, t, c, 10, torch.ones(3))


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_trajectory_targets_are_the_cfg_output_at_the_recorded_states(solver: str) -> None:
    base = micro_base()
    steps = 4
    store = collect_trajectories(base, per_class=2, omega_range=(1.0, 5.0), steps=steps, solver=solver, seed=0,
                                 batch_size=7, progress=False)
    evals = steps * (2 if solver == "heun" else 1)
    assert len(store) == 20 * evals and store.info["evaluations_per_trajectory"] == evals
    assert store.omega.min() >= 1.0 and store.omega.max() <= 5.0
    again = cfg_velocity(base.net, store.x, store.t, store.cond, 10, store.omega)
    assert torch.allclose(store.target, again, atol=1e-5)
    # each trajectory keeps one class and one ω, and starts from noise at t = 0
    per = store.cond.view(20, evals)
    assert (per == per[:, :1]).all() and (store.omega.view(20, evals) == store.omega.view(20, evals)[:, :1]).all()
    assert torch.all(store.t.view(20, evals)[:, 0] == 0)
    if solver == "euler":  # consecutive states are Euler steps with the stored guided velocity
        h = float(time_grid(steps)[1])
        xs, vs = store.x.view(20, evals, -1), store.target.view(20, evals, -1)
        assert torch.allclose(xs[:, 1:], xs[:, :-1] + h * vs[:, :-1], atol=1e-5)


def test_trajectory_store_round_trip_and_corrupt_file(tmp_path) -> None:
    store = collect_trajectories(micro_base(), per_class=1, steps=3, progress=False)
    store.save(tmp_path / "traj")
    back = TrajectoryStore.load(tmp_path / "traj")
    assert all(torch.equal(getattr(back, f), getattr(store, f)) for f in ("x", "t", "cond", "omega", "target"))
    (tmp_path / "traj" / "trajectories.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        TrajectoryStore.load(tmp_path / "traj")


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_reproduces_outputs_and_mismatched_base_fails(kind: str, tmp_path) -> None:
    base = micro_base()
    student = GuidanceStudent(base, adapter=kind)
    perturb(student)
    student.save(tmp_path / "ad")
    assert not (tmp_path / "ad" / "base.safetensors").exists()  # adapters only
    other_weights = micro_base(seed=5)  # same architecture, other weights: allowed
    loaded = GuidanceStudent.load(tmp_path / "ad", base)
    x, t, c = batch()
    assert torch.equal(loaded(x, t, cond=c, omega=2.5), student(x, t, cond=c, omega=2.5))
    GuidanceStudent.load(tmp_path / "ad", other_weights)
    with pytest.raises(CheckpointError, match="another architecture"):
        GuidanceStudent.load(tmp_path / "ad", micro_base(depth=3))


def test_distillation_on_trajectories_moves_the_student_towards_cfg() -> None:
    base = micro_base()
    store = collect_trajectories(base, per_class=4, steps=5, omega_range=(2.0, 4.0), progress=False)
    student = GuidanceStudent(base, adapter="offset")

    def error() -> float:
        with torch.no_grad():
            return float((student(store.x, store.t, cond=store.cond, omega=store.omega) - store.target).pow(2).mean())

    before = error()
    wrong = TrajectoryStore(store.x[:, :, :4], store.t, store.cond, store.omega, store.target[:, :, :4])
    with pytest.raises(ValueError, match="shape"):
        distill(student, DistillConfig(steps=1, progress=False), trajectories=wrong)
    distill(student, DistillConfig(steps=150, batch_size=32, lr=1e-2, progress=False), trajectories=store)
    assert error() < 0.7 * before
    assert all(not p.requires_grad for p in base.parameters())


def test_standard_data_and_full_finetuning_keep_the_teacher_intact(tmp_path) -> None:
    base = micro_base()
    before = {k: v.clone() for k, v in base.net.state_dict().items()}
    images = {"x": torch.randn(40, 1, 8, 8), "cond": torch.arange(40) % 10}
    full = full_finetune_student(base)
    assert full.trainable_parameters() > full.base_parameters()
    distill(full, DistillConfig(steps=5, batch_size=8, progress=False), images=images, teacher=base)
    assert all(torch.equal(before[k], v) for k, v in base.net.state_dict().items())
    with pytest.raises(ValueError, match="frozen copy"):
        distill(full, DistillConfig(steps=1, progress=False), images=images)
    full.save(tmp_path / "full")
    loaded = GuidanceStudent.load(tmp_path / "full", base)
    x, t, c = batch()
    assert torch.allclose(loaded(x, t, cond=c, omega=3.0), full(x, t, cond=c, omega=3.0))
    adapters = GuidanceStudent(base, adapter="cross-attention")
    distill(adapters, DistillConfig(steps=5, batch_size=8, progress=False), images=images)
    assert all(torch.equal(before[k], v) for k, v in base.net.state_dict().items())


def test_student_sampling_costs_one_evaluation_per_step() -> None:
    base = micro_base()
    student = GuidanceStudent(base)
    labels = torch.arange(10)
    with count_evaluations(base.net) as rows:
        student.sample(10, omega=3.0, cond=labels, steps=7)
    assert rows[0] == 10 * 7
    with count_evaluations(base.net) as rows:
        base.sample(10, cond=labels, steps=7, cfg_scale=3.0)
    assert rows[0] == 2 * 10 * 7
    # the untrained student samples exactly the ω = 1 conditional model from the same noise
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.allclose(student.sample(10, omega=4.0, cond=labels, steps=5, generator=g1),
                          base.sample(10, cond=labels, steps=5, generator=g2))


def test_cli_collect_train_sample_evaluate(tmp_path) -> None:
    base_dir = micro_base().save(tmp_path / "base")
    common = ["--model", str(base_dir), "--threads", "1", "-q"]
    assert main(["agd", "collect", "--out", str(tmp_path / "traj"), "--per-class", "2", "--steps", "3", *common]) == 0
    assert main(["agd", "train", "--trajectories", str(tmp_path / "traj"), "--out", str(tmp_path / "ad"),
                 "--train-steps", "4", "--batch-size", "8", *common]) == 0
    assert main(["agd", "train", "--standard", "--adapter", "cross-attention", "--out", str(tmp_path / "ad2"),
                 "--train-steps", "4", "--batch-size", "8", *common]) == 0
    assert main(["agd", "sample", "--adapters", str(tmp_path / "ad"), "--omega", "2", "--n-per-class", "2",
                 "--steps", "3", "--out", str(tmp_path / "s.png"), *common]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["agd", "evaluate", "--adapters", str(tmp_path / "ad"), str(tmp_path / "ad2"), "--omega", "2",
                 "--n-per-class", "3", "--steps", "3", "--json", str(tmp_path / "e.json"), *common]) == 0
    import json

    metrics = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert metrics["cfg"]["2"]["nfe_per_sample"] == 6 and metrics[str(tmp_path / "ad")]["2"]["nfe_per_sample"] == 3
    # a missing trajectory directory is a clear error, not a traceback
    assert main(["agd", "train", "--trajectories", str(tmp_path / "nope"), "--out", str(tmp_path / "x"),
                 *common]) == 2
