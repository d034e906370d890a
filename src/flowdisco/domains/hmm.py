"""Profile-HMM tools of the protein verifier (pyhmmer, offline).

:func:`build_family_hmm` builds a family HMM from unaligned training sequences: an HMM from one
sequence (the medoid by length), then twice: align every training sequence to the current HMM
(hmmalign) and rebuild the HMM from that alignment. :func:`hmm_hits` says which sequences the HMM
finds at E ≤ ``evalue``, with the database size fixed (Z = 1) so a design's verdict never depends on
the other designs searched with it. :func:`hmm_alignments` also returns each hit's bit score and the
residue aligned to every match state of the HMM, and :func:`conserved_states` finds the match states
where (nearly) every training sequence has the same residue: the family's anchors (for antibody V
domains, the two disulfide cysteines and the tryptophan of framework 2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

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


class HmmHit(NamedTuple):
    """One sequence's best-domain hit: full-sequence ``score`` (bits), ``evalue`` (Z = 1), and
    ``residues`` {match state (1-based): residue letter or '-' for a deletion} over the aligned span."""

    score: float
    evalue: float
    residues: dict[int, str]


def _match_residues(alignment) -> dict[int, str]:
    """{match state: residue} of a pyhmmer domain alignment; HMM insert columns ('.') are skipped."""
    out, state = {}, int(alignment.hmm_from)
    for h, t in zip(alignment.hmm_sequence, alignment.target_sequence, strict=True):
        if h == ".":
            continue
        out[state] = t.upper()
        state += 1
    return out


def hmm_alignments(hmm, seqs: Sequence[str], evalue: float = 1e-3, **options: object) -> list[HmmHit | None]:
    """Per sequence: its :class:`HmmHit` when ``hmm`` hits it at E ≤ ``evalue`` (Z = 1), else None."""
    out: list[HmmHit | None] = [None] * len(seqs)
    if not len(seqs):
        return out
    ph = _pyhmmer()
    block = _digital(seqs, hmm.alphabet)
    for hits in ph.hmmer.hmmsearch(hmm, block, cpus=1, Z=1, domZ=1, E=evalue, **options):
        for hit in hits:
            if hit.evalue <= evalue:
                name = hit.name.decode() if isinstance(hit.name, bytes) else str(hit.name)
                out[int(name[1:])] = HmmHit(float(hit.score), float(hit.evalue),
                                            _match_residues(hit.best_domain.alignment))
    return out


def conserved_states(hits: Sequence[HmmHit | None], min_share: float) -> dict[int, str]:
    """{match state: residue} for every state where at least ``min_share`` of ``hits`` (the missing
    ones count against) carry the same residue."""
    counts: dict[int, Counter] = {}
    for h in hits:
        for state, res in (h.residues.items() if h is not None else ()):
            counts.setdefault(state, Counter())[res] += 1
    n = len(hits)
    out = {}
    for state, c in sorted(counts.items()):
        res, k = c.most_common(1)[0]
        if res != "-" and n and k / n >= min_share:
            out[state] = res
    return out


def hmm_hits(hmm, seqs: Sequence[str], evalue: float = 1e-3, **options: object) -> np.ndarray:
    """Bool [n]: True where ``hmm`` hits the sequence with a full-sequence E-value ≤ ``evalue`` (Z = 1).
    ``options`` go to pyhmmer's pipeline (e.g. F1/F2/F3 filter thresholds)."""
    return np.array([h is not None for h in hmm_alignments(hmm, seqs, evalue, **options)], dtype=bool)
