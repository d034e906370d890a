"""moses: drug-like molecules (12–26 heavy atoms) from the molsets wheel, as 2-D graphs.

Data: ``moses/dataset/data/train.csv.gz`` (1,584,663 SMILES) and ``test.csv.gz``, read directly
(``import moses`` pulls in matplotlib and more). The training set is large: ``max_train`` caps how
many are encoded (default 100,000, in the file's order after a seeded shuffle).

Verifier: the MOSES filter definition plus one fragment — RDKit parses and sanitises; no ring of 8 or
more atoms (MOSES's code rejects rings of size ≥ 8); no formal charge; atoms ⊆ {C, N, S, O, F, Cl,
Br, H}; no match of the MCF and PAINS SMARTS shipped in molsets (matched on the molecule with
explicit hydrogens); a single fragment. This is 2-D MOSES, not GEOM-Drugs 3-D conformers.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from functools import cache
from typing import Any

from flowdisco.domains.base import package_dir, shipped_model_path
from flowdisco.domains.molecules import MoleculeDomain
from flowdisco.domains.molgraph import GraphSpec, _rdkit, parse_problem

MOSES_SPEC = GraphSpec(elements=("C", "N", "S", "O", "F", "Cl", "Br"), charges=(0,), max_atoms=26)
ALLOWED = {"C", "N", "S", "O", "F", "Cl", "Br", "H"}


def _moses_dir():
    return package_dir("moses", "chem")


def load_moses_smiles(split: str = "train") -> list[str]:
    path = _moses_dir() / "dataset" / "data" / f"{split}.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"MOSES file missing from the molsets package: {path}")
    with gzip.open(path, "rt") as f:
        rows = csv.reader(f)
        header = next(rows)
        col = header.index("SMILES")
        return [r[col] for r in rows]


@cache
def filter_patterns() -> tuple:
    """The MCF and PAINS SMARTS of molsets, compiled."""
    Chem = _rdkit()
    base = _moses_dir() / "metrics"
    smarts = []
    with open(base / "mcf.csv") as f:
        rows = csv.reader(f)
        header = next(rows)
        col = header.index("smarts")
        smarts += [r[col] for r in rows if r]
    with open(base / "wehi_pains.csv") as f:  # no header: SMARTS, name
        smarts += [r[0] for r in csv.reader(f) if r]
    pats = tuple(p for p in (Chem.MolFromSmarts(s) for s in smarts) if p is not None)
    if len(pats) < len(smarts):
        raise ValueError(f"{len(smarts) - len(pats)} MOSES filter SMARTS did not compile")
    return pats


def moses_valid(smiles: str) -> bool:
    """MOSES filters + one fragment (see module docstring)."""
    return moses_rejection(smiles) is None


def moses_rejection(smiles: str) -> str | None:
    """The first check of the MOSES verifier that ``smiles`` fails, in words; None when it passes."""
    Chem = _rdkit()
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return parse_problem(smiles)
    if len(Chem.GetMolFrags(mol)) != 1:
        return "several fragments"
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return "a ring of 8 or more atoms"
    if any(a.GetFormalCharge() != 0 or a.GetSymbol() not in ALLOWED for a in mol.GetAtoms()):
        return "a charged atom or a disallowed element"
    with_h = Chem.AddHs(mol)
    if any(with_h.HasSubstructMatch(p) for p in filter_patterns()):
        return "an MCF or PAINS substructure"
    return None


class Moses(MoleculeDomain):
    name = "moses"
    spec = MOSES_SPEC
    representation_time = 0.8

    def __init__(self, seed: int = 0, max_train: int | None = 100_000, data_file: str | None = None,
                 decoding: str = "argmax", discrete: bool = False, ring_systems: str = "any") -> None:
        super().__init__(seed=seed, max_train=max_train, data_file=data_file, decoding=decoding, discrete=discrete,
                         ring_systems=ring_systems)

    def all_smiles(self) -> list[str]:
        return load_moses_smiles("train")

    def splits(self) -> dict[str, list[str]]:
        """MOSES's own split: a seeded shuffle of its train file (90 % train, 10 % valid) and its test."""
        if self.data_file:  # the user's own molecules: the generic seeded 80/10/10 split
            return super().splits()
        if self._splits is None:
            import torch

            train = self.all_smiles()
            perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed)).tolist()
            n_va = len(train) // 10
            self._splits = {"train": [train[i] for i in perm[n_va:]], "valid": [train[i] for i in perm[:n_va]],
                            "test": load_moses_smiles("test")}
        return self._splits

    def verify(self, designs: Sequence[Any]) -> Sequence[bool]:
        return [moses_valid(s) for s in designs]

    def base_rejection(self, smiles: str) -> str | None:
        return moses_rejection(smiles)

    def default_pretrain(self) -> dict[str, Any]:
        # the shipped model's recipe: 8,100 steps of 64 molecules (where a 6,300 s time limit stopped it on
        # one thread of the 2-core CPU; see BENCHMARKS.md); lr and EMA as the QM9 model's first stage
        return {"steps": 8100, "batch_size": 64, "lr": 1e-3, "ema_sigma_rel": 0.05}

    def pretrained_model_path(self) -> str | None:
        """The shipped model (``flowdisco/assets/moses_model``, or ``moses_discrete_model`` for the discrete
        variant), trained on the default split and training subset (seed 0, the first 100,000); other
        splits get None."""
        if self.seed == 0 and self.max_train == 100_000 and self.data_file is None:
            return shipped_model_path("moses_discrete_model" if self.discrete else "moses_model")
        return None

    def expand_defaults(self) -> dict[str, Any]:
        return {**super().expand_defaults(), "surrogate": "ensemble", "guidance_strength": 7.0,
                "samples_per_round": 64, "finetune_steps": 250, "finetune_batch": 64, "finetune_lr": 1e-4}
