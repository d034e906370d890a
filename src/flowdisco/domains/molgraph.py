"""Molecules as dense 2-D graphs for a continuous flow on one-hot features.

A molecule with n ≤ N heavy atoms becomes one tensor [N, F] — one token per atom:
    [ atom-type one-hot (A) | formal-charge one-hot (Q) | bond one-hots to every atom j (N × B) ]
with bond classes (none, single, double, triple) of the kekulised molecule, symmetric in (i, j),
and "none" on the diagonal. One-hots are mapped to {−1, +1}·scale so that the flow's data and noise
have comparable magnitudes. Atoms beyond n are padding: the mask [N, F] zeroes their features and
every bond to them (and the diagonal), so the loss and the sampler ignore them.

Decoding takes the argmax per atom and per atom pair (pair scores averaged over (i, j) and (j, i)),
builds an RDKit molecule without sanitising, and writes a SMILES: the canonical one when RDKit can
sanitise it, otherwise a raw one (so the verifier can still judge, and reject, it).

``decoding="capped"`` (valence-capped decoding, in the spirit of MoFlow's validity correction) keeps the
atoms and the argmax bonds but places the bonds one at a time, most confident first (the margin of the
argmax class over "none"), lowering a bond's order to what both atoms still have room for and dropping
it when one has none. It never adds a bond the argmax did not choose, so it returns the argmax molecule
whenever no atom of that molecule is over its valence; it cannot join fragments.

``decoding="connected"`` is the capped graph with its fragments joined: among the atom pairs that lie
in different fragments and both still have room for a bond, the pair the model scores most in favour of
a bond (its best bond class over "none") is bonded, with that class's order lowered to the room left,
and so on (Kruskal's spanning-tree order) until one fragment remains or no pair has room. Joining
fragments closes no ring and raises no atom over its valence; a capped molecule that is already one
fragment is returned unchanged. It adds bonds the model did not choose, so it is a stronger correction
than capping: compare it with the other decodings of the same samples (``benchmarks/decoding.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flowdisco.nn.graph import dense_graph_mask

BOND_CLASSES = ("none", "single", "double", "triple")
DECODINGS = ("argmax", "capped", "connected")


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise ImportError("molecule domains need RDKit: pip install 'flowdisco[chem]'") from None
    RDLogger.DisableLog("rdApp.*")
    return Chem


@dataclass(frozen=True)
class GraphSpec:
    """The encoding: allowed elements and charges, the maximum atom count, the value scale."""

    elements: tuple[str, ...] = ("C", "N", "O", "F")
    charges: tuple[int, ...] = (-1, 0, 1)
    max_atoms: int = 9
    scale: float = 1.0

    @property
    def n_atom_features(self) -> int:
        return len(self.elements) + len(self.charges)

    @property
    def n_features(self) -> int:
        return self.n_atom_features + self.max_atoms * len(BOND_CLASSES)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.max_atoms, self.n_features)

    # ------------------------------------------------------------------ masks
    def mask_for_sizes(self, sizes: Tensor) -> Tensor:
        """Masks [B, N, F] for molecules with ``sizes`` [B] atoms."""
        real = torch.arange(self.max_atoms)[None, :] < sizes[:, None]  # [B, N]
        return dense_graph_mask(real, self.n_atom_features, len(BOND_CLASSES))

    # ------------------------------------------------------------------ encode
    def encode(self, smiles: str) -> Tensor | None:
        """[N, F] tensor of a SMILES, or None when it cannot be represented (element, charge, size,
        aromatic bonds that do not kekulise)."""
        Chem = _rdkit()
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            return None
        try:
            Chem.Kekulize(mol, clearAromaticFlags=True)
        except Exception:
            return None
        n = mol.GetNumAtoms()
        if n == 0 or n > self.max_atoms:
            return None
        N, E, Q, B = self.max_atoms, len(self.elements), len(self.charges), len(BOND_CLASSES)
        atoms = np.zeros((N, E + Q), dtype=np.float32)
        bonds = np.zeros((N, N, B), dtype=np.float32)
        for a in mol.GetAtoms():
            if a.GetSymbol() not in self.elements or a.GetFormalCharge() not in self.charges:
                return None
            atoms[a.GetIdx(), self.elements.index(a.GetSymbol())] = 1
            atoms[a.GetIdx(), E + self.charges.index(a.GetFormalCharge())] = 1
        bonds[:n, :n, 0] = 1
        for b in mol.GetBonds():
            order = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}.get(b.GetBondType())
            if order is None:
                return None
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            bonds[i, j] = bonds[j, i] = np.eye(B, dtype=np.float32)[order]
        x = np.concatenate([atoms, bonds.reshape(N, N * B)], axis=1)
        return torch.from_numpy((2 * x - 1) * self.scale * self._size_mask(n))

    @functools.lru_cache(maxsize=64)  # noqa: B019 — a frozen spec, a handful of sizes: built once each
    def _size_mask(self, n: int) -> np.ndarray:
        """mask_for_sizes of one molecule with n atoms, as a numpy array [N, F] (encoding calls it per
        molecule, where building it with torch ops cost a quarter of the time)."""
        return self.mask_for_sizes(torch.tensor([n]))[0].numpy()

    def atom_count(self, x: Tensor) -> int:
        """Atoms of one graph tensor x [N, F]: the rows whose atom features are not all zero (padding is)."""
        return int((x[:, : self.n_atom_features].abs().sum(1) > 0).sum())

    # ------------------------------------------------------------------ decode
    def decode(self, x: Tensor, mask: Tensor | None = None, decoding: str = "argmax") -> list[str]:
        """SMILES for each graph tensor in x [B, N, F]. The atom count comes from the mask (or, without
        one, every atom whose features are not all zero). ``decoding``: "argmax", "capped" or "connected"
        (see the module docstring)."""
        if decoding not in DECODINGS:
            raise ValueError(f"unknown decoding {decoding!r}; choose one of {', '.join(DECODINGS)}")
        Chem = _rdkit()
        N, E, Q, B = self.max_atoms, len(self.elements), len(self.charges), len(BOND_CLASSES)
        A = E + Q
        bond_types = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
        out = []
        for k in range(x.shape[0]):
            xk = x[k].detach().float()
            n = int(mask[k, :, 0].sum()) if mask is not None else self.atom_count(xk)
            elem = xk[:n, :E].argmax(1).tolist()
            chg = xk[:n, E:A].argmax(1).tolist()
            pair = xk[:n, A:].reshape(n, N, B)[:, :n]
            pair = 0.5 * (pair + pair.transpose(0, 1))
            atoms = [(self.elements[e], self.charges[c]) for e, c in zip(elem, chg, strict=True)]
            if decoding in ("capped", "connected"):
                caps = [valence_cap(sym, q) for sym, q in atoms]
                bonds = capped_bonds(pair, caps)
                if decoding == "connected":
                    bonds = joined_bonds(pair, caps, bonds)
            else:
                bonds = argmax_bonds(pair)
            mol = Chem.RWMol()
            for sym, q in atoms:
                atom = Chem.Atom(sym)
                atom.SetFormalCharge(q)
                mol.AddAtom(atom)
            for i, j, o in bonds:
                mol.AddBond(i, j, bond_types[o])
            out.append(to_smiles(mol))
        return out


def argmax_bonds(pair: Tensor) -> list[tuple[int, int, int]]:
    """(i, j, order) for i < j whose class scores pair [n, n, 4] (symmetric) peak at a bond."""
    order = pair.argmax(-1)
    i, j = torch.triu_indices(len(pair), len(pair), offset=1)
    o = order[i, j]
    keep = o > 0
    return list(zip(i[keep].tolist(), j[keep].tolist(), o[keep].tolist(), strict=True))


def ranked_pairs(pair: Tensor) -> list[tuple[float, int, int, int]]:
    """(margin, i, j, order) for every atom pair i < j of pair [n, n, 4] (symmetric class scores): the
    bond class the pair favours most (order 1–3) and its score minus that of "none", most favoured first;
    ties keep (i, j) order. A pair's margin is > 0 exactly when its argmax is that bond."""
    i, j = torch.triu_indices(len(pair), len(pair), offset=1)
    scores = pair[i, j]  # [n(n-1)/2, 4]
    order = scores[:, 1:].argmax(1) + 1
    margin = scores.gather(1, order[:, None])[:, 0] - scores[:, 0]
    ranked = zip(margin.tolist(), i.tolist(), j.tolist(), order.tolist(), strict=True)
    return sorted(ranked, key=lambda r: -r[0])


