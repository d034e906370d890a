"""The molecule velocity network: symmetric bonds, masking, and the endpoint parameterisation."""

import torch

from flowdisco.flow.model import FlowModel
from flowdisco.flow.path import masked_mse
from flowdisco.nn.graph import GraphTransformer

N, A, BC = 5, 7, 4


def _inputs(b: int = 3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, N, A + N * BC, generator=g)
    bonds = x[..., A:].reshape(b, N, N, BC)
    x[..., A:] = (0.5 * (bonds + bonds.transpose(1, 2))).reshape(b, N, N * BC)  # a symmetric state
    sizes = torch.tensor([5, 3, 1])[:b]
    idx = torch.arange(N)
    real = idx[None] < sizes[:, None]
    pair = (real[:, :, None] & real[:, None, :] & (idx[:, None] != idx[None])).float()
    mask = torch.cat([real[..., None].float().expand(-1, -1, A),
                      pair[..., None].expand(-1, -1, -1, BC).reshape(b, N, N * BC)], dim=-1)
    return x * mask, mask, torch.rand(b, generator=g)


def _net(**kw):
    torch.manual_seed(0)
    net = GraphTransformer(N, A, BC, dim=32, depth=2, heads=2, **kw)
    for p in net.parameters():  # the output layers start at zero: perturb so the test sees real outputs
        p.data.add_(0.1 * torch.randn_like(p))
    return net


def test_bond_outputs_are_symmetric_and_padding_is_zero():
    x, mask, t = _inputs()
    for kw in ({}, {"output": "endpoint", "atom_groups": [4, 3]}, {"output": "endpoint", "atom_groups": [4, 3],
                                                                  "edge_dim": 8}):
        v = _net(**kw)(x, t, mask=mask)
        bonds = v[..., A:].reshape(3, N, N, BC)
        assert torch.allclose(bonds, bonds.transpose(1, 2), atol=1e-6)
        assert (v[mask == 0] == 0).all()


def test_endpoint_output_implies_one_hot_probabilities_per_group():
    x, mask, t = _inputs()
    net = _net(output="endpoint", atom_groups=[4, 3])
    v = net(x, t, mask=mask)
    x1 = x + (1 - t).view(-1, 1, 1) * v  # valid where 1 - t ≥ eps (true for these t)
    assert (t < 1 - net.endpoint_eps).all()
    probs = (x1 + 1) / 2
    real_atoms = mask[..., 0] > 0
    elem, chg = probs[..., :4][real_atoms], probs[..., 4:A][real_atoms]
    assert torch.allclose(elem.sum(-1), torch.ones(len(elem)), atol=1e-5)
    assert torch.allclose(chg.sum(-1), torch.ones(len(chg)), atol=1e-5)
    bond_mask = mask[..., A:].reshape(3, N, N, BC)[..., 0] > 0
    bonds = probs[..., A:].reshape(3, N, N, BC)[bond_mask]
    assert torch.allclose(bonds.sum(-1), torch.ones(len(bonds)), atol=1e-5) and (bonds >= 0).all()


def test_endpoint_network_is_trained_on_its_endpoint():
    x, mask, _ = _inputs()
    model = FlowModel("graph-mp", {"max_atoms": N, "atom_features": A, "bond_classes": BC, "dim": 32, "depth": 2,
                                   "heads": 2, "output": "endpoint", "atom_groups": [4, 3]}, (N, A + N * BC))
    batch = model.training_batch({"x": x.sign() * mask, "mask": mask}, torch.Generator().manual_seed(1))
    sample = model.path.interpolate(batch["x0"], batch["x"], batch["t"])
    x1_hat = model.endpoint(sample.x_t, batch["t"], mask=mask)
    expected = masked_mse(x1_hat, batch["x"], mask=mask)
    assert torch.allclose(model.loss(batch), expected, atol=1e-6)


