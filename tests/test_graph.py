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
