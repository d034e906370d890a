import json

import pytest
import torch

from flowdisco import CheckpointError, FlowModel
from flowdisco.seeding import make_generator


def _model(width=16):
    torch.manual_seed(0)
    return FlowModel("mlp", {"shape": [2], "width": width, "depth": 2}, (2,), domain="toy2d")


def test_save_load_round_trip_gives_identical_samples(tmp_path):
    m = _model()
    m.save(tmp_path / "m")
    m2 = FlowModel.load(tmp_path / "m")
    a = m.sample(64, steps=10, generator=make_generator(3))
    b = m2.sample(64, steps=10, generator=make_generator(3))
    assert torch.equal(a, b)
    assert m2.domain_name == "toy2d" and m2.shape == (2,)
    # a run directory holding model/ loads too
    m.save(tmp_path / "run" / "model")
    assert torch.equal(FlowModel.load(tmp_path / "run").sample(8, steps=5, generator=make_generator(1)),
                       m.sample(8, steps=5, generator=make_generator(1)))


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"model not found: .*nothere"):
        FlowModel.load(tmp_path / "nothere")


def test_truncated_weights_name_the_file(tmp_path):
    _model().save(tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        FlowModel.load(tmp_path / "m")


def test_corrupt_weights_with_intact_size_fail_the_checksum(tmp_path):
    _model().save(tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        FlowModel.load(tmp_path / "m")


def test_corrupt_config_names_the_file(tmp_path):
    _model().save(tmp_path / "m")
    (tmp_path / "m" / "flowdisco_model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"flowdisco_model\.json"):
        FlowModel.load(tmp_path / "m")


def test_weights_of_another_architecture_are_refused(tmp_path):
    _model(width=16).save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "flowdisco_model.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["network_kwargs"]["width"] = 32
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit"):
        FlowModel.load(tmp_path / "m")


def test_checkpoint_files_contain_no_pickle(tmp_path):
    _model().save(tmp_path / "m")
    for f in (tmp_path / "m").iterdir():
        assert not f.read_bytes().startswith(b"\x80"), f  # pickle protocol marker


def test_pretrain_init_continues_a_saved_model_and_refuses_a_mismatch(tmp_path):
    """--init: 0 further steps give back the saved weights, training continues from them (the loss is
    below a fresh network's), and a model of another domain or shape-changing overrides are clear errors."""
    from flowdisco.domains import get_domain
    from flowdisco.pretrain import pretrain

    first = pretrain("toy2d", steps=150, seed=0, progress=False, run_dir=tmp_path / "first")
    same = pretrain("toy2d", steps=0, seed=3, progress=False, init=tmp_path / "first")
    for k, v in first.net.state_dict().items():
        assert torch.equal(v, same.net.state_dict()[k]), k
    more = pretrain("toy2d", steps=20, seed=1, progress=False, init=tmp_path / "first", run_dir=tmp_path / "more")
    fresh = pretrain("toy2d", steps=20, seed=1, progress=False)
    data = get_domain("toy2d").training_set()
    batch = more.training_batch({"x": data["x"][:2000]}, make_generator(7))
    with torch.no_grad():
        assert more.loss(batch) < fresh.loss(batch)
    config = json.loads((tmp_path / "more" / "config.json").read_text())
    assert config["init"]["sha256"] == json.loads((tmp_path / "first" / "model" / "flowdisco_model.json").read_text())[
        "sha256"]
    with pytest.raises(CheckpointError, match=r"differ|missing|shape"):
        pretrain("toy2d", steps=1, progress=False, init=tmp_path / "first", network_kwargs={"width": 8})
    with pytest.raises(CheckpointError, match="toy2d"):
        pretrain("qm9", steps=1, progress=False, init=tmp_path / "first")
