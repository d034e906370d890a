"""The AMP-likeness classifier behind the peptide verifier — a computational proxy, not wet-lab activity.

A random forest on amino-acid (20) and dipeptide (400) composition separates modlamp's antimicrobial
peptides from its UniProt negatives (both at length ≤ 50 here). Those negatives differ from AMPs in
length and composition, so the cross-validated ROC-AUC overstates how well the classifier would
pick out real antimicrobial activity: it scores "looks like a known AMP", nothing more.

Trained by ``flowdisco train-verifier peptides`` and shipped in ``flowdisco/assets/amp_classifier``
as plain arrays (safetensors) plus JSON with its 5-fold cross-validated ROC-AUC: no pickle.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from flowdisco.forest import Forest
from flowdisco.io import CheckpointError, atomic_write_json, read_json
from flowdisco.metrics.identity import AMINO_ACIDS, composition

MAX_LENGTH = 50
FOREST_NAME = "forest.safetensors"
META_NAME = "classifier.json"


def composition_features(seqs: Sequence[str]) -> np.ndarray:
    """Amino-acid and dipeptide composition [n, 420] (fractions; unknown letters are skipped)."""
    return composition(seqs, AMINO_ACIDS)


def amp_dataset(max_length: int = MAX_LENGTH) -> tuple[list[str], np.ndarray]:
    """modlamp's AMPs (label 1) and UniProt non-AMPs (0), canonical letters, length ≤ max_length."""
    try:
        from modlamp.datasets import load_AMPvsUniProt
    except ImportError:
        raise ImportError("the peptide data need modlamp: pip install 'flowdisco[bio]'") from None
    data = load_AMPvsUniProt()
    canon = set(AMINO_ACIDS)
    seqs, labels = [], []
    for s, y in zip(data.sequences, data.target, strict=True):
        s = str(s).strip().upper()
        if s and len(s) <= max_length and set(s) <= canon:
            seqs.append(s)
            labels.append(int(y))
    return seqs, np.asarray(labels)


def train_amp_classifier(out_dir: str | os.PathLike, n_trees: int = 100, min_samples_leaf: int = 3,
                         seed: int = 0, folds: int = 5, threshold: float = 0.5) -> dict[str, Any]:
    """Cross-validate, then fit on all data and write the forest and its JSON record to ``out_dir``."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    t0 = time.perf_counter()
    seqs, y = amp_dataset()
    x = composition_features(seqs)

    def make() -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=n_trees, min_samples_leaf=min_samples_leaf, random_state=seed,
                                      n_jobs=1)

    aucs, accs = [], []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        p = make().fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
        aucs.append(float(roc_auc_score(y[te], p)))
        accs.append(float(((p >= threshold) == y[te]).mean()))
    model = make().fit(x, y)
    forest = Forest.from_sklearn(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = forest.save(out / FOREST_NAME)
    info = {"model": "random forest on amino-acid + dipeptide composition (420 features)",
            "proxy": "AMP-likeness vs modlamp's UniProt negatives; not a measurement of antimicrobial activity",
            "data": "modlamp AMPvsUniProt, canonical letters, length <= 50",
            "n_sequences": len(seqs), "n_amp": int(y.sum()), "n_trees": n_trees,
            "min_samples_leaf": min_samples_leaf, "seed": seed, "threshold": threshold,
            "cv_folds": folds, "cv_roc_auc_mean": float(np.mean(aucs)), "cv_roc_auc_std": float(np.std(aucs)),
            "cv_accuracy_mean": float(np.mean(accs)), "n_nodes": forest.n_nodes,
            "seconds": time.perf_counter() - t0, "weights": FOREST_NAME, "sha256": digest}
    atomic_write_json(out / META_NAME, info)
    return info


def shipped_classifier_dir() -> Path:
    return Path(str(resources.files("flowdisco") / "assets" / "amp_classifier"))


class AMPClassifier:
    """P(AMP-like) of peptide strings, from a directory written by :func:`train_amp_classifier`."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        d = Path(directory) if directory is not None else shipped_classifier_dir()
        if not (d / META_NAME).is_file():
            raise CheckpointError(f"no AMP classifier in {d} (train one with `flowdisco train-verifier peptides`)")
        self.info = read_json(d / META_NAME, what="AMP classifier record")
        self.forest = Forest.load(d / self.info.get("weights", FOREST_NAME), self.info.get("sha256"))
        self.threshold = float(self.info.get("threshold", 0.5))

    def probability(self, seqs: Sequence[str]) -> np.ndarray:
        if not len(seqs):
            return np.zeros(0)
        return self.forest.predict_proba(composition_features(seqs))
