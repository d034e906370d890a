"""qm9: small molecules (≤ 9 heavy atoms of C, N, O, F) from the qm9pack wheel, as 2-D graphs.

Data: 130,831 SMILES in ``qm9pack/data/qm9_part{1,2,3}.csv`` (read directly: qm9pack's own loader
needs pkg_resources), never downloaded. Split: a seeded permutation, 80 % train / 10 % valid / 10 %
test; molecules the graph encoding cannot represent are skipped with a count in the log.

Verifier (data.md): RDKit sanitises AND one connected fragment AND atoms ⊆ {C, N, O, F} AND 1–9 heavy
atoms AND no formal charges or radicals.

Descriptors, coverage, Vendi and novelty: see :mod:`flowdisco.domains.molecules` (Morgan r = 2,
2048 bits, Tanimoto; LeaderPicker at Tanimoto distance 0.85).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowdisco.domains.base import package_dir, shipped_model_path
from flowdisco.domains.molecules import MoleculeDomain
from flowdisco.domains.molgraph import GraphSpec, _rdkit, canonical, parse_problem

QM9_SPEC = GraphSpec(elements=("C", "N", "O", "F"), charges=(-1, 0, 1), max_atoms=9)


def load_qm9_smiles() -> list[str]:
    """All QM9 SMILES in file order."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("reading QM9 needs pandas: pip install 'flowdisco[chem]'") from None
    data = package_dir("qm9pack", "chem") / "data"
    parts = [data / f"qm9_part{i}.csv" for i in (1, 2, 3)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"QM9 files missing from the qm9pack package: {missing}")
    return [s for p in parts for s in pd.read_csv(p, usecols=["SMILES"])["SMILES"].astype(str).tolist()]


class QM9(MoleculeDomain):
    name = "qm9"
    spec = QM9_SPEC
    representation_time = 0.9

    def all_smiles(self) -> list[str]:
        return load_qm9_smiles()

    def verify(self, designs: Sequence[Any]) -> Sequence[bool]:
        return [qm9_valid(s) for s in designs]

    def base_rejection(self, smiles: str) -> str | None:
        return qm9_rejection(smiles)

    def default_pretrain(self) -> dict[str, Any]:
        # stage 1 of the shipped model's recipe (8,100 steps: where its 400 s on an H100 ended); the later
        # stages continue it with `--init` at lower learning rates (see BENCHMARKS.md)
        if self.discrete:  # the CPU recipe of benchmarks/results/qm9_families.json (≈ 11 min on one core)
            return {"steps": 2000, "batch_size": 128, "lr": 2e-3, "ema_sigma_rel": 0.05}
        return {"steps": 8100, "batch_size": 512, "lr": 3e-3, "ema_sigma_rel": 0.05}

    def pretrained_model_path(self) -> str | None:
        """The shipped model (``flowdisco/assets/qm9_model``), trained on the default split (seed 0,
        full training set); other splits get None, since its training set would leak into their
        test set."""
        asset = "qm9_discrete_model" if self.discrete else "qm9_model"
        return shipped_model_path(asset) if self.seed == 0 and self.max_train is None else None

    def expand_defaults(self) -> dict[str, Any]:
        # the paper's QM9 column (ensemble, λ = 10, s = 0.9), with a budget sized so that the main
        # job (`flowdisco expand qm9`) finishes in under 10 minutes on 2 CPU cores, data caches included
        # (12 rounds × 250 steps took 12.5 min; benchmarks/molecules.py keeps that budget); 50 sampler steps
        # give the validity of 100 (measured: 33.8 % vs 34.8 % on 500 SDE samples)
        return {**super().expand_defaults(), "surrogate": "ensemble", "guidance_strength": 10.0,
                "samples_per_round": 64, "finetune_steps": 120, "finetune_batch": 64, "finetune_lr": 1e-4,
                "rounds": 10, "eval_every": 5, "sampler_steps": 50}


