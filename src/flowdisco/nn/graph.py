"""A magnitude-preserving graph transformer: the velocity network of the molecule domains.

Input x [B, N, A + N·Bc] (see :mod:`flowdisco.domains.molgraph`): per atom its A atom features and
its row of Bc-class bond features. Atoms are tokens; the (noisy) bond features of every pair feed the
attention as a per-head bias; bond velocities are predicted from node pairs symmetrically, so
v_ij = v_ji. Built from flowdisco's MP blocks (MP linears, mp_sum residuals, cosine attention,
modulation by the flow time).

Named modules for ActFlow's representation hook: ``node_head`` (per-atom hidden features [B, N, D],
read with mean pooling over atoms), ``blocks.{i}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowdisco.nn.dit import EMBED_T, MPBlock, MPConditioning
from flowdisco.nn.modulation import check_modulations
from flowdisco.nn.mp import MPFeatureHead, MPLinear, mp_silu, mp_sum
from flowdisco.nn.registry import register_network


@register_network("graph-mp")
class GraphTransformer(nn.Module):
    """x [B, N, A + N·Bc], t [B], mask [B, N, A + N·Bc] → velocity of the same shape."""

    def __init__(self, max_atoms: int, atom_features: int, bond_classes: int = 4, dim: int = 128, depth: int = 4,
                 heads: int = 4, mods: list[str] | tuple[str, ...] = ("scale", "shift", "gate"),
                 output: str = "velocity", atom_groups: list[int] | None = None, endpoint_eps: float = 0.02,
                 edge_dim: int = 0, endpoint_loss: str = "mse") -> None:
        super().__init__()
        if output not in ("velocity", "endpoint"):
            raise ValueError(f"output must be 'velocity' or 'endpoint', got {output!r}")
        if endpoint_loss not in ("mse", "ce"):
            raise ValueError(f"endpoint_loss must be 'mse' or 'ce', got {endpoint_loss!r}")
        if endpoint_loss == "ce" and output != "endpoint":
            raise ValueError("endpoint_loss='ce' needs output='endpoint'")
        groups = list(atom_groups or [atom_features])
        if sum(groups) != atom_features:
            raise ValueError(f"atom_groups {groups} must add up to atom_features={atom_features}")
        self.N, self.A, self.Bc, self.heads = max_atoms, atom_features, bond_classes, heads
        self.output, self.atom_groups, self.endpoint_eps = output, groups, endpoint_eps
        # endpoint networks are trained on the endpoint they imply (FlowModel.loss reads this): its squared
        # error ("mse"), or the cross-entropy of its class probabilities against the data's one-hots ("ce")
        self.loss_target = "velocity" if output == "velocity" else ("categorical" if endpoint_loss == "ce"
                                                                      else "endpoint")
        mods = check_modulations(mods)
        # atom features + the mean of its bond row + a constant 1 (in place of a bias)
        self.atom_in = MPLinear(atom_features + bond_classes + 1, dim)
        self.bond_bias = MPLinear(bond_classes + 1, heads, gain=1.0)
        self.cond = MPConditioning(dim)
        self.blocks = nn.ModuleList(MPBlock(dim, heads, dim, mods) for _ in range(depth))
        self.node_head = MPFeatureHead(dim)
        self.node_out = MPLinear(dim, atom_features, gain=0.0)
        self.pair_in = MPLinear(dim, dim)
        self.bond_in = MPLinear(bond_classes + 1, dim)
        self.bond_out = MPLinear(dim, bond_classes, gain=0.0)
        # optional edge pathway (edge_dim > 0): pair features updated after every block from the
        # atoms they join, feeding each block's attention bias and the bond output
        self.edge_dim = edge_dim
        if edge_dim:
            self.edge_in = MPLinear(bond_classes + 1, edge_dim)
            self.edge_bias = nn.ModuleList(MPLinear(edge_dim, heads, gain=1.0) for _ in range(depth))
            self.edge_from_atoms = nn.ModuleList(MPLinear(dim, edge_dim) for _ in range(depth))
            self.edge_mix = nn.ModuleList(MPLinear(edge_dim, edge_dim) for _ in range(depth))
            self.edge_out = MPLinear(edge_dim, dim)

    def forward(self, x: Tensor, t: Tensor, mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        B, N, _ = x.shape
        out_atoms, out_bonds = self.heads_out(x, t, mask)
        if self.output == "endpoint":
            out_atoms, out_bonds = self._velocity_from_logits(x, t, out_atoms, out_bonds)
        v = torch.cat([out_atoms, out_bonds.reshape(B, N, N * self.Bc)], dim=-1)
        return v * mask if mask is not None else v

    def heads_out(self, x: Tensor, t: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The two output heads: atoms [B, N, A] and bonds [B, N, N, Bc] (symmetric in the atom pair).
        They are velocities, or, for endpoint networks, the class logits of the endpoint."""
        B, N, _ = x.shape
        A, Bc = self.A, self.Bc
        atoms = x[..., :A]
        bonds = x[..., A:].reshape(B, N, N, Bc)
        real = (mask[..., 0] > 0) if mask is not None else torch.ones(B, N, dtype=torch.bool, device=x.device)
        one_n = torch.ones(B, N, 1, dtype=x.dtype, device=x.device)
        one_p = torch.ones(B, N, N, 1, dtype=x.dtype, device=x.device)
        bonds1 = torch.cat([bonds, one_p], dim=-1)
        h = self.atom_in(torch.cat([atoms, bonds.mean(2), one_n], dim=-1))
        # attention: bias from the pair features, padded atoms never attended to (each attends itself)
        allowed = real[:, None, :] | torch.eye(N, dtype=torch.bool, device=x.device)[None]
        bias = self.bond_bias(bonds1).permute(0, 3, 1, 2)  # [B, heads, N, N]
        attn_mask = bias.masked_fill(~allowed[:, None], float("-inf"))
        c = self.cond(t)
        e = self.edge_in(bonds1) if self.edge_dim else None  # [B, N, N, edge_dim]
        for i, block in enumerate(self.blocks):
            if e is not None:
                attn_mask = attn_mask + self.edge_bias[i](e).permute(0, 3, 1, 2)
            h = block(h, c, attn_mask)
            if e is not None:
                e = self._update_edges(i, e, h)
        node = self.node_head(h)
        out_atoms = self.node_out(node)
        u = self.pair_in(node)
        pair_state = self.bond_in(bonds1) if e is None else mp_sum(self.bond_in(bonds1), self.edge_out(e), EMBED_T)
        pair = mp_sum((u[:, :, None] + u[:, None, :]) / 2 ** 0.5, pair_state, EMBED_T)
        out_bonds = self.bond_out(mp_silu(pair))
        return out_atoms, 0.5 * (out_bonds + out_bonds.transpose(1, 2))

    def categorical_loss_terms(self, x_t: Tensor, t: Tensor, x1: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-design cross-entropy [B] of the endpoint's class probabilities against the data x1 [B, N, F]
        (±1 one-hots): the mean over the design's real one-hot groups (each atom's element and charge,
        each ordered pair of real atoms' bond class)."""
        B, N, _ = x1.shape
        A, Bc = self.A, self.Bc
        atom_logits, bond_logits = self.heads_out(x_t, t, mask)
        real = (mask[..., 0] > 0) if mask is not None else torch.ones(B, N, dtype=torch.bool, device=x1.device)
        pair = real_pairs(real)
        total = torch.zeros(B, dtype=atom_logits.dtype, device=x1.device)
        groups = self.atom_groups
        for logits, group in zip(atom_logits.split(groups, dim=-1), x1[..., :A].split(groups, dim=-1), strict=True):
            total = total + (-(logits.log_softmax(-1) * (group > 0)).sum(-1) * real).sum(1)  # > 0: the one-hot's +1
        bonds = x1[..., A:].reshape(B, N, N, Bc) > 0
        total = total + (-(bond_logits.log_softmax(-1) * bonds).sum(-1) * pair).sum((1, 2))
        n_groups = len(groups) * real.sum(1) + pair.sum((1, 2))
        return total / n_groups.clamp_min(1)

    def _update_edges(self, i: int, e: Tensor, h: Tensor) -> Tensor:
        """e_ij ← mp_sum(e_ij, W·silu(e_ij ⊕ a_i + a_j)), kept symmetric. e [B, N, N, E], h [B, N, D]."""
        a = self.edge_from_atoms[i](h)
        msg = self.edge_mix[i](mp_silu(mp_sum(e, (a[:, :, None] + a[:, None, :]) / 2 ** 0.5, EMBED_T)))
        e = mp_sum(e, msg, 0.3)
        return 0.5 * (e + e.transpose(1, 2))

    def _velocity_from_logits(self, x: Tensor, t: Tensor, atom_logits: Tensor, bond_logits: Tensor
                              ) -> tuple[Tensor, Tensor]:
        """Endpoint parameterisation: per one-hot group, x̂1 = 2·softmax(logits) − 1 (the ±1 encoding
        of :mod:`flowdisco.domains.molgraph`), and v = (x̂1 − x_t) / max(1 − t, eps).

        atom_logits [B, N, A], bond_logits [B, N, N, Bc] → velocities of the same shapes.
        """
        B, N, _ = x.shape
        probs = torch.cat([g.softmax(-1) for g in atom_logits.split(self.atom_groups, dim=-1)], dim=-1)
        x1_atoms = 2 * probs - 1
        x1_bonds = 2 * bond_logits.softmax(-1) - 1
        scale = 1.0 / (1.0 - t).clamp_min(self.endpoint_eps).view(B, 1, 1)
        v_atoms = (x1_atoms - x[..., : self.A]) * scale
        v_bonds = (x1_bonds - x[..., self.A:].reshape(B, N, N, self.Bc)) * scale[..., None]
        return v_atoms, v_bonds


# ---------------------------------------------------------------------------------------------------------
# Masks of the dense layout


def real_pairs(real_atoms: Tensor) -> Tensor:
    """Bool [B, N, N]: the pairs of two distinct real atoms, from real_atoms [B, N] bool."""
    eye = torch.eye(real_atoms.shape[1], dtype=torch.bool, device=real_atoms.device)
    return real_atoms[:, :, None] & real_atoms[:, None, :] & ~eye[None]


def dense_graph_mask(real_atoms: Tensor, atom_features: int, bond_classes: int) -> Tensor:
    """Mask [B, N, A + N·Bc] (float) of the dense layout from real_atoms [B, N] bool: 1 on a real atom's
    features and on the bond features of each pair of distinct real atoms."""
    B, N = real_atoms.shape
    atoms = real_atoms[:, :, None].expand(B, N, atom_features)
    bonds = real_pairs(real_atoms)[..., None].expand(B, N, N, bond_classes).reshape(B, N, N * bond_classes)
    return torch.cat([atoms, bonds], dim=2).float()


# ---------------------------------------------------------------------------------------------------------
# Token layout of a molecular graph, for the masked discrete flow (domains qm9-discrete, moses-discrete)
#
# A graph of up to N atoms is L = N + N(N−1)/2 tokens: first one token per atom, id e·Q + q for element e
# (of E) and charge q (of Q); then one token per atom pair i < j in torch.triu_indices order, id E·Q + c
# for bond class c (of Bc, "none" included). Padding holds PAD = −1; the mask token is V = E·Q + Bc.

NEG_LOGIT = -1e4  # logit of a class a position cannot take (an atom class at a pair position, and back)


def graph_token_count(max_atoms: int) -> int:
    """L = N + N(N−1)/2 tokens for graphs of up to N atoms."""
    return max_atoms + max_atoms * (max_atoms - 1) // 2


def _pairs(n: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
    iu = torch.triu_indices(n, n, 1, device=device)
    return iu[0], iu[1]


def graph_token_mask(real_atoms: Tensor) -> Tensor:
    """Token mask [B, L] (1 at an atom that exists and at a pair of two that do) from real_atoms [B, N] bool."""
    iu, ju = _pairs(real_atoms.shape[1], real_atoms.device)
    return torch.cat([real_atoms, real_atoms[:, iu] & real_atoms[:, ju]], dim=1).float()


def tokens_to_onehots(tokens: Tensor, max_atoms: int, n_elements: int, n_charges: int, bond_classes: int) -> Tensor:
    """The dense ±1 one-hot layout x [B, N, E + Q + N·Bc] of token graphs [B, L] (long).

    A position holding the mask token or PAD gets all-zero features (the dense layout's padding value);
    a bond is written at (i, j) and (j, i); the diagonal stays zero."""
    B, N = tokens.shape[0], max_atoms
    E, Q, Bc = n_elements, n_charges, bond_classes
    EQ = E * Q
    atoms, bonds = tokens[:, :N], tokens[:, N:]
    is_atom = ((atoms >= 0) & (atoms < EQ)).unsqueeze(-1)
    a = atoms.clamp(0, EQ - 1)
    atom_x = torch.cat([F.one_hot(a // Q, E), F.one_hot(a % Q, Q)], dim=-1).float() * 2 - 1
    atom_x = atom_x * is_atom
    is_bond = ((bonds >= EQ) & (bonds < EQ + Bc)).unsqueeze(-1)
    bond_x = (F.one_hot((bonds - EQ).clamp(0, Bc - 1), Bc).float() * 2 - 1) * is_bond
    pair = torch.zeros(B, N, N, Bc, device=tokens.device)
    iu, ju = _pairs(N, tokens.device)
    pair[:, iu, ju] = bond_x
    pair[:, ju, iu] = bond_x
    return torch.cat([atom_x, pair.reshape(B, N, N * Bc)], dim=-1)


def onehots_to_tokens(x: Tensor, n_elements: int, n_charges: int, bond_classes: int) -> Tensor:
    """Token graphs [B, L] (long, PAD at padding) of dense graphs x [B, N, E + Q + N·Bc]: the argmax of each
    atom's element and charge and of each pair's (symmetrised) bond class; an atom is padding when its
    atom features are all zero, a pair when either of its atoms is."""
    B, N, _ = x.shape
    E, Q, Bc = n_elements, n_charges, bond_classes
    A = E + Q
    real = x[..., :A].abs().sum(-1) > 0
    atoms = x[..., :E].argmax(-1) * Q + x[..., E:A].argmax(-1)
    pair = x[..., A:].reshape(B, N, N, Bc)
    iu, ju = _pairs(N, x.device)
    bonds = (pair + pair.transpose(1, 2)).argmax(-1)[:, iu, ju] + E * Q
    pad = torch.full_like(atoms, -1)
    return torch.cat([torch.where(real, atoms, pad),
                      torch.where(real[:, iu] & real[:, ju], bonds, pad[:, :1].expand_as(bonds))], dim=1)


@register_network("graph-mp-tokens")
class GraphTokenTransformer(GraphTransformer):
    """The graph transformer as the denoiser of a masked discrete flow on token graphs.

    x [B, L] token ids (mask token V = E·Q + Bc), t [B], mask [B, L] → logits [B, L, V]: at an atom
    position log p(element) + log p(charge) over its E·Q classes, at a pair position the bond-class
    logits (symmetric network output read at i < j); the other classes get NEG_LOGIT. Inside, the tokens
    become the dense ±1 layout with masked positions as zeros, so every layer (and the ``node_head``
    read by ActFlow's representation) is the Gaussian model's.
    """

    def __init__(self, max_atoms: int, atom_features: int, atom_groups: list[int], bond_classes: int = 4,
                 dim: int = 128, depth: int = 4, heads: int = 4,
                 mods: list[str] | tuple[str, ...] = ("scale", "shift", "gate"), edge_dim: int = 0) -> None:
        if len(atom_groups) != 2:
            raise ValueError(f"atom_groups must be [elements, charges], got {atom_groups}")
        super().__init__(max_atoms, atom_features, bond_classes, dim, depth, heads, mods, output="endpoint",
                         atom_groups=atom_groups, edge_dim=edge_dim)
        self.output = "logits"
        self.E, self.Q = atom_groups
        self.V = self.E * self.Q + bond_classes
        self.L = graph_token_count(max_atoms)

    def forward(self, x: Tensor, t: Tensor, mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        tokens = x.long()
        B, L = tokens.shape
        if L != self.L:
            raise ValueError(f"token graphs have {L} positions, the network was built for {self.L} "
                             f"({self.N} atoms)")
        N, Bc, EQ = self.N, self.Bc, self.E * self.Q
        real = (mask[:, :N] > 0) if mask is not None else tokens[:, :N] >= 0
        dense = tokens_to_onehots(tokens, N, self.E, self.Q, Bc)
        iu, ju = _pairs(N, x.device)
        dense_mask = dense_graph_mask(real, self.A, Bc)
        atom_logits, bond_logits = self.heads_out(dense * dense_mask, t, dense_mask)
        le, lq = atom_logits.float().split([self.E, self.Q], dim=-1)
        atom_tok = (le.log_softmax(-1)[..., :, None] + lq.log_softmax(-1)[..., None, :]).reshape(B, N, EQ)
        bond_tok = bond_logits.float()[:, iu, ju]
        neg = atom_tok.new_full((), NEG_LOGIT)
        return torch.cat([torch.cat([atom_tok, neg.expand(B, N, Bc)], dim=-1),
                          torch.cat([neg.expand(B, L - N, EQ), bond_tok], dim=-1)], dim=1)
