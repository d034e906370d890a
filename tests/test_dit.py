import json

import pytest
import torch

from flowdisco import FlowModel
from flowdisco.cli import main
from flowdisco.guidance import cfg_velocity
from flowdisco.images.dit import CONFIGS, network_kwargs
from flowdisco.nn.dit import DiT, patchify, unpatchify

G = torch.Generator().manual_seed(0)


def _trained_like(kind="mp", mods=("scale", "shift", "gate")):
    torch.manual_seed(0)
    net = DiT(kind=kind, mods=mods, size="micro")
    with torch.no_grad():  # move off the zero-output init so outputs depend on inputs
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=G))
    return net


def test_patchify_round_trip():
    x = torch.randn(2, 3, 8, 8, generator=G)
    assert torch.equal(unpatchify(patchify(x, 2), 2, 3, 8, 8), x)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_configuration_builds_and_runs(config):
    net = DiT(**network_kwargs(config, size="micro"))
    out = net(torch.randn(2, 1, 8, 8), torch.rand(2), cond=torch.tensor([1, 10]))
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()


def test_cfg_at_scale_one_is_the_conditional_model_and_is_linear():
    net = _trained_like()
    x, t, y = torch.randn(4, 1, 8, 8, generator=G), torch.rand(4, generator=G), torch.tensor([0, 3, 7, 9])
    v_c = net(x, t, cond=y)
    v_u = net(x, t, cond=torch.full_like(y, 10))
    assert torch.allclose(cfg_velocity(net, x, t, y, 10, 1.0), v_c)
    assert torch.allclose(cfg_velocity(net, x, t, y, 10, 3.0), v_u + 3.0 * (v_c - v_u), atol=1e-5)


def test_label_dropout_replaces_labels_with_the_null_class():
    m = FlowModel("dit", {"size": "micro", "num_classes": 10}, (1, 8, 8),
                  extra={"num_classes": 10, "label_dropout": 0.5})
    batch = m.training_batch({"x": torch.zeros(2000, 1, 8, 8), "cond": torch.zeros(2000, dtype=torch.long)}, G)
    frac_null = float((batch["cond"] == 10).float().mean())
    assert 0.45 < frac_null < 0.55


def test_dit_train_sample_evaluate_cli(tmp_path):
    run = tmp_path / "d"
    assert main(["dit", "train", "--config", "mp-rot-scale-gate", "--size", "micro", "--steps", "30",
                 "--run-dir", str(run), "--threads", "1", "-q"]) == 0
    rec = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rec[-1]["activation_rms"]) == 2 and len(rec[-1]["weight_norm"]) == 2
    assert (run / "samples.png").is_file()
    assert main(["dit", "sample", str(run), "--n-per-class", "2", "--cfg-scale", "2", "--steps", "4",
                 "--out", str(tmp_path / "g.png"), "--threads", "1"]) == 0
    assert (tmp_path / "g.png").is_file() and (tmp_path / "g.safetensors").is_file()
    assert main(["dit", "evaluate", str(run), "--n-per-class", "3", "--steps", "4", "--json",
                 str(tmp_path / "e.json"), "--threads", "1"]) == 0
    stats = json.loads((tmp_path / "e.json").read_text())
    assert {"classifier_fd", "kid", "class_accuracy", "heldout_loss_t0.5"} <= set(stats)


def test_shipped_classifier_is_accurate_on_held_out_digits():
    from flowdisco.domains.digits import load_digits_split
    from flowdisco.images.classifier import load_classifier

    clf, info = load_classifier()
    _, _, xte, yte = load_digits_split()
    acc = float((clf(xte).argmax(1) == yte).float().mean())
    assert acc == pytest.approx(info["held_out_accuracy"], abs=1e-6)
    assert acc > 0.95


def test_dit_posthoc_ema_from_snapshots(tmp_path, capsys):
    run = tmp_path / "d"
    assert main(["dit", "train", "--config", "mp-rot", "--size", "micro", "--steps", "20", "--ema-snapshot-every",
                 "10", "--run-dir", str(run), "--threads", "1", "-q"]) == 0
    snaps = sorted((run / "checkpoints" / "ema_snapshots").glob("*.safetensors"))
    assert [s.name for s in snaps] == ["00000010-0.05.safetensors", "00000010-0.1.safetensors",
                                       "00000020-0.05.safetensors", "00000020-0.1.safetensors"]
    assert main(["dit", "posthoc", str(run), "--sigma-rel", "0.1", "--threads", "1"]) == 0
    rebuilt = FlowModel.load(run / "model-posthoc-0.1")
    from flowdisco.io import load_tensors

    direct = load_tensors(snaps[-1])  # σ_rel 0.1 at the last step is a stored snapshot: exact
    for k, v in direct.items():
        assert torch.allclose(rebuilt.net.state_dict()[k], v, atol=1e-5), k
    assert main(["dit", "posthoc", str(tmp_path), "--sigma-rel", "0.1"]) == 2
    assert "no EMA snapshots" in capsys.readouterr().err
