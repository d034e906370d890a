"""Masked discrete flow: path, loss, sampler and ELBO against hand-computed numbers, and the
reward-tilted weights of ActFlow on discrete models."""

import math

import pytest
import torch
from torch import nn

from flowdisco.expand.tilt import effective_sample_size, tilt_weights
from flowdisco.flow import DiscreteFlowModel, FlowModel, MaskedPath, denoising_cross_entropy
from flowdisco.flow.discrete import content_seeds
from flowdisco.nn.registry import register_network

P_FIXED = [0.2, 0.3, 0.5]


@register_network("test-fixed-logits")
class FixedLogits(nn.Module):
    """A denoiser that ignores its input: p(token) = P_FIXED at every position (plus one dummy weight
    so the model has parameters)."""

    def __init__(self, vocab_size: int = 3) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.register_buffer("logits", torch.log(torch.tensor(P_FIXED)))

    def forward(self, x, t, mask=None, cond=None):
        return (self.logits + 0 * self.dummy).expand(*x.shape[:2], -1).clone()


def fixed_model(length: int = 4) -> DiscreteFlowModel:
    return DiscreteFlowModel("test-fixed-logits", {}, (length,), extra={"vocab_size": 3})


def test_masked_path_keeps_a_token_with_probability_t():
    path = MaskedPath(3)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randint(3, (4000, 8), generator=g)
    for t in (0.0, 0.25, 0.8, 1.0):
        x_t = path.corrupt(x1, torch.full((4000,), t), generator=g)
        kept = (x_t == x1).float().mean().item()
        assert set(x_t.unique().tolist()) <= {0, 1, 2, 3}
        assert abs(kept - t) < 0.01
        assert bool(((x_t == x1) | (x_t == path.mask_id)).all())


def test_unmask_probability_is_h_over_one_minus_t_and_one_at_the_last_step():
    path = MaskedPath(5)
    assert path.unmask_probability(0.0, 0.25) == pytest.approx(0.25)
    assert path.unmask_probability(0.5, 0.25) == pytest.approx(0.5)
    assert path.unmask_probability(0.75, 0.25) == 1.0
    # the product of staying masked over a uniform grid reaches exactly 0 at t = 1
    stay = math.prod(1 - path.unmask_probability(k / 4, 0.25) for k in range(4))
    assert stay == 0.0


def test_denoising_cross_entropy_matches_a_hand_computation():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    x1 = torch.tensor([[0, 1, 2]])
    x_t = torch.tensor([[3, 1, 3]])  # positions 0 and 2 masked (mask id 3)
    loss = denoising_cross_entropy(logits, x1, x_t, mask_id=3)
    assert loss.item() == pytest.approx((-math.log(0.5) - math.log(1 / 3)) / 2, rel=1e-6)
    # padding excluded; per-design weights normalised over designs with a masked position
    real = torch.tensor([[True, True, False]])
    assert denoising_cross_entropy(logits, x1, x_t, 3, real=real).item() == pytest.approx(-math.log(0.5), rel=1e-6)
    two_logits, two_x1 = logits.repeat(2, 1, 1), x1.repeat(2, 1)
    two_xt = torch.tensor([[3, 1, 3], [3, 1, 2]])
    w = torch.tensor([1.0, 3.0])
    expected = (1 * (-math.log(0.5) - math.log(1 / 3)) / 2 + 3 * -math.log(0.5)) / 4
    assert denoising_cross_entropy(two_logits, two_x1, two_xt, 3, weights=w).item() == pytest.approx(expected, rel=1e-6)


def test_sampler_draws_tokens_from_the_denoiser_and_unmasks_at_the_expected_rate():
    model = fixed_model(length=6)
    masked_after_first = []

    def cb(k, t, x):
        if k == 0:
            masked_after_first.append((x[:, :4] == 3).float().mean().item())

    mask = torch.ones(3000, 6)
    mask[:, 4:] = 0  # length-4 designs
    x = model.sample(3000, steps=4, generator=torch.Generator().manual_seed(1), mask=mask, callback=cb)
    assert x.shape == (3000, 6)
    assert bool((x[:, 4:] == -1).all())  # padding stays PAD
    tokens = x[:, :4].long()
    assert set(tokens.unique().tolist()) <= {0, 1, 2}  # everything unmasked at t = 1
    freq = torch.bincount(tokens.reshape(-1), minlength=3).float() / tokens.numel()
    assert torch.allclose(freq, torch.tensor(P_FIXED), atol=0.015)
    # the first of 4 steps unmasks h/(1 − t) = 1/4 of the real positions: 3/4 stay masked
    assert masked_after_first[0] == pytest.approx(0.75, abs=0.01)


def test_elbo_equals_the_exact_log_likelihood_of_a_context_free_denoiser():
    # with p(x^i | x_t) independent of x_t, E_t[1/(1−t)·Σ_masked log p] = Σ_i log p(x^i) exactly
    model = fixed_model(length=5)
    x = torch.tensor([[0, 1, 2, 2, 1], [2, 2, 2, 2, 2]]).float()
    exact = torch.log(torch.tensor(P_FIXED))[x.long()].sum(1).double()
    est = model.elbo(x, n_mc=4000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(est, exact, rtol=0.03)


def test_discrete_model_round_trips_through_its_files(tmp_path):
    model = fixed_model()
    model.save(tmp_path / "m")
    back = FlowModel.load(tmp_path / "m")
    assert isinstance(back, DiscreteFlowModel) and back.vocab_size == 3 and back.kind == "discrete"
    with pytest.raises(ValueError, match="gradient guidance"):
        back.sample(2, steps=2, guidance=lambda state: state)


def test_tilt_weights_match_a_hand_computed_softmax():
    log_ratio = torch.tensor([0.0, math.log(2.0), 0.0])
    reward = torch.tensor([0.01, 0.0, 0.02])
    w = tilt_weights(log_ratio, reward, alpha=0.01)  # logits 1, log 2, 2
    z = math.e + 2 + math.e ** 2
    assert torch.allclose(w, torch.tensor([math.e / z, 2 / z, math.e ** 2 / z], dtype=torch.float64))
    assert effective_sample_size(torch.ones(7)) == pytest.approx(7.0)
    assert effective_sample_size(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        tilt_weights(log_ratio, reward, alpha=0.0)


def test_elbo_with_content_seeds_uses_the_same_draws_for_the_same_design():
    model = fixed_model(length=5)
    x = torch.tensor([[0, 1, 2, 2, 1], [2, 2, 2, 2, 2], [0, 1, 2, 2, 1]]).float()
    seeds = content_seeds(x, base=7)
    assert seeds[0] == seeds[2] and seeds[0] != seeds[1] and seeds[0] != content_seeds(x, base=8)[0]
    a = model.elbo(x, n_mc=3, seeds=seeds)
    b = model.elbo(x[[2, 1, 0]], n_mc=3, seeds=seeds[[2, 1, 0]])
    assert a[0] == a[2] and torch.equal(a, b[[2, 1, 0]])  # independent of batch order and position


def test_tilt_settings_are_validated():
    from flowdisco.expand.loop import ExpandConfig

    ExpandConfig(tilt_log_ratio_clip=1.0).validate()
    for bad in ({"tilt_alpha": 0.0}, {"tilt_log_ratio_clip": -1.0}, {"tilt_log_ratio_clip": float("nan")}):
        with pytest.raises(ValueError, match="tilt"):
            ExpandConfig(**bad).validate()
