import math

import pytest
import torch

from analytic import GaussianFlow
from flowdisco.flow.solvers import NoiseSchedule, log_prob, solve_ode, solve_sde

FLOW = GaussianFlow(mu=[2.0, -1.0], sigma=0.5)


def _endpoint_error(method: str, steps: int) -> float:
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x1 = solve_ode(FLOW.velocity, x0, steps, method=method)
    return float((x1 - FLOW.exact_endpoint(x0)).abs().max())


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("heun", 2)])
def test_endpoint_error_shrinks_at_the_solver_order(method, order):
    errs = [_endpoint_error(method, k) for k in (20, 40, 80)]
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    for r in rates:
        assert abs(r - order) < 0.25, (errs, rates)
    assert errs[-1] < (0.05 if order == 1 else 1e-3)


def test_sde_with_zero_noise_is_the_euler_ode():
    x0 = torch.randn(64, 2, dtype=torch.float64)
    a = solve_ode(FLOW.velocity, x0, 50, method="euler")
    b = solve_sde(FLOW.velocity, x0, 50, NoiseSchedule("zero"))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["memoryless", "decaying"])
def test_sde_preserves_the_data_marginal(kind):
    # With the exact velocity, the SDE has the same marginals as the ODE: x1 ~ N(μ, σ²I).
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    x1 = solve_sde(FLOW.velocity, x0, 400, NoiseSchedule(kind), generator=g)
    assert torch.allclose(x1.mean(0), FLOW.mu, atol=0.03)
    assert torch.allclose(x1.std(0), torch.full((2,), FLOW.sigma, dtype=torch.float64), atol=0.03)


def test_memoryless_sde_forgets_its_noise():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(5000, 2, generator=g, dtype=torch.float64)
    x1 = solve_sde(FLOW.velocity, x0, 400, NoiseSchedule("memoryless"), generator=g)
    corr = torch.corrcoef(torch.stack([x0[:, 0], x1[:, 0]]))[0, 1]
    assert abs(float(corr)) < 0.1  # the ODE would give correlation 1


def test_guidance_control_shifts_samples_in_its_direction():
    x0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def push_right(state):  # reward r(x̂1) = x̂1[0]; control = ∇_x r through the endpoint prediction
        (grad,) = torch.autograd.grad(state.x1_hat[:, 0].sum(), state.x)
        return grad

    plain = solve_sde(FLOW.velocity, x0, 100, NoiseSchedule("zero"))
    guided = solve_sde(FLOW.velocity, x0, 100, NoiseSchedule("zero"), guidance=push_right)
    shift = (guided - plain).mean(0)
    assert shift[0] > 0.1 and abs(float(shift[1])) < 1e-6


def test_log_prob_matches_the_closed_form():
    x = FLOW.exact_endpoint(torch.randn(50, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    lp = log_prob(FLOW.velocity, x, steps=200)
    assert torch.allclose(lp, FLOW.log_prob(x), atol=2e-3)


def test_log_prob_refuses_high_dimensions():
    with pytest.raises(ValueError, match="dimensions"):
        log_prob(lambda x, t: x, torch.zeros(2, 100))
