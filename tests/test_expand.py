import json

import numpy as np
import pytest
import torch

import flowdisco as fd
from flowdisco.domains.toy2d import Toy2D
from flowdisco.expand import METHODS
from flowdisco.expand import loop as loop_module
from flowdisco.flow.fit import fit as real_fit

FAST = {"samples_per_round": 32, "finetune_steps": 60, "finetune_batch": 64, "sampler_steps": 20,
        "warmup_valid": 32, "warmup_batch": 64, "eval_every": 0}
# FAST, cut into pieces that 1 or 2 processes share: sampling chunks and gradient pieces
SHARDED = {**FAST, "sample_chunk": 16, "grad_shards": 2, "eval_every": 2, "eval_samples": 64, "eval_valid": 32}


@pytest.fixture(scope="module")
def pretrained():
    return fd.pretrain("toy2d", steps=300, seed=0, progress=False)


@pytest.fixture
def fit_inputs(monkeypatch):
    """The training data of every fine-tuning call of the expansion loop, in call order (fit itself runs)."""
    seen = []

    def spy(model, data, *args, **kwargs):
        seen.append(data)
        return real_fit(model, data, *args, **kwargs)

    monkeypatch.setattr(loop_module, "fit", spy)
    return seen


def _same_run(a, b):
    for k, v in a.model.net.state_dict().items():
        assert torch.equal(v, b.model.net.state_dict()[k]), k
    assert torch.equal(a.buffer.x, b.buffer.x) and torch.equal(a.buffer.valid, b.buffer.valid)
    strip = [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in a.history]
    strip_b = [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in b.history]
    assert strip == strip_b


