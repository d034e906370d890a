"""Fréchet ChemNet Distance (FCD) through fcd_torch, whose wheel ships the ChemNet weights.

fcd_torch's ``n_jobs`` > 1 uses a multiprocessing pool; flowdisco keeps it at 1 on small machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache


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
    return _fcd_model().precalc(list(smiles))


def fcd(generated: Sequence[str], reference: Sequence[str] | None = None, reference_stats: dict | None = None) -> float:
    """FCD between generated SMILES and reference SMILES (or precomputed reference statistics)."""
    model = _fcd_model()
    pref = reference_stats if reference_stats is not None else chemnet_stats(reference or [])
    return float(model.metric(pref, chemnet_stats(generated)))
