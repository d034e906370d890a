"""Fréchet ChemNet Distance (FCD) through fcd_torch, whose wheel ships the ChemNet weights.

fcd_torch's ``n_jobs`` > 1 uses a multiprocessing pool; flowdisco keeps it at 1 on small machines.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fcd_torch calls np.row_stack
        return _fcd_model().precalc(list(smiles))


def fcd(generated: Sequence[str], reference: Sequence[str] | None = None, reference_stats: dict | None = None) -> float:
    """FCD between generated SMILES and reference SMILES (or precomputed reference statistics)."""
    from flowdisco.metrics.frechet import frechet_from_stats

    pref = reference_stats if reference_stats is not None else chemnet_stats(reference or [])
    pgen = chemnet_stats(generated)
    return frechet_from_stats(pref["mu"], pref["sigma"], pgen["mu"], pgen["sigma"])


def chemnet_features(smiles: Sequence[str]) -> Tensor:
    """ChemNet penultimate activations [n, 512] (float64): the Fréchet distance of two sets of
    these is the FCD."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fcd_torch calls np.row_stack
        return torch.from_numpy(_fcd_model().get_predictions(list(smiles))).double()