def test_two_round_expand_runs_and_writes_every_file(pretrained, tmp_path):
    before = {k: v.clone() for k, v in pretrained.net.state_dict().items()}
    run = fd.expand(pretrained, "toy2d", rounds=2, seed=0, run_dir=tmp_path / "r", progress=False,
                    **{**FAST, "eval_every": 2, "eval_samples": 200, "eval_valid": 50})
    d = tmp_path / "r"
    for f in ("config.json", "metrics.jsonl", "state/LATEST.json", "state/round-00002/model.safetensors",
              "state/round-00002/buffer.safetensors", "state/round-00002/history.json",
              "state/round-00002/surrogate_inputs.safetensors",
              "state/reference.safetensors", "frames/round-00000.png", "frames/round-00002.png",
              "frames/round-00002.safetensors", "plots/generable_coverage.png", "plots/validity.png"):
        assert (d / f).is_file(), f
    lines = [json.loads(s) for s in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [0, 1, 2]
    assert 0 < lines[2]["eval_generable_coverage"] <= 1 and "eval_frechet_to_reference" in lines[2]
    # each evaluation says why its invalid samples failed (the toy names no reason: all generic)
    for r in (0, 2):
        assert sum(lines[r]["rejections"].values()) == round(200 * (1 - lines[r]["eval_validity"]))
        assert set(lines[r]["rejections"]) <= {"rejected by the verifier"}
    assert "rejections" not in lines[1]  # not evaluated
    assert len(run.buffer) == lines[2]["buffer_size"] and run.buffer.n_valid >= 32
    assert not list(d.glob("state/pending-*"))  # committed rounds leave no pending work behind
    # what the rounds found: the warm-up's designs are not counted; continuous designs are all distinct
    found = run.discovered("toy2d")
    in_rounds = run.buffer.round > 0
    assert found["generated"] == 2 * FAST["samples_per_round"] == int(in_rounds.sum())
    assert found["valid_unique"] == int((run.buffer.valid & in_rounds).sum()) > 0
    assert found["new_valid_unique"] <= found["valid_unique"] and 0 < found["coverage"] <= found["valid_unique"]
    capped = run.discovered("toy2d", max_coverage_designs=5)
    assert capped["coverage_designs"] == 5 and 0 < capped["coverage"] <= 5
    assert capped["valid_unique"] == found["valid_unique"]
    # the caller's model is left untouched; the run's model has moved
    assert all(torch.equal(v, pretrained.net.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, run.model.net.state_dict()[k]) for k, v in before.items())
    # the buffer alone reads back as committed, and a changed file is refused, not read
    from flowdisco.expand.state import RoundStore
    from flowdisco.io import CheckpointError

    store = RoundStore(d / "state", writable=False)
    r, buf = store.load_buffer(run.buffer.shape)
    assert r == 2 and torch.equal(buf.x, run.buffer.x) and torch.equal(buf.round, run.buffer.round)
    path = d / "state/round-00002/buffer.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        store.load_buffer(run.buffer.shape)


class Killed(BaseException):  # not an Exception: passes through the verifier's error handling
    pass


class KillingToy(Toy2D):
    def __init__(self, kill_at_call):
        super().__init__()
        self.calls, self.kill_at_call = 0, kill_at_call

    def verify(self, designs):
        self.calls += 1
        if self.calls == self.kill_at_call:
            raise Killed
        return super().verify(designs)


@pytest.mark.parametrize("phase", ["sampling", "finetune-start", "finetune-mid", "finetune-start, selecting"])
def test_killed_run_resumes_to_the_uninterrupted_result(pretrained, tmp_path, monkeypatch, phase):
    # selecting: the round's sampling record (selection statistics) must come back from its pending samples
    options = {**FAST, "select_factor": 4} if phase.endswith("selecting") else FAST
    reference = fd.expand(pretrained, "toy2d", rounds=2, seed=3, progress=False, **options)
    d = tmp_path / "r"
    if phase == "sampling":
        dom = KillingToy(kill_at_call=3)  # warm-up: 1 batch call, round 1: 1, round 2: killed
        with pytest.raises(Killed):
            fd.expand(pretrained, dom, rounds=2, seed=3, run_dir=d, progress=False, **FAST)
    else:
        def killing_fit(model, data, config, **kw):
            if config.desc == "round 2 update":
                if phase.startswith("finetune-start"):
                    raise Killed
                def on_log(rec):
                    if rec["step"] > 50:  # after the checkpoint at step 50
                        raise Killed
                kw["on_log"] = on_log
            return real_fit(model, data, config, **kw)

        monkeypatch.setattr(loop_module, "fit", killing_fit)
        with pytest.raises(Killed):
            fd.expand(pretrained, "toy2d", rounds=2, seed=3, run_dir=d, progress=False, **options)
        monkeypatch.setattr(loop_module, "fit", real_fit)
        assert (d / "state" / "pending-00002" / "samples.json").is_file()
    assert json.loads((d / "state" / "LATEST.json").read_text())["round"] == 1
    resumed = fd.expand(pretrained, "toy2d", rounds=2, seed=3, run_dir=d, resume=True, progress=False, **options)
    _same_run(reference, resumed)
    if "select_factor" in options:
        assert resumed.history[2]["select_factor"] == 4


def test_resume_refuses_other_settings(pretrained, tmp_path):
    d = tmp_path / "r"
    fd.expand(pretrained, "toy2d", rounds=1, seed=0, run_dir=d, progress=False, **FAST)
    with pytest.raises(fd.runs.RunDirError, match="configuration differs"):
        fd.expand(pretrained, "toy2d", rounds=1, seed=0, run_dir=d, resume=True, progress=False,
                  **{**FAST, "samples_per_round": 16})


def test_options_added_later_and_off_by_default_do_not_block_resume():
    from flowdisco.runs import config_differences

    stored = {"kind": "expand", "config": {"rounds": 2, "tilt_alpha": 0.005}}
    assert config_differences(stored, {**stored, "config": {**stored["config"], "new_option": None}}) == []
    assert config_differences(stored, {**stored, "config": {**stored["config"], "new_option": 1.0}}) == [
        ("config.new_option", None, 1.0)]
    assert config_differences(stored, {**stored, "config": {"rounds": 3, "tilt_alpha": 0.005}}) == [
        ("config.rounds", 2, 3)]
    assert config_differences({**stored, "gone": 1}, stored) == [("gone", 1, None)]


class FlakyToy(Toy2D):
    """A verifier that crashes on every design in the left half-plane."""

    def verify(self, designs):
        out = []
        for x, y in designs:
            if x < 0:
                raise RuntimeError("simulated verifier crash")
            out.append(bool(super().verify([(x, y)])[0]))
        return out


def test_a_verifier_that_raises_does_not_stop_the_run(pretrained, caplog):
    run = fd.expand(pretrained, FlakyToy(), rounds=2, seed=0, progress=False,
                    **{**FAST, "guidance_strength": 60.0})
    assert len(run.history) == 3
    left = run.buffer.x[:, 0] < 0
    assert left.any(), "guidance should reach the left half-plane in this setting"
    assert not run.buffer.valid[left].any()  # crashed verifications count invalid
    assert "verifier raised" in caplog.text


def test_method_switches(pretrained):
    runs = {m: fd.expand(pretrained, "toy2d", method=m, rounds=1, seed=0, progress=False, **FAST)
            for m in METHODS}
    rf, rnf, act = runs["rec-f"], runs["rec-nf"], runs["actflow"]
    # same seeds and no guidance: the baselines draw the very same designs
    assert torch.equal(rf.buffer.x, rnf.buffer.x)
    # guidance changes what actflow draws in round 1 (the warm-up is shared)
    w = int((act.buffer.round == 0).sum())
    assert torch.equal(act.buffer.x[:w], rf.buffer.x[:w])
    assert not torch.equal(act.buffer.x[w:], rf.buffer.x[w:])
    # rec-nf trains on invalid designs too, so its weights differ from rec-f's when any exist
    if (~rf.buffer.valid).any():
        assert any(not torch.equal(a, b) for a, b in zip(rf.model.net.parameters(), rnf.model.net.parameters(),
                                                         strict=True))


def test_bad_settings_name_the_problem(pretrained):
    with pytest.raises(ValueError, match="unknown method 'bogus'"):
        fd.expand(pretrained, "toy2d", method="bogus", rounds=1)
    with pytest.raises(ValueError, match="unknown expand option"):
        fd.expand(pretrained, "toy2d", rounds=1, lambda_=3)
    with pytest.raises(ValueError, match="anchor_weight"):
        fd.expand(pretrained, "toy2d", rounds=1, anchor_weight=1.5)
    with pytest.raises(ValueError, match="finetune_balance must be"):
        fd.expand(pretrained, "toy2d", rounds=1, finetune_balance=-1.0)
    with pytest.raises(ValueError, match="rec-nf fine-tunes on every design"):
        fd.expand(pretrained, "toy2d", "rec-nf", rounds=1, finetune_balance=1.0)


def test_balanced_finetuning_weights_each_design_by_its_neighbourhood(pretrained, fit_inputs):
    run = fd.expand(pretrained, "toy2d", rounds=1, seed=0, progress=False, **{**FAST, "finetune_balance": 1.0})
    x = run.buffer.x[run.buffer.valid].double()
    counts = (torch.cdist(x, x) < Toy2D.coverage_threshold).sum(1).double()
    assert counts.max() > counts.min()  # some designs are crowded, some are not: the weights differ
    expected = (1 / counts) * (counts.numel() / (1 / counts).sum())
    assert torch.allclose(fit_inputs[-1]["weight"].double(), expected, rtol=1e-5)
    last = run.history[-1]
    assert last["balance_radius"] == Toy2D.coverage_threshold and last["balance_ess"] < x.shape[0]


class ForgetfulToy(Toy2D):
    """Decodes while designs are drawn; once ``forget`` is set, decoding any batch with a design right of
    x = 0 raises (a domain whose decode fails on a second call)."""

    forget = False

    def decode(self, x):
        if self.forget and bool((x.reshape(-1, 2)[:, 0] > 0).any()):
            raise RuntimeError("simulated decode failure")
        return super().decode(x)


def test_balancing_survives_designs_that_no_longer_decode(pretrained, monkeypatch, caplog):
    dom = ForgetfulToy()
    original = loop_module._Loop._balance_weights

    def forgetting(self, record):
        dom.forget = True
        try:
            return original(self, record)
        finally:
            dom.forget = False

    monkeypatch.setattr(loop_module._Loop, "_balance_weights", forgetting)
    run = fd.expand(pretrained, dom, rounds=1, seed=0, progress=False, **{**FAST, "finetune_balance": 1.0})
    assert "did not decode for balancing" in caplog.text
    assert np.isfinite(run.history[-1]["finetune_loss"]) and run.history[-1]["balance_ess"] > 0


def test_resampled_balancing_draws_designs_by_their_weights(pretrained, fit_inputs):
    """finetune_weights_as="draw": the balancing weights become draw probabilities, every loss weighs 1."""
    run = fd.expand(pretrained, "toy2d", rounds=1, seed=0, progress=False,
                    **{**FAST, "finetune_balance": 1.0, "finetune_weights_as": "draw"})
    x = run.buffer.x[run.buffer.valid].double()
    counts = (torch.cdist(x, x) < Toy2D.coverage_threshold).sum(1).double()
    data = fit_inputs[-1]
    assert "weight" not in data
    assert torch.allclose(data["draw"], (1 / counts) / (1 / counts).sum())
    with pytest.raises(ValueError, match="unknown finetune_weights_as 'sample'"):
        fd.expand(pretrained, "toy2d", rounds=1, finetune_weights_as="sample")


def test_resampled_weights_keep_their_ratios_beside_anchors():
    from flowdisco.expand.loop import _resampled, _with_anchors

    dom = Toy2D()
    na = dom.training_set()["x"].shape[0]
    buffer = _resampled({"x": torch.full((4, 2), 99.0), "weight": torch.tensor([1.0, 1.0, 2.0, 4.0])})
    data = _with_anchors(buffer, dom, 0.25)
    assert torch.allclose(data["draw"][:4], torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=torch.float64) / 8 * 0.75)
    assert torch.allclose(data["draw"][4:].sum(), torch.tensor(0.25, dtype=torch.float64))
    assert torch.equal(data["weight"], torch.ones(4 + na))


