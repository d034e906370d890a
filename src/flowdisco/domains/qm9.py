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

from flowdisco.domains.molecules import MoleculeDomain, package_dir
from flowdisco.domains.molgraph import GraphSpec, _rdkit

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

    def default_pretrain(self) -> dict[str, Any]:
        return {"steps": 15000, "batch_size": 128, "lr": 3e-3, "ema_sigma_rel": 0.05}

    def expand_defaults(self) -> dict[str, Any]:
        return {**super().expand_defaults(), "surrogate": "ensemble", "guidance_strength": 10.0,
                "samples_per_round": 64, "finetune_steps": 250, "finetune_batch": 64, "finetune_lr": 1e-4}


def qm9_valid(smiles: str) -> bool:
    """The QM9 verifier of data.md."""
    Chem = _rdkit()
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return False
    if len(Chem.GetMolFrags(mol)) != 1:
        return False
    if not 1 <= mol.GetNumAtoms() <= 9:
        return False
    return all(a.GetSymbol() in ("C", "N", "O", "F") and a.GetFormalCharge() == 0 and a.GetNumRadicalElectrons() == 0
               for a in mol.GetAtoms())
