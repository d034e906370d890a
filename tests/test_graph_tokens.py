"""Token graphs for the masked discrete flow on molecules: the layout and the token denoiser."""

import torch

from flowdisco.flow.discrete import PAD
from flowdisco.nn.graph import (
    NEG_LOGIT,
    GraphTokenTransformer,
    graph_token_count,
    graph_token_mask,
    onehots_to_tokens,
    tokens_to_onehots,
)

N, E, Q, BC = 5, 3, 2, 4
EQ, V = E * Q, E * Q + BC
L = graph_token_count(N)


def _tokens(sizes=(5, 3, 1), seed=0):
    """Random token graphs [B, L] with PAD at padding, and their masks [B, L]."""
    g = torch.Generator().manual_seed(seed)
    real = torch.arange(N)[None] < torch.tensor(sizes)[:, None]
    mask = graph_token_mask(real)
    atoms = torch.randint(0, EQ, (len(sizes), N), generator=g)
    bonds = torch.randint(EQ, V, (len(sizes), L - N), generator=g)
    x = torch.cat([atoms, bonds], dim=1)
    return torch.where(mask > 0, x, torch.full_like(x, PAD)), mask


def _net():
    torch.manual_seed(0)
    net = GraphTokenTransformer(N, E + Q, [E, Q], BC, dim=32, depth=2, heads=2, edge_dim=8)
    for p in net.parameters():  # the output layers start at zero: perturb so the test sees real outputs
        p.data.add_(0.1 * torch.randn_like(p))
    return net.eval()


def test_token_count_and_mask_of_a_graph():
    assert graph_token_count(9) == 9 + 36 and graph_token_count(1) == 1
    mask = graph_token_mask(torch.tensor([[True, True, True, False, False]]))
    assert mask[0, :N].tolist() == [1, 1, 1, 0, 0]
    assert int(mask[0, N:].sum()) == 3  # the pairs (0,1), (0,2), (1,2)


def test_dense_and_token_layouts_round_trip_and_masked_positions_are_zero():
    x, _mask = _tokens()
    dense = tokens_to_onehots(x, N, E, Q, BC)
    assert dense.shape == (3, N, E + Q + N * BC)
    assert torch.equal(onehots_to_tokens(dense, E, Q, BC), x)
    bonds = dense[..., E + Q:].reshape(3, N, N, BC)
    assert torch.equal(bonds, bonds.transpose(1, 2))  # written at (i, j) and (j, i)
    assert bonds[:, range(N), range(N)].abs().sum() == 0  # the diagonal stays empty
    hidden = x.clone()
    hidden[0, 2] = V  # atom 2 of graph 0 and its first pair (0, 1) become mask tokens
    hidden[0, N] = V
    d2 = tokens_to_onehots(hidden, N, E, Q, BC)
    assert d2[0, 2, : E + Q].abs().sum() == 0 and d2[0, 0, E + Q + BC: E + Q + 2 * BC].abs().sum() == 0
    assert torch.equal(d2[1:], dense[1:])


def test_token_denoiser_gives_a_distribution_over_each_positions_own_classes():
    net = _net()
    x, mask = _tokens()
    out = net(x, torch.rand(3), mask=mask)
    assert out.shape == (3, L, V)
    atoms, pairs = out[:, :N], out[:, N:]
    assert torch.allclose(atoms[..., :EQ].logsumexp(-1), torch.zeros(3, N), atol=1e-5)  # log p(element, charge)
    assert (atoms[..., EQ:] == NEG_LOGIT).all() and (pairs[..., :EQ] == NEG_LOGIT).all()
    assert (pairs[..., EQ:] > NEG_LOGIT / 2).all()


def test_token_denoiser_ignores_what_padding_holds():
    net = _net()
    x, mask = _tokens()
    t = torch.rand(3)
    other = torch.where(mask > 0, x, torch.full_like(x, V))  # padding as mask tokens instead of PAD
    a, b = net(x, t, mask=mask), net(other, t, mask=mask)
    assert torch.allclose(a[mask > 0], b[mask > 0], atol=1e-5)


def test_token_denoiser_is_equivariant_to_atom_order():
    net = _net()
    x, mask = _tokens(sizes=(5, 5))
    hidden = x.clone()
    hidden[:, [1, N + 2, N + 7]] = V  # some mask tokens, so the test covers them too
    t = torch.rand(2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    iu = torch.triu_indices(N, N, 1)
    pair_index = torch.zeros(N, N, dtype=torch.long)
    pair_index[iu[0], iu[1]] = torch.arange(L - N)
    pair_index = pair_index + pair_index.T
    src = torch.cat([perm, N + pair_index[perm[iu[0]], perm[iu[1]]]])  # new position k holds old position src[k]
    dense = tokens_to_onehots(x, N, E, Q, BC)  # the same relabelling done on the dense graph
    bonds = dense[..., E + Q:].reshape(2, N, N, BC)[:, perm][:, :, perm]
    relabelled = torch.cat([dense[:, perm, : E + Q], bonds.reshape(2, N, N * BC)], dim=-1)
    assert torch.equal(onehots_to_tokens(relabelled, E, Q, BC), x[:, src])
    x_perm = hidden[:, src]
    a, b = net(hidden, t, mask=mask), net(x_perm, t, mask=mask)
    assert torch.allclose(a[:, src], b, atol=1e-4)
