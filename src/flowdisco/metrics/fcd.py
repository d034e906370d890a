"""Fréchet ChemNet Distance (FCD) through fcd_torch, whose wheel ships the ChemNet weights.

fcd_torch's ``n_jobs`` > 1 uses a multiprocessing pool; flowdisco keeps it at 1 on small machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from torch import Tensor


@cache
def _fcd_model():
    try:
        from fcd_torch import FCD
    except ImportError:
        raise ImportError("FCD needs fcd_torch: pip install 'flowdisco[chem]'") from None
    return FCD(device="cpu", n_jobs=1)


def chemnet_stats(smiles: Sequence[str]) -> dict:
    """Mean and covariance of ChemNet activations of ≥ 2 molecules (for repeated comparisons)."""
    if len(smiles) < 2:
        raise ValueError(f"FCD needs at least 2 molecules, got {len(smiles)}")
    acts = chemnet_features(smiles).numpy()
    return {"mu": acts.mean(0), "sigma": np.cov(acts.T)}


def fcd(generated: Sequence[str], reference: Sequence[str] | None = None, reference_stats: dict | None = None) -> float:
    """FCD between generated SMILES and reference SMILES (or precomputed reference statistics)."""
    from flowdisco.metrics.frechet import frechet_from_stats

    pref = reference_stats if reference_stats is not None else chemnet_stats(reference or [])
    pgen = chemnet_stats(generated)
    return frechet_from_stats(pref["mu"], pref["sigma"], pgen["mu"], pgen["sigma"])


def chemnet_features(smiles: Sequence[str], batch_size: int = 512) -> Tensor:
    """ChemNet penultimate activations [n, 512] (float64): the Fréchet distance of two sets of
    these is the FCD.

    Batched here rather than by ``FCD.get_predictions``, which calls ``np.row_stack`` (removed in
    NumPy 2.5); the SMILES encoding and the network are fcd_torch's own.
    """
    from fcd_torch.utils import SmilesDataset

    model = _fcd_model()
    data = SmilesDataset(list(smiles), canonize=model.canonize)
    out = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            batch = torch.stack([torch.as_tensor(data[j]) for j in range(i, min(i + batch_size, len(data)))])
            out.append(model.model(batch.transpose(1, 2).float()).double())
    return torch.cat(out) if out else torch.zeros(0, 512, dtype=torch.float64)
