"""Ring systems of molecules: which ring chemistry a design uses, and whether a data set has it.

A ring system is a maximal set of rings joined by shared atoms (fused, bridged and spiro rings form one
system; rings joined by a chain are separate systems), written as the canonical SMILES of its ring atoms
and the bonds among them, hydrogens filled in where substituents were (bond orders, charges and
aromaticity kept, stereochemistry dropped). A molecule with a ring system that occurs in no training
molecule uses ring chemistry the data never showed — a usual flag for implausible generated molecules
(of QM9's own test molecules 5 % have one; of the shipped discrete QM9 model's valid samples about a
third; BENCHMARKS.md).

The ``*-known-rings`` molecule domains (e.g. ``qm9-discrete-known-rings``) add "every ring system occurs
in a training molecule" to their verifier; :func:`unknown_ring_fraction` measures it without enforcing it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from flowdisco.domains.molgraph import _rdkit

log = logging.getLogger("flowdisco")

RING_RULES = ("any", "known")  # the molecule domains' ring_systems option


def ring_systems(mol) -> list[str]:
    """Canonical SMILES of each ring system of an RDKit molecule, in the order first met ([] if acyclic)."""
    Chem = _rdkit()
    systems: list[set[int]] = []
    for ring in mol.GetRingInfo().AtomRings():
        merged = set(ring)
        for other in [s for s in systems if s & merged]:
            merged |= other
            systems.remove(other)
        systems.append(merged)
    if not systems:
        return []
    kekule = Chem.Mol(mol)
    Chem.Kekulize(kekule, clearAromaticFlags=True)
    out = []
    for atoms in systems:
        bonds = [b.GetIdx() for b in mol.GetBonds() if b.GetBeginAtomIdx() in atoms and b.GetEndAtomIdx() in atoms]
        fragment = Chem.MolFragmentToSmiles(kekule, atomsToUse=sorted(atoms), bondsToUse=bonds, kekuleSmiles=True,
                                            isomericSmiles=False)
        # parsed again, so that the ring system's string does not depend on the substituents it had
        # (hydrogen counts and atom degrees enter RDKit's canonical ranking of a fragment)
        alone = Chem.MolFromSmiles(fragment)
        out.append(Chem.MolToSmiles(alone) if alone is not None else fragment)
    return out


def ring_systems_of(smiles: str) -> list[str] | None:
    """:func:`ring_systems` of a SMILES string; None when RDKit cannot parse it."""
    mol = _rdkit().MolFromSmiles(smiles) if smiles else None
    return None if mol is None else ring_systems(mol)


def collect_ring_systems(smiles: Iterable[str]) -> set[str]:
    """Every ring system of a set of molecules (unparsable SMILES skipped)."""
    found: set[str] = set()
    for s in smiles:
        found.update(ring_systems_of(s) or ())
    return found


def cached_ring_systems(smiles: Sequence[str]) -> set[str]:
    """:func:`collect_ring_systems` cached on disk under the list's checksum (QM9's 105,000 training
    molecules take RDKit about 70 s, once per machine)."""
    from flowdisco.domains.molecules import _digest, cache_dir, cached_json_list

    def compute() -> list[str]:
        log.info("collecting the ring systems of %d molecules once for this machine (cached in %s)", len(smiles),
                 cache_dir())
        return sorted(collect_ring_systems(smiles))

    return set(cached_json_list(f"ring-systems-{_digest(smiles)}.json", "ring-system cache", compute))


def unknown_ring_systems(smiles: str, known: set[str]) -> list[str] | None:
    """The ring systems of ``smiles`` that are not in ``known`` ([] when all are; None if unparsable)."""
    systems = ring_systems_of(smiles)
    return None if systems is None else [r for r in systems if r not in known]


def unknown_ring_fraction(smiles: Sequence[str], known: set[str]) -> float:
    """Share of the parsable molecules with at least one ring system not in ``known`` (NaN if none parse)."""
    flags = [bool(u) for u in (unknown_ring_systems(s, known) for s in smiles) if u is not None]
    return sum(flags) / len(flags) if flags else float("nan")