def test_designs_found_in_rounds_keep_their_first_round_and_skip_undecodable_ones():
    from flowdisco.expand.buffer import DesignBuffer
    from flowdisco.expand.loop import first_found_in_rounds, found_in_rounds
    from flowdisco.generate import Generated

    dom = ForgetfulToy()
    buf = DesignBuffer((2,))
    for r, xs in enumerate([[-0.5, -0.5, -0.25, -0.25], [-0.25, -0.25, -0.125, -0.125], [-0.125, -0.125, 0.5, 0.5]]):
        x = torch.tensor(xs).reshape(2, 2)
        buf.add(Generated(x, None, dom.decode(x), np.array([True, r != 1])), r)
    dom.forget = True  # the design right of x = 0 (round 2) no longer decodes
    found = first_found_in_rounds(buf, dom)
    assert [(d, r) for d, r in found.values()] == [((-0.25, -0.25), 1), ((-0.125, -0.125), 2)]
    assert list(found_in_rounds(buf, dom).values()) == [(-0.25, -0.25), (-0.125, -0.125)]


def test_anchor_replay_and_negative_gradient_run(pretrained):
    run = fd.expand(pretrained, "toy2d", rounds=1, seed=0, progress=False,
                    **{**FAST, "anchor_weight": 0.3, "negative_scale": 0.005})
    assert np.isfinite(run.history[-1]["finetune_loss"])