def test_atom_order_does_not_matter():
    x, mask, t = _inputs(1)  # one molecule with all N atoms real
    perm = torch.tensor([3, 0, 4, 1, 2])
    net = _net(output="endpoint", atom_groups=[4, 3], edge_dim=8)

    def permute(z):
        atoms, bonds = z[..., :A][:, perm], z[..., A:].reshape(1, N, N, BC)[:, perm][:, :, perm]
        return torch.cat([atoms, bonds.reshape(1, N, N * BC)], dim=-1)

    assert torch.allclose(net(permute(x), t, mask=permute(mask)), permute(net(x, t, mask=mask)), atol=1e-5)


def _one_hot_data(b: int = 3):
    """±1 one-hot graphs: each real atom one element of 4 and one charge of 3, each real pair one bond
    class of 4 (symmetric), padding zero."""
    _, mask, _ = _inputs(b)
    g = torch.Generator().manual_seed(2)
    elem = torch.nn.functional.one_hot(torch.randint(0, 4, (b, N), generator=g), 4)
    chg = torch.nn.functional.one_hot(torch.randint(0, 3, (b, N), generator=g), 3)
    cls = torch.randint(0, BC, (b, N, N), generator=g)
    cls = torch.triu(cls, 1) + torch.triu(cls, 1).transpose(1, 2)
    bonds = torch.nn.functional.one_hot(cls, BC).reshape(b, N, N * BC)
    x = torch.cat([elem, chg, bonds], dim=-1).float()
    return (2 * x - 1) * mask, mask


def test_cross_entropy_endpoint_loss_at_uniform_logits_is_the_mean_log_class_count():
    """A fresh network's output layers are zero, so every group is uniform: a molecule with n real atoms
    has n·(log 4 + log 3) + n(n−1)·log 4 nats over 2n + n(n−1) groups (n = 5, 3, 1 here)."""
    import math

    x1, mask = _one_hot_data()
    model = FlowModel("graph-mp", {"max_atoms": N, "atom_features": A, "bond_classes": BC, "dim": 32, "depth": 2,
                                   "heads": 2, "output": "endpoint", "atom_groups": [4, 3],
                                   "endpoint_loss": "ce"}, (N, A + N * BC))
    batch = model.training_batch({"x": x1, "mask": mask}, torch.Generator().manual_seed(1))
    per_design, weight = model.loss_terms(batch)
    expected = [(n * (math.log(4) + math.log(3)) + n * (n - 1) * math.log(4)) / (2 * n + n * (n - 1))
                for n in (5, 3, 1)]
    assert torch.allclose(per_design, torch.tensor(expected), atol=1e-5)
    assert torch.equal(weight, torch.ones(3))


def test_cross_entropy_endpoint_loss_trains_towards_the_data_and_survives_save_load(tmp_path):
    x1, mask = _one_hot_data()
    kw = {"max_atoms": N, "atom_features": A, "bond_classes": BC, "dim": 32, "depth": 2, "heads": 2,
          "output": "endpoint", "atom_groups": [4, 3], "endpoint_loss": "ce"}
    torch.manual_seed(0)
    model = FlowModel("graph-mp", kw, (N, A + N * BC))
    batch = model.training_batch({"x": x1, "mask": mask}, torch.Generator().manual_seed(1))
    batch["t"] = torch.full((3,), 0.9)  # near the data: the classes are nearly visible
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = model.loss(batch).item()
    for _ in range(60):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    assert model.loss(batch).item() < 0.2 * first
    model.save(tmp_path / "m")
    again = FlowModel.load(tmp_path / "m")
    assert again.net.loss_target == "categorical"
    assert torch.allclose(again.loss(batch), model.loss(batch), atol=1e-6)


def test_cross_entropy_needs_the_endpoint_output():
    import pytest

    with pytest.raises(ValueError, match="needs output='endpoint'"):
        GraphTransformer(N, A, BC, dim=32, depth=1, heads=2, endpoint_loss="ce")
    with pytest.raises(ValueError, match="'mse' or 'ce'"):
        GraphTransformer(N, A, BC, dim=32, depth=1, heads=2, output="endpoint", endpoint_loss="l1")