def capped_bonds(pair: Tensor, caps: list[int]) -> list[tuple[int, int, int]]:
    """The argmax bonds of pair [n, n, 4], placed most confident first (score of the chosen class minus
    that of "none"), each lowered to min(order, room left on either atom) and dropped at 0; caps [n]
    are the atoms' highest total bond orders. Ties keep (i, j) order."""
    room = list(caps)
    out = []
    for margin, i, j, o in ranked_pairs(pair):
        if margin <= 0:
            break  # the rest are pairs whose argmax is "none"
        o = min(o, room[i], room[j])
        if o > 0:
            out.append((i, j, o))
            room[i] -= o
            room[j] -= o
    return out


def joined_bonds(pair: Tensor, caps: list[int], bonds: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """``bonds`` (i, j, order) of a graph on n atoms plus the bonds that join its fragments: pairs in
    different fragments, most favoured first (best bond class's score in pair [n, n, 4] minus "none"'s),
    each bonded at that class's order lowered to the room both atoms have left (caps [n] minus the
    orders of ``bonds``), skipped when either has none. Ties keep (i, j) order."""
    n = len(caps)
    root = list(range(n))

    def find(a: int) -> int:
        while root[a] != a:
            root[a] = root[root[a]]
            a = root[a]
        return a

    room = list(caps)
    for i, j, o in bonds:
        room[i] -= o
        room[j] -= o
        root[find(i)] = find(j)
    fragments = len({find(a) for a in range(n)})
    out = list(bonds)
    for _, i, j, o in ranked_pairs(pair):
        if fragments <= 1:
            break
        o = min(o, room[i], room[j])
        if o <= 0 or find(i) == find(j):
            continue
        out.append((i, j, o))
        room[i] -= o
        room[j] -= o
        root[find(i)] = find(j)
        fragments -= 1
    return out


@functools.cache
def valence_cap(element: str, charge: int) -> int:
    """The highest total bond order (hydrogens implicit) RDKit accepts for ``element`` with formal
    ``charge``: that of its isoelectronic element (N+ as C: 4; O− as F: 1), as RDKit itself judges
    charged atoms. Elements without a fixed valence (RDKit's −1) get no cap."""
    Chem = _rdkit()
    table = Chem.GetPeriodicTable()
    z = table.GetAtomicNumber(element) - charge
    if z <= 0:
        return 0
    valences = list(table.GetValenceList(z))
    return 99 if -1 in valences else max(valences)


def to_smiles(mol) -> str:
    """Canonical SMILES when the molecule sanitises, else a raw SMILES of the unsanitised graph."""
    Chem = _rdkit()
    m = mol.GetMol()
    try:
        Chem.SanitizeMol(m)
        return Chem.MolToSmiles(m)
    except Exception:
        try:
            return Chem.MolToSmiles(mol.GetMol(), canonical=False)
        except Exception:
            return ""


SANITIZE_PROBLEMS = {"AtomValenceException": "an atom over its valence",
                     "AtomKekulizeException": "cannot be kekulised", "KekulizeException": "cannot be kekulised"}


def parse_problem(smiles: str) -> str:
    """Why a SMILES that RDKit does not give as a sanitised molecule fails, in words: "empty", "not
    parsable" (broken SMILES syntax), "an atom over its valence", "cannot be kekulised" (an aromatic
    ring RDKit cannot assign), or RDKit's own name for a rarer problem. Callers have already seen
    ``Chem.MolFromSmiles(smiles)`` return None."""
    Chem = _rdkit()
    if not smiles:
        return "empty"
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return "not parsable"
    kinds = [p.GetType() for p in Chem.DetectChemistryProblems(mol)]
    return SANITIZE_PROBLEMS.get(kinds[0], kinds[0]) if kinds else "does not sanitise"


def canonical(smiles: str) -> str | None:
    """RDKit canonical SMILES, or None when it does not parse/sanitise."""
    Chem = _rdkit()
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return Chem.MolToSmiles(mol) if mol is not None else None