def test_actflow_records_the_surrogate_uncertainty_of_its_drawn_designs(pretrained, caplog):
    # a buffer ten times the round's draws: the spread must not be read off the buffer alone. A GP narrower
    # than the toy's default, so that its buffer does not explain the new draws (σ ≈ 0 everywhere)
    settings = {**FAST, "warmup_valid": 200, "warmup_batch": 256, "samples_per_round": 16,
                "surrogate_options": {"lengthscale": 0.02}}
    run = fd.expand(pretrained, "toy2d", rounds=1, seed=0, progress=False, **settings)
    assert len(run.buffer) >= 10 * 16
    rec = run.history[1]
    q10, q50, q90 = (rec[f"surrogate_sigma_drawn_{q}"] for q in ("q10", "median", "q90"))
    assert 0 <= q10 <= q50 <= q90 <= 1  # a GP's σ
    # the GP is fitted on the buffer (σ ≈ its noise there); guidance draws designs away from it
    assert rec["surrogate_sigma_buffer_median"] < 0.1 < q50 and rec["surrogate_sigma_spread"] > 0.5
    assert "nearly flat" not in caplog.text
    assert "surrogate_sigma_spread" not in fd.expand(pretrained, "toy2d", "rec-f", rounds=1, seed=0, progress=False,
                                                     **settings).history[1]


