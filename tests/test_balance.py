import pytest
import torch

from flowdisco.expand.balance import balance_weights, neighbour_counts


def euclid(a, b):
    return torch.cdist(a.double(), b.double())


def test_neighbour_counts_on_points_on_a_line():
    x = torch.tensor([[0.0], [0.05], [0.1], [1.0]])
    # 0 sees 0.05; 0.05 sees both; 0.1 sees 0.05; 1.0 is alone (radius 0.08)
    assert neighbour_counts(x, euclid, 0.08).tolist() == [2, 3, 2, 1]


def test_neighbour_counts_do_not_depend_on_the_block_size():
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    whole = neighbour_counts(x, euclid, 1.0, block=10_000)
    for block in (1, 7, 64):
        assert torch.equal(neighbour_counts(x, euclid, 1.0, block=block), whole)
    assert torch.equal(whole, (euclid(x, x) < 1.0).sum(1))


def test_power_one_gives_each_neighbourhood_the_same_total_weight():
    # nine copies of one design and one lone design: unbalanced, the crowd holds 90 % of the weight
    x = torch.cat([torch.zeros(9, 2), torch.tensor([[5.0, 5.0]])])
    w = balance_weights(neighbour_counts(x, euclid, 0.5), power=1.0)
    assert w.mean().item() == pytest.approx(1.0)
    assert w[:9].sum().item() == pytest.approx(w[9].item())
    counts = neighbour_counts(x, euclid, 0.5)
    half = balance_weights(counts, power=0.5)
    assert w[9] / w[0] == pytest.approx(9.0) and half[9] / half[0] == pytest.approx(3.0)
    assert torch.equal(balance_weights(counts, power=0.0), torch.ones(10, dtype=torch.float64))


def test_negative_power_is_refused():
    with pytest.raises(ValueError, match="power"):
        balance_weights(torch.ones(3, dtype=torch.long), power=-1.0)
