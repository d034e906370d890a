import pytest
import torch

from flowdisco.expand.surrogates import EnsembleSurrogate, GPSurrogate, greedy_subset, make_surrogate

NEAR = torch.tensor([[0.0, 0.0], [0.05, 0.0]])
FAR = torch.tensor([[2.0, 2.0]])


def test_gp_variance_falls_where_data_are_added_and_stays_high_far_away():
    gp = GPSurrogate(lengthscale=0.1, subset_radius=0)
    before = gp.fit(torch.tensor([[1.0, 1.0]]), None).variance(NEAR)
    after = gp.fit(torch.cat([torch.tensor([[1.0, 1.0]]), NEAR]), None).variance(NEAR)
    assert (before > 0.99).all() and (after < 1e-3).all()
    assert gp.variance(FAR).item() == pytest.approx(1.0, abs=1e-6)


def test_gp_variance_ignores_labels():
    x = torch.rand(30, 2)
    a = GPSurrogate(0.1).fit(x, torch.zeros(30)).variance(NEAR)
    b = GPSurrogate(0.1).fit(x, torch.ones(30)).variance(NEAR)
    assert torch.equal(a, b)


def test_gp_mean_interpolates_standardised_labels_and_falls_to_zero_far_away():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])  # mean 0.5, std 0.577
    gp = GPSurrogate(0.1, subset_radius=0).fit(x, y)
    assert gp.mean(x).tolist() == pytest.approx(((y - 0.5) / y.std()).tolist(), abs=1e-3)
    assert gp.mean(FAR + 3).abs().item() < 1e-6
    assert torch.equal(GPSurrogate(0.1).fit(x, None).mean(x), torch.zeros(4))
    q = torch.tensor([[0.05, 0.0]], requires_grad=True)  # near a valid (label 1) point: μ rises towards it
    gp.mean(q).sum().backward()
    assert q.grad[0, 0] < 0


def test_representative_subset_approximates_the_exact_gp():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 2, generator=g) * 0.3
    exact = GPSurrogate(0.08, subset_radius=0).fit(x)
    approx = GPSurrogate(0.08).fit(x)  # subset at radius ℓ/8
    assert approx.points.shape[0] < 0.8 * x.shape[0]
    q = torch.rand(2000, 2, generator=g) * 2 - 1
    # fewer conditioning points can only raise the variance, and by little
    diff = approx.variance(q) - exact.variance(q)
    assert diff.min() > -1e-6
    assert diff.max() < 0.1 and diff.mean() < 0.005


def test_greedy_subset_keeps_far_points_and_caps():
    x = torch.tensor([[0.0, 0.0], [0.01, 0.0], [1.0, 0.0], [2.0, 0.0]])
    assert greedy_subset(x, 0.1).tolist() == [0, 2, 3]
    assert greedy_subset(x, 0.1, max_points=2).numel() == 2


def _one_by_one_subset(x: torch.Tensor, radius: float) -> list[int]:
    """Sphere exclusion the plain way: visit the points in order, keep one farther than radius from all kept."""
    keep: list[int] = []
    for i in range(x.shape[0]):
        if not keep or bool(((x[keep] - x[i]) ** 2).sum(1).min() > radius * radius):
            keep.append(i)
    return keep


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_greedy_subset_in_blocks_equals_the_one_by_one_visit(block):
    g = torch.Generator().manual_seed(3)
    centres = torch.rand(40, 5, generator=g, dtype=torch.float64)
    x = centres[torch.randint(0, 40, (600,), generator=g)] + 0.05 * torch.randn(600, 5, generator=g,
                                                                                dtype=torch.float64)
    expected = _one_by_one_subset(x, 0.12)
    assert 40 < len(expected) < 600  # the radius matters: many points dropped, many kept
    assert greedy_subset(x, 0.12, block=block).tolist() == expected


def test_gp_kernel_is_the_rbf_of_the_pairwise_distances():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 16, generator=g, dtype=torch.float64) * 0.05
    b = torch.cat([a[:2], torch.randn(5, 16, generator=g, dtype=torch.float64) * 0.05])  # two exact repeats
    direct = torch.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * 0.1**2))
    k = GPSurrogate(0.1).kernel(a, b)
    assert torch.allclose(k, direct, rtol=0, atol=1e-12)
    assert k[0, 0] == pytest.approx(1.0, abs=1e-14) and k[1, 1] == pytest.approx(1.0, abs=1e-14)
    gp = GPSurrogate(0.1, subset_radius=0).fit(b)
    q = (a[2:5] + 0.03).requires_grad_(True)
    assert torch.autograd.gradcheck(gp.variance, (q,))  # the guidance gradient is the variance's true one


def test_gp_uncertainty_is_differentiable():
    gp = GPSurrogate(0.1).fit(NEAR)
    q = torch.tensor([[0.1, 0.1]], requires_grad=True)
    gp.uncertainty(q).sum().backward()
    assert q.grad is not None and q.grad.norm() > 0


def test_ensemble_is_uncertain_far_from_its_data_and_deterministic():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 2, generator=g) * 0.5
    y = (x[:, 0] > 0.25).float()
    ens = EnsembleSurrogate(max_steps=300).fit(x, y, seed=1)
    near = ens.uncertainty(x[:50]).mean()
    far = ens.uncertainty(torch.rand(50, 2, generator=g) * 2 + 4).mean()
    assert far > 3 * near
    again = EnsembleSurrogate(max_steps=300).fit(x, y, seed=1)
    assert torch.equal(ens.uncertainty(x[:5]), again.uncertainty(x[:5]))
    assert len(ens.members) == 5


def test_unknown_surrogate_lists_the_options():
    with pytest.raises(ValueError, match="available: gp, ensemble"):
        make_surrogate("forest")


def test_reward_is_sigma_plus_weighted_mean_in_the_asked_dtype():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    gp = GPSurrogate(lengthscale=0.7).fit(x, torch.tensor([1.0, 0.0, 1.0]))
    q = torch.tensor([[0.5, 0.5], [2.0, 2.0]])
    assert torch.equal(gp.reward(q), gp.uncertainty(q))
    expected = gp.uncertainty(q).double() + 0.3 * gp.mean(q).double()
    r = gp.reward(q, 0.3, torch.float64)
    assert r.dtype == torch.float64 and torch.equal(r, expected)
    assert float(gp.mean(q)[0]) != 0.0  # the weighted mean term really enters