def test_actflow_warns_when_its_surrogate_gives_guidance_no_direction(pretrained, caplog):
    # a GP far wider than the designs' spread: every design is as well explained as the buffer, σ is flat
    run = fd.expand(pretrained, "toy2d", rounds=1, seed=0, progress=False,
                    surrogate_options={"lengthscale": 1e3, "subset_radius": 0}, **FAST)
    assert run.history[1]["surrogate_sigma_spread"] < 0.1
    assert "nearly flat" in caplog.text and "surrogate=gp or a larger warmup_valid" in caplog.text


def test_a_figure_that_cannot_be_drawn_costs_the_figure_not_the_run(pretrained, tmp_path, monkeypatch, caplog):
    """A headless machine without RDKit's drawing libraries (libXrender) once failed whole runs at the end."""

    def no_drawing(self, path, designs, legends=()):
        raise ImportError("libXrender.so.1: cannot open shared object file")

    monkeypatch.setattr(Toy2D, "plot_designs", no_drawing)
    with caplog.at_level("WARNING", logger="flowdisco"):
        run = fd.expand(pretrained, "toy2d", rounds=1, seed=0, run_dir=tmp_path / "r", progress=False, **FAST)
    assert len(run.history) == 2 and (tmp_path / "r" / "state" / "round-00001" / "model.safetensors").is_file()
    assert "could not draw" in caplog.text and "libXrender" in caplog.text


def test_collect_valid_says_at_once_when_the_valid_count_is_out_of_reach(pretrained, caplog):
    from flowdisco.generate import collect_valid
    from flowdisco.seeding import make_generator

    dom = fd.domains.get_domain("toy2d")
    with caplog.at_level("WARNING", logger="flowdisco.generate"):
        raw, valid = collect_valid(pretrained, dom, 10_000, generator=make_generator(0), batch=32, max_batches=2,
                                   steps=10)
    assert len(raw) == 64 and len(valid) == int(raw.valid.sum()) < 10_000
    assert any("at most 2 are drawn" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="flowdisco.generate"):
        collect_valid(pretrained, dom, 4, generator=make_generator(0), batch=32, max_batches=2, steps=10)
    assert not caplog.records


def test_anchor_replay_draws_a_share_alpha_of_each_batch_from_the_training_set():
    """A buffer hundreds of times smaller than the training set still fills 1 − α of the rows; its own
    loss weights (tilt, balancing) survive, rescaled to mean 1 like the anchors' weight 1."""
    from flowdisco.expand.loop import _with_anchors
    from flowdisco.flow.fit import _draw_batch

    dom = Toy2D()
    na = dom.training_set()["x"].shape[0]
    nb = max(2, na // 200)
    buffer = {"x": torch.full((nb, 2), 99.0), "weight": torch.linspace(1.0, 3.0, nb)}
    data = _with_anchors(buffer, dom, 0.2)
    assert data["x"].shape[0] == nb + na
    assert torch.allclose(data["weight"][:nb].double().mean(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(data["weight"][:nb] / data["weight"][0], buffer["weight"] / buffer["weight"][0])
    assert torch.equal(data["weight"][nb:], torch.ones(na))
    model = fd.FlowModel("mlp", {"shape": [2], "width": 8, "depth": 1}, (2,))
    gen = torch.Generator().manual_seed(0)
    rows = torch.cat([_draw_batch(model, data, 500, gen, torch.device("cpu"))["x"][:, 0] for _ in range(20)])
    assert abs(float((rows == 99.0).double().mean()) - 0.8) < 0.02
    empty = _with_anchors({"x": torch.zeros(0, 2)}, dom, 0.2)  # no valid design yet: anchors only
    assert empty["x"].shape[0] == na and torch.allclose(empty["draw"].sum(), torch.tensor(0.2, dtype=torch.float64))


def test_finetuning_on_decoded_designs_needs_a_domain_that_encodes_them(pretrained):
    with pytest.raises(ValueError, match="encodes designs back; toy2d does not"):
        fd.expand(pretrained, "toy2d", rounds=1, seed=0, progress=False, **{**FAST, "finetune_on": "decoded"})
    with pytest.raises(ValueError, match="unknown finetune_on 'raw'"):
        fd.expand(pretrained, "toy2d", rounds=1, finetune_on="raw")
