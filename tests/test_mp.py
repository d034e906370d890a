import math

import pytest
import torch

from flowdisco.nn.dit import DiT
from flowdisco.nn.ema import PowerEMA
from flowdisco.nn.modulation import MPModulation, modulate, rotate
from flowdisco.nn.mp import MPLinear, mp_silu, mp_sum, normalize, sincos_2d

G = torch.Generator().manual_seed(0)


def rms(x):
    return float(x.detach().pow(2).mean().sqrt())


def test_rotation_preserves_every_token_norm_for_random_angles():
    x = torch.randn(4, 7, 32, generator=G)
    theta = torch.randn(4, 16, generator=G) * 10
    y = rotate(x, theta)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert not torch.allclose(y, x)
    assert torch.allclose(rotate(x, torch.zeros(4, 16)), x)


def test_every_modulation_is_the_identity_at_init():
    mod = MPModulation(16, 32, ("scale", "shift", "rotation", "gate"))
    x = torch.randn(3, 5, 32, generator=G)
    s = mod(torch.randn(3, 16, generator=G))
    assert set(s) == {"scale0", "shift0", "gate0", "scale1", "shift1", "gate1", "rotation0", "rotation1"}
    assert torch.equal(modulate(x, s, 0), x) and torch.equal(modulate(x, s, 1), x)
    assert s["rotation0"].shape == (3, 16)


def test_mp_linear_gives_unit_rms_on_unit_variance_input():
    lin = MPLinear(256, 512)
    x = torch.randn(4096, 256, generator=G)
    assert rms(lin(x)) == pytest.approx(1.0, abs=0.03)


def test_stored_weight_rows_stay_normalised_after_an_optimizer_step():
    lin = MPLinear(64, 32)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        lin(torch.randn(16, 64, generator=G)).pow(2).sum().backward()
        opt.step()
    lin(torch.randn(1, 64))  # the training-mode forward renormalises the stored weight
    row_norms = lin.weight.norm(dim=1)
    assert torch.allclose(row_norms, torch.full_like(row_norms, math.sqrt(64)), rtol=1e-3)


def test_mp_silu_and_mp_sum_preserve_unit_magnitude():
    a = torch.randn(200000, generator=G)
    b = torch.randn(200000, generator=G)
    assert rms(mp_silu(a)) == pytest.approx(1.0, abs=0.01)
    for t in (0.3, 0.5, 0.8):
        assert rms(mp_sum(a, b, t)) == pytest.approx(1.0, abs=0.01)


def test_normalize_and_positions_are_unit_rms():
    assert torch.allclose(normalize(torch.randn(5, 10, generator=G)).pow(2).mean(1), torch.ones(5), atol=1e-3)
    pos = sincos_2d(4, 4, 64)
    assert torch.allclose(pos.pow(2).mean(1), torch.ones(16), atol=1e-3)


def test_ema_against_a_hand_computed_sequence():
    net = torch.nn.Linear(1, 1, bias=False)
    ema = PowerEMA(net, sigma_rel=0.1)
    values = [1.0, 3.0, -2.0, 5.0]
    expected = 0.0
    for k, v in enumerate(values, start=1):
        with torch.no_grad():
            net.weight.fill_(v)
        ema.update(net)
        beta = (1 - 1 / k) ** (ema.gamma + 1)
        expected = beta * expected + (1 - beta) * v
        assert float(ema.net.weight) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind", ["mp", "baseline"])
def test_dit_outputs_zero_at_init(kind):
    net = DiT(image_size=8, channels=1, patch=2, kind=kind, size="micro", num_classes=10)
    x = torch.randn(3, 1, 8, 8, generator=G)
    out = net(x, torch.rand(3), cond=torch.tensor([0, 5, 10]))
    assert out.shape == (3, 1, 8, 8)
    assert torch.equal(out, torch.zeros_like(out))


def test_mp_block_keeps_activations_near_unit_rms_after_training_like_perturbation():
    net = DiT(kind="mp", size="micro", mods=("scale", "rotation", "gate"))
    with torch.no_grad():  # switch the modulations on (their gains start at 0)
        for name, p in net.named_parameters():
            if name.endswith("gain"):
                p.fill_(0.5)
    acts = []
    hooks = [b.register_forward_hook(lambda m, i, o: acts.append(rms(o))) for b in net.blocks]
    net(torch.randn(64, 1, 8, 8, generator=G), torch.rand(64), cond=torch.randint(0, 10, (64,)))
    for h in hooks:
        h.remove()
    assert all(0.5 < a < 2.0 for a in acts), acts


def test_rotation_saves_parameters_over_shift():
    shift = DiT(kind="mp", size="tiny", mods=("scale", "shift", "gate"))
    rot = DiT(kind="mp", size="tiny", mods=("scale", "rotation", "gate"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    depth, dim = 4, 64
    # per block 2 shift nets (D² each) become 2 rotation nets (D·D/2 each); the final layer's shift
    # (D²) becomes a rotation (D²/2): exactly (depth + 1/2)·D² fewer weights
    assert count(shift) - count(rot) == depth * dim * dim + dim * dim // 2


def test_posthoc_ema_returns_a_stored_snapshot_exactly():
    from flowdisco.nn.ema import posthoc_coefficients

    x = posthoc_coefficients([100, 200, 100, 200], [0.05, 0.05, 0.10, 0.10], 200, 0.10)
    assert x == pytest.approx([0, 0, 0, 1], abs=1e-6)


def test_posthoc_ema_reconstructs_an_unseen_sigma_rel():
    from flowdisco.nn.ema import posthoc_coefficients, posthoc_reconstruct

    g = torch.Generator().manual_seed(0)
    walk = torch.cumsum(torch.randn(2000, generator=g), 0) + 5 * torch.sin(torch.linspace(0, 6, 2000))
    net = torch.nn.Linear(1, 1, bias=False)
    emas = {s: PowerEMA(net, s) for s in (0.05, 0.08, 0.15)}
    snaps, steps, sigmas = [], [], []
    for k, v in enumerate(walk.tolist(), start=1):
        with torch.no_grad():
            net.weight.fill_(v)
        for e in emas.values():
            e.update(net)
        if k % 100 == 0:
            for s in (0.05, 0.15):  # 0.08 is never stored
                snaps.append({k_: v_.clone() for k_, v_ in emas[s].net.state_dict().items()})
                steps.append(k)
                sigmas.append(s)
    x = posthoc_coefficients(steps, sigmas, 2000, 0.08)
    rebuilt = float(posthoc_reconstruct(snaps, x)["weight"])
    truth = float(emas[0.08].net.weight)
    spread = float(walk[-600:].std())
    assert abs(rebuilt - truth) < 0.05 * spread, (rebuilt, truth, spread)


def test_forced_normalisation_happens_once_per_step_inside_fit_pieces():
    """Within normalisation_once the weights are normalised once, then left alone by every forward."""
    from flowdisco.nn.mp import MPLinear, normalisation_once

    torch.manual_seed(0)
    layer = MPLinear(4, 3).train()
    with torch.no_grad():
        layer.weight.mul_(7.0)
    with normalisation_once(layer):
        once = layer.weight.detach().clone()
        assert torch.allclose(once.norm(dim=1), torch.full((3,), 2.0), atol=1e-3)  # ‖row‖ = √fan_in
        for _ in range(3):
            layer(torch.randn(2, 4))
            assert torch.equal(layer.weight, once)
    layer(torch.randn(2, 4))  # outside: forced normalisation in every training forward, as before