def qm9_valid(smiles: str) -> bool:
    """The QM9 verifier of data.md."""
    return qm9_rejection(smiles) is None


def qm9_rejection(smiles: str) -> str | None:
    """The first check of the QM9 verifier that ``smiles`` fails, in words; None when it passes."""
    Chem = _rdkit()
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return parse_problem(smiles)
    if len(Chem.GetMolFrags(mol)) != 1:
        return "several fragments"
    if not 1 <= mol.GetNumAtoms() <= 9:
        return "more than 9 heavy atoms"
    for a in mol.GetAtoms():
        if a.GetSymbol() not in ("C", "N", "O", "F"):
            return "an element other than C, N, O, F"
        if a.GetFormalCharge() != 0 or a.GetNumRadicalElectrons() != 0:
            return "a charged atom or a radical"
    return None


class QM9OutOfDistribution(QM9):
    """qm9-ood: QM9 with a restricted training set, for discovery with ground truth.

    Training molecules: the default training split without fluorine and without 3- or 4-membered
    rings. The rest of QM9 (every split) that breaks the restriction is the held-out part; the
    verifier is QM9's, so it accepts held-out molecules. :meth:`design_metrics` counts how much of
    the held-out part a set of valid designs reaches.
    """

    name = "qm9-ood"

    def pretrained_model_path(self) -> str | None:
        return None

    def splits(self) -> dict[str, list[str]]:
        if self._splits is None:
            full = super().splits()
            self._full_splits = full
            self._splits = {k: [s for s in v if in_restriction(s)] for k, v in full.items()}
        return self._splits

    def data_set_smiles(self) -> list[str]:
        """All of QM9, held-out part included: a "new" molecule is not in QM9 (dataset_keys)."""
        self.splits()
        return [s for split in self._full_splits.values() for s in split]

    def held_out(self) -> tuple[set[str], set[str]]:
        """(canonical SMILES, Murcko scaffolds) of the held-out part; a held-out scaffold occurs in
        held-out molecules and in no molecule inside the restriction (the empty scaffold excluded)."""
        if getattr(self, "_held_out", None) is None:
            inside_scaffolds, mols, scaffolds = set(), set(), set()
            for key in self._canonical_map().values():
                if not key:
                    continue
                if in_restriction(key):
                    inside_scaffolds.add(murcko_scaffold(key))
                else:
                    mols.add(key)
                    scaffolds.add(murcko_scaffold(key))
            self._held_out = (mols, scaffolds - inside_scaffolds - {""})
        return self._held_out

    def design_metrics(self, designs: Sequence[Any]) -> dict[str, float]:
        return ood_counts(self, designs)


def ood_counts(dom: QM9OutOfDistribution, designs: Sequence[Any]) -> dict[str, float]:
    """Held-out molecules and scaffolds reached by valid designs, and their share outside the
    training restriction."""
    mols, scaffolds = dom.held_out()
    canon = [k for k in map(canonical, designs) if k]
    keys = set(canon)
    outside = [k for k in canon if not in_restriction(k)]
    return {"outside_restriction_fraction": len(outside) / max(1, len(designs)),
            "held_out_molecules": float(len(keys & mols)),
            "held_out_scaffolds": float(len({murcko_scaffold(k) for k in keys} & scaffolds)),
            "outside_restriction_unique": float(len(set(outside)))}


def murcko_scaffold(smiles: str) -> str:
    """Bemis–Murcko scaffold as canonical SMILES ("" for acyclic molecules)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles)


def in_restriction(smiles: str) -> bool:
    """Inside qm9-ood's training restriction: no fluorine and no ring of 3 or 4 atoms."""
    Chem = _rdkit()
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return False
    if any(a.GetSymbol() == "F" for a in mol.GetAtoms()):
        return False
    return all(len(ring) > 4 for ring in mol.GetRingInfo().AtomRings())
