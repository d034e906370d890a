"""Profile-HMM tools of the protein verifier (pyhmmer, offline).

:func:`build_family_hmm` builds a family HMM from unaligned training sequences: an HMM from one
sequence (the medoid by length), then twice: align every training sequence to the current HMM
(hmmalign) and rebuild the HMM from that alignment. :func:`hmm_hits` says which sequences the HMM
finds at E ≤ ``evalue``, with the database size fixed (Z = 1) so a design's verdict never depends on
the other designs searched with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pyhmmer():
    try:
        import pyhmmer
    except ImportError:
        raise ImportError("the protein verifier needs pyhmmer: pip install 'flowdisco[bio]'") from None
    return pyhmmer


def _digital(seqs: Sequence[str], alphabet):
    easel = _pyhmmer().easel
    return easel.DigitalSequenceBlock(alphabet, [
        easel.TextSequence(name=f"s{i}".encode(), sequence=s).digitize(alphabet) for i, s in enumerate(seqs)])


def build_family_hmm(seqs: Sequence[str], name: str = "family", iterations: int = 2):
    """A profile HMM (pyhmmer.plan7.HMM) of a family of homologous, unaligned protein sequences."""
    if not seqs:
        raise ValueError("cannot build a family HMM from no sequences")
    ph = _pyhmmer()
    alphabet = ph.easel.Alphabet.amino()
    block = _digital(seqs, alphabet)
    builder = ph.plan7.Builder(alphabet, seed=42)
    background = ph.plan7.Background(alphabet)
    lengths = np.array([len(s) for s in seqs])
    seed_idx = int(np.argsort(lengths)[len(lengths) // 2])
    hmm, _, _ = builder.build(block[seed_idx], background)
    for _ in range(iterations):
        msa = ph.hmmer.hmmalign(hmm, block, trim=True, digitize=True)
        msa.name = name.encode()
        hmm, _, _ = builder.build_msa(msa, background)
    hmm.name = name.encode()
    return hmm


def hmm_hits(hmm, seqs: Sequence[str], evalue: float = 1e-3, **options: object) -> np.ndarray:
    """Bool [n]: True where ``hmm`` hits the sequence with a full-sequence E-value ≤ ``evalue`` (Z = 1).
    ``options`` go to pyhmmer's pipeline (e.g. F1/F2/F3 filter thresholds)."""
    out = np.zeros(len(seqs), dtype=bool)
    if not len(seqs):
        return out
    ph = _pyhmmer()
    block = _digital(seqs, hmm.alphabet)
    for hits in ph.hmmer.hmmsearch(hmm, block, cpus=1, Z=1, domZ=1, E=evalue, **options):
        for hit in hits:
            if hit.evalue <= evalue:
                name = hit.name.decode() if isinstance(hit.name, bytes) else str(hit.name)
                out[int(name[1:])] = True
    return out
