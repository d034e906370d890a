import torch

from flowdisco.flow.path import LinearGaussianPath, flow_matching_loss, masked_mse


def test_interpolation_and_target_match_hand_values():
    path = LinearGaussianPath()
    x0 = torch.tensor([[1.0, -2.0]])
    x1 = torch.tensor([[3.0, 4.0]])
    s = path.interpolate(x0, x1, torch.tensor([0.25]))
    # x_t = 0.25·x1 + 0.75·x0
    assert torch.allclose(s.x_t, torch.tensor([[0.25 * 3 + 0.75 * 1, 0.25 * 4 + 0.75 * -2]]))
    assert torch.allclose(s.u_t, torch.tensor([[2.0, 6.0]]))


def test_endpoint_noise_and_score_of_the_exact_velocity():
    path = LinearGaussianPath()
    x0 = torch.randn(5, 3)
    x1 = torch.randn(5, 3)
    t = torch.rand(5) * 0.9
    s = path.interpolate(x0, x1, t)
    # with the true conditional velocity the predictions recover both ends exactly
    assert torch.allclose(path.endpoint(s.x_t, t, s.u_t), x1, atol=1e-6)
    assert torch.allclose(path.noise_prediction(s.x_t, t, s.u_t), x0, atol=1e-6)
    assert torch.allclose(path.score(s.x_t, t, s.u_t), -x0 / (1 - t[:, None]), atol=1e-5)


def test_loss_hand_computed():
    path = LinearGaussianPath()
    x0 = torch.zeros(2, 2)
    x1 = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    s = path.interpolate(x0, x1, torch.tensor([0.5, 0.5]))
    v = torch.zeros(2, 2)
    # per-sample mean of squared errors: (1+1)/2 = 1 and (4+0)/2 = 2 → mean 1.5
    assert torch.isclose(flow_matching_loss(v, s), torch.tensor(1.5))
    # weights [1, 3] → (1·1 + 3·2)/4 = 1.75
    assert torch.isclose(flow_matching_loss(v, s, weights=torch.tensor([1.0, 3.0])), torch.tensor(1.75))


def test_masked_loss_ignores_padding_and_averages_per_design():
    pred = torch.zeros(2, 3, 1)
    target = torch.tensor([[[1.0], [1.0], [100.0]], [[2.0], [2.0], [2.0]]])
    mask = torch.tensor([[[1.0], [1.0], [0.0]], [[1.0], [1.0], [1.0]]])
    # design 0: mean over 2 real entries = 1; design 1: 4 → 2.5; the padded 100 never counts
    assert torch.isclose(masked_mse(pred, target, mask), torch.tensor(2.5))


def test_noise_respects_mask():
    path = LinearGaussianPath()
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    x0 = path.sample_noise((2, 2), generator=torch.Generator().manual_seed(0), mask=mask)
    assert x0[0, 1] == 0


def test_seeded_draws_are_made_on_the_generator_and_keep_the_cpu_stream():
    """seeding.rand/randn draw on the generator's device and move the result: the CPU stream is that of
    torch.rand/randn (so GPU runs see the CPU's numbers; test_cuda.py checks the GPU side)."""
    from flowdisco.seeding import rand, randn

    a, b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(rand((3, 2), a), torch.rand((3, 2), generator=b))
    assert torch.equal(randn(5, a, "cpu"), torch.randn(5, generator=b))
    assert rand(4, None, "meta").device.type == "meta"
