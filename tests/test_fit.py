import pytest
import torch

from flowdisco import FitConfig, FlowModel, fit
from flowdisco.flow.fit import combine_negative_gradient
from flowdisco.io import CheckpointError
from flowdisco.nn.ema import PowerEMA, gamma_to_sigma_rel, sigma_rel_to_gamma


def _model(seed=0):
    torch.manual_seed(seed)
    return FlowModel("mlp", {"shape": [2], "width": 32, "depth": 2}, (2,))


DATA = torch.randn(256, 2, generator=torch.Generator().manual_seed(0)) * 0.1 + torch.tensor([1.0, 0.0])


def _cfg(**kw):
    return FitConfig(**{"steps": 40, "batch_size": 32, "lr": 3e-3, "log_every": 5, "progress": False, **kw})


def test_fit_lowers_the_loss():
    m = _model()
    res = fit(m, DATA, _cfg(steps=300, log_every=50))
    assert res.losses[-1] < 0.6 * res.losses[0]


def test_same_seed_same_weights_and_different_seed_differs():
    a, b, c = _model(), _model(), _model()
    fit(a, DATA, _cfg(seed=1))
    fit(b, DATA, _cfg(seed=1))
    fit(c, DATA, _cfg(seed=2))
    sa, sb, sc = a.net.state_dict(), b.net.state_dict(), c.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


class Killed(Exception):
    pass


def test_killed_then_resumed_equals_uninterrupted(tmp_path):
    ref = _model()
    fit(ref, DATA, _cfg(ema_sigma_rel=0.1))

    m = _model()

    def kill(rec):
        if rec["step"] == 25:
            raise Killed

    with pytest.raises(Killed):
        fit(m, DATA, _cfg(ema_sigma_rel=0.1, checkpoint_every=10), state_dir=tmp_path, on_log=kill)
    resumed = _model(seed=123)  # fresh process: different init, everything comes from the checkpoint
    res = fit(resumed, DATA, _cfg(ema_sigma_rel=0.1, checkpoint_every=10), state_dir=tmp_path, resume=True)
    assert res.resumed_from == 20
    for k, v in ref.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k


def test_resume_with_other_settings_is_refused(tmp_path):
    fit(_model(), DATA, _cfg(), state_dir=tmp_path)
    with pytest.raises(CheckpointError, match="lr"):
        fit(_model(), DATA, _cfg(lr=1e-2), state_dir=tmp_path, resume=True)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="lr"):
        fit(_model(), DATA, _cfg(lr=-1))
    with pytest.raises(ValueError, match="empty"):
        fit(_model(), DATA[:0], _cfg())


def test_negative_gradient_is_rescaled_to_c_times_the_positive_norm():
    g_pos = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])]  # ‖g_pos‖ = 5
    g_neg = [torch.tensor([0.0, 10.0]), torch.tensor([[0.0]])]  # ‖g_neg‖ = 10
    out = combine_negative_gradient(g_pos, g_neg, c=0.2)
    # subtracted part = 0.2·5/10·g_neg = [0, 1]: norm 1 = c·‖g_pos‖
    assert torch.allclose(out[0], torch.tensor([3.0, -1.0]))
    assert torch.allclose(out[1], torch.tensor([[4.0]]))


def test_negatives_change_training_only_when_switched_on():
    neg = torch.randn(64, 2) * 0.1 - torch.tensor([1.0, 0.0])
    a, b, c = _model(), _model(), _model()
    fit(a, DATA, _cfg(steps=3))
    fit(b, DATA, _cfg(steps=3, negative_scale=0.0), negatives=neg)
    fit(c, DATA, _cfg(steps=3, negative_scale=0.5), negatives=neg)
    pa, pb, pc = (torch.cat([p.detach().ravel() for p in m.net.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


def test_power_ema_profile():
    for s in (0.05, 0.1, 0.2):
        assert abs(gamma_to_sigma_rel(sigma_rel_to_gamma(s)) - s) < 1e-9
    # β_1 = 0: the first update copies the weights
    net = torch.nn.Linear(2, 2)
    ema = PowerEMA(net, 0.1)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert torch.equal(ema.net.weight, net.weight)


@pytest.mark.parametrize("shards", [1, 4])
def test_sharded_batch_gradient_is_the_gradient_of_the_weighted_batch_loss(shards):
    """Σ w·ℓ / Σ w over the whole batch, however it is cut: per-piece weight sums are not renormalised."""
    from flowdisco.flow.fit import batch_gradient

    torch.manual_seed(0)
    model = FlowModel("mlp", {"shape": [2], "width": 8, "depth": 1}, (2,))
    gen = torch.Generator().manual_seed(0)
    batch = model.training_batch({"x": torch.randn(16, 2, generator=gen),
                                  "weight": torch.rand(16, generator=gen) * torch.arange(16)}, gen)
    params = list(model.net.parameters())
    expected_loss = model.loss(batch)
    expected = torch.autograd.grad(expected_loss, params)
    loss = batch_gradient(model, model.net, params, batch, shards)
    assert torch.allclose(loss, expected_loss, atol=1e-6)
    for p, g in zip(params, expected, strict=True):
        assert torch.allclose(p.grad, g, atol=1e-6)


def test_batches_draw_rows_by_the_draw_probabilities():
    from flowdisco.flow.fit import _draw_batch

    model = _model()
    data = {"x": torch.arange(4.0)[:, None].repeat(1, 2), "draw": torch.tensor([0.0, 0.1, 0.2, 0.7])}
    gen = torch.Generator().manual_seed(0)
    rows = torch.cat([_draw_batch(model, data, 500, gen, torch.device("cpu"))["x"][:, 0] for _ in range(20)])
    share = torch.bincount(rows.long(), minlength=4).double() / rows.numel()
    assert share[0] == 0  # a zero probability is never drawn
    assert torch.allclose(share, torch.tensor([0.0, 0.1, 0.2, 0.7], dtype=torch.float64), atol=0.01)


@pytest.mark.parametrize("draw", [torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]),
                                  torch.tensor([1.0, float("nan")])])
def test_bad_draw_probabilities_are_refused(draw):
    with pytest.raises(ValueError, match="'draw'"):
        fit(_model(), {"x": torch.zeros(2, 2), "draw": draw}, _cfg(steps=1))
