"""Sequence domains: therapeutic peptides and protein sequences, as continuous or masked discrete flows.

Designs are amino-acid strings. Two encodings of a sequence of length ℓ ≤ L (``max_len``):
  continuous (Gaussian flow): x [L, 20], ±1 one-hots at the ℓ real positions, zero rows of padding,
      mask [L, 20]; decoded by argmax over the real (non-zero) rows;
  discrete (masked flow, ``flow_path = "masked"``): x [L] token ids 0..19 at real positions and
      PAD = −1 after them, mask [L]; decoded by reading ids until the first PAD.
Lengths of new designs are drawn from the training lengths.

Metrics: coverage = sphere exclusion on alignment identity (a new centre when identity < 0.35 to every
centre, the paper's protein criterion) plus ``coverage_kmer`` (sphere exclusion on the cosine
distance of 1-/2-mer spectra); Vendi with the cosine kernel on those spectra; novelty = 1 − mean
max identity to the training set (``max_identity``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from flowdisco.datafiles import read_sequence_file
from flowdisco.domains.base import Domain, package_dir, seeded_split, shipped_model_path
from flowdisco.flow.discrete import PAD
from flowdisco.metrics.identity import AMINO_ACIDS, identity_leaders, kmer_spectrum, max_identity


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """(header, sequence) pairs of a FASTA file (sequence upper-cased, trailing '*' stripped)."""
    out: list[tuple[str, str]] = []
    header, parts = None, []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith(">"):
            if header is not None:
                out.append((header, "".join(parts).upper().rstrip("*")))
            header, parts = line[1:], []
        elif line and header is not None:
            parts.append(line)
    if header is not None:
        out.append((header, "".join(parts).upper().rstrip("*")))
    return out


def longest_run(s: str) -> int:
    """Length of the longest homopolymer run in ``s`` (0 for the empty string)."""
    best, run = 0, 0
    for i, c in enumerate(s):
        run = run + 1 if i and c == s[i - 1] else 1
        best = max(best, run)
    return best


class SequenceDomain(Domain):
    """Shared behaviour of amino-acid sequence domains (subclasses give the data and the verifier)."""

    kind: ClassVar[str] = "sequence"
    alphabet: ClassVar[str] = AMINO_ACIDS
    max_len: ClassVar[int] = 50
    min_len: ClassVar[int] = 1
    identity_threshold: ClassVar[float] = 0.35
    kmer_threshold: ClassVar[float] = 0.3  # cosine distance of 1-/2-mer spectra for coverage_kmer
    strict_identity_threshold: ClassVar[float] = 0.7  # reported as coverage_id0.7
    identity_top_k: ClassVar[int | None] = 16
    gp_lengthscale: ClassVar[float] = 0.2  # on L2-normalised φ: median nearest-neighbour distance ≈ 0.24
    representation_layer = "encoder_head"
    default_dim: ClassVar[int] = 96  # 0.53 M parameters: ≈ 0.12 s per step of 64 peptides on one core
    default_depth: ClassVar[int] = 3

    def __init__(self, seed: int = 0, discrete: bool = False, data_file: str | None = None) -> None:
        self.seed = seed
        self.data_file = data_file  # the user's own training sequences (see flowdisco.datafiles)
        self.discrete = bool(discrete)
        if self.discrete:
            self.name = f"{type(self).name}-discrete"  # the registry name of the discrete variant
        self.V = len(self.alphabet)
        self.shape = (self.max_len,) if self.discrete else (self.max_len, self.V)
        self.representation_time = 1.0 if self.discrete else 0.9
        self._splits: dict[str, list[str]] | None = None
        self._ref_spectrum: np.ndarray | None = None

    @property
    def flow_path(self) -> str:  # type: ignore[override]
        return "masked" if self.discrete else "linear"

    def model_extra(self) -> dict[str, Any]:
        return {"vocab_size": self.V} if self.discrete else {}

    # ------------------------------------------------------------------ data
    def all_sequences(self) -> list[str]:
        """Every sequence of the data set (canonical letters, min_len ≤ length ≤ max_len)."""
        raise NotImplementedError

    def splits(self) -> dict[str, list[str]]:
        """Fixed train/valid/test split (80/10/10, seeded permutation of the distinct sequences)."""
        if self._splits is None:
            seqs = sorted(set(read_sequence_file(self.data_file, self.alphabet, self.min_len, self.max_len)
                              if self.data_file else self.all_sequences()))
            if not seqs:
                raise ValueError(f"{self.name}: the data set holds no usable sequence")
            self._splits = seeded_split(seqs, self.seed)
        return self._splits

    def usable(self, s: str) -> bool:
        return self.min_len <= len(s) <= self.max_len and set(s) <= set(self.alphabet)

    def encode(self, seqs: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Designs → (x, mask): continuous [n, L, V] ±1 one-hots, or discrete [n, L] ids with PAD."""
        idx = {c: i for i, c in enumerate(self.alphabet)}
        n, L = len(seqs), self.max_len
        tokens = torch.full((n, L), PAD, dtype=torch.long)
        for r, s in enumerate(seqs):
            if not self.usable(s):
                raise ValueError(f"{self.name}: cannot encode {s[:60]!r} (letters outside {self.alphabet} or "
                                 f"length outside {self.min_len}..{self.max_len})")
            tokens[r, : len(s)] = torch.tensor([idx[c] for c in s])
        real = tokens >= 0
        if self.discrete:
            return tokens.float(), real.float()
        onehot = torch.nn.functional.one_hot(tokens.clamp_min(0), self.V).float() * 2 - 1
        mask = real[..., None].float().expand(n, L, self.V).contiguous()
        return onehot * mask, mask

    def training_data(self) -> Tensor:
        return self._train_encoded()[0]

    def training_masks(self) -> Tensor:
        return self._train_encoded()[1]

    def _train_encoded(self) -> tuple[Tensor, Tensor]:
        if getattr(self, "_train_cache", None) is None:
            self._train_cache = self.encode(self.splits()["train"])
        return self._train_cache

    def training_lengths(self) -> Tensor:
        return torch.tensor([len(s) for s in self.splits()["train"]])

    def sample_masks(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Masks of ``n`` new designs with lengths drawn from the training lengths."""
        lengths = self.training_lengths()
        chosen = lengths[torch.randint(len(lengths), (n,), generator=generator)]
        real = (torch.arange(self.max_len)[None, :] < chosen[:, None]).float()
        return real if self.discrete else real[..., None].expand(n, self.max_len, self.V).contiguous()

    def decode(self, x: Tensor) -> list[str]:
        if self.discrete:
            out = []
            for row in x.round().long().tolist():
                letters = []
                for v in row:
                    if v < 0:
                        break
                    letters.append(self.alphabet[min(v, self.V - 1)])
                out.append("".join(letters))
            return out
        real = x.abs().sum(-1) > 0  # padding rows are exactly zero
        ids = x.argmax(-1)
        return ["".join(self.alphabet[i] for i, ok in zip(row, keep, strict=True) if ok)
                for row, keep in zip(ids.tolist(), real.tolist(), strict=True)]

    def reference_designs(self) -> list[str]:
        return list(self.splits()["train"])

    def dataset_keys(self) -> set[Hashable]:
        return {s for split in self.splits().values() for s in split}

    def test_designs(self) -> list[str]:
        return list(self.splits()["test"])

    def key(self, design: Any) -> Hashable:
        return design

    def default_network(self) -> tuple[str, dict]:
        io = {"input": "tokens", "output": "logits"} if self.discrete else {"input": "onehot", "output": "endpoint"}
        return "seq-mp", {"max_len": self.max_len, "vocab_size": self.V, "dim": self.default_dim,
                          "depth": self.default_depth, "heads": 4, **io}

    def pretrained_model_path(self) -> str | None:
        """The shipped model ``flowdisco/assets/{name}_model`` (split seed 0 only: another split's test
        set would overlap its training set), or None."""
        return shipped_model_path(f"{self.name.replace('-', '_')}_model") if self.seed == 0 else None

    def default_pretrain(self) -> dict:
        return {"steps": 6000, "batch_size": 64, "lr": 2e-3, "ema_sigma_rel": 0.05}

    def expand_defaults(self) -> dict[str, Any]:
        """Sized for a CPU: a few minutes per run (the paper's peptides: 100 rounds of 100 samples, W = 1000).
        Discrete tilt: α = 0.25 with the log-ratio clipped at ±1 nat, not the paper's α = 0.005 unclipped,
        whose weights collapse onto one design per round here (BENCHMARKS.md, tilt sweep)."""
        return {**super().expand_defaults(), "rounds": 8, "samples_per_round": 64, "warmup_valid": 256,
                "warmup_batch": 256, "finetune_steps": 100, "finetune_batch": 64, "finetune_lr": 1e-4,
                "sampler_steps": 50, "eval_every": 4, "eval_samples": 500, "eval_valid": 200,
                "surrogate": "gp", "surrogate_options": {"lengthscale": self.gp_lengthscale},
                "guidance_strength": 10.0, "tilt_alpha": 0.25, "tilt_log_ratio_clip": 1.0}

    # ------------------------------------------------------------------ descriptors and metrics
    def descriptors(self, designs: Sequence[Any]) -> Tensor:
        """L2-normalised 1-/2-mer spectra [n, 420]."""
        return torch.from_numpy(kmer_spectrum(list(designs), self.alphabet))

    def similarity(self, a: Tensor, b: Tensor) -> Tensor:
        """Cosine similarity of spectra (a PSD kernel: Vendi's)."""
        return (a.double() @ b.double().T).clamp(0.0, 1.0)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        return 1.0 - self.similarity(a, b)

    @property
    def balance_radius(self) -> float:
        """Coverage here aligns sequences; :meth:`distance` is the spectra's, so its radius is the k-mer one."""
        return self.kmer_threshold

    def coverage(self, descriptors: Tensor, threshold: float | None = None,
                 designs: Sequence[Any] | None = None) -> int:
        """Identity sphere exclusion on ``designs`` (new centre if identity < ``threshold``, default
        0.35); without designs, sphere exclusion on the spectra's cosine distance."""
        if designs is None:
            return super().coverage(descriptors, self.kmer_threshold if threshold is None else threshold)
        t = self.identity_threshold if threshold is None else threshold
        return len(identity_leaders(list(designs), t, top_k=self.identity_top_k))

    def design_metrics(self, designs: Sequence[Any]) -> dict[str, float]:
        designs = list(designs)
        desc = self.descriptors(designs)
        return {"coverage_kmer": float(super().coverage(desc, self.kmer_threshold)),
                f"coverage_id{self.strict_identity_threshold:g}": float(
                    self.coverage(desc, self.strict_identity_threshold, designs=designs)),
                "mean_length": float(np.mean([len(s) for s in designs])) if designs else float("nan")}

    similarity_name = "sequence identity (global alignment)"

    def property_table(self, designs: Sequence[Any]) -> dict[str, np.ndarray] | None:
        """Length and composition: hydrophobic (AILMFVWY), positive (KR) and negative (DE) fractions."""
        seqs = [str(s) for s in designs]
        frac = lambda letters: np.array([sum(c in letters for c in s) / max(len(s), 1) for s in seqs])  # noqa: E731
        return {"Length": np.array([len(s) for s in seqs], dtype=float), "hydrophobic fraction": frac("AILMFVWY"),
                "positive fraction": frac("KR"), "negative fraction": frac("DE")}

    def nearest_reference_similarity(self, descriptors: Tensor, designs: Sequence[Any] | None = None) -> Tensor:
        """Max identity of each design to the training set [n] (k-mer shortlist of 16, then alignment);
        without designs, the max cosine of the spectra."""
        if designs is None:
            return super().nearest_reference_similarity(descriptors)
        ref = self.reference_designs()
        if self._ref_spectrum is None:
            self._ref_spectrum = kmer_spectrum(ref, self.alphabet)
        return torch.from_numpy(max_identity(list(designs), ref, top_k=self.identity_top_k,
                                             ref_spectrum=self._ref_spectrum))

    def plot_designs(self, path: str, designs: Sequence[Any], legends: Sequence[str] = ()) -> bool:
        from flowdisco.plotting import sequence_list

        sequence_list(path, list(designs), list(legends))
        return True


# ---------------------------------------------------------------------------------------- peptides
class Peptides(SequenceDomain):
    """Antimicrobial peptides of modlamp (length ≤ 50) with a computational-proxy verifier.

    Verifier (a proxy, not wet-lab activity): the AMP-likeness classifier (P ≥ its threshold) AND
    length 8–50 AND canonical amino acids AND net charge at pH 7.4 ≥ +2 AND hydrophobic ratio in
    [0.3, 0.6] (modlamp's GlobalDescriptor).
    """

    name = "peptides"
    max_len = 50
    min_len = 2
    verify_rules: ClassVar[dict] = {"min_length": 8, "max_length": 50, "min_charge": 2.0,
                                    "hydrophobic_ratio": (0.3, 0.6)}

    def __init__(self, seed: int = 0, discrete: bool = False, classifier_dir: str | None = None,
                 data_file: str | None = None) -> None:
        super().__init__(seed=seed, discrete=discrete, data_file=data_file)
        self.classifier_dir = classifier_dir
        self._classifier = None

    def all_sequences(self) -> list[str]:
        from flowdisco.domains.amp import amp_dataset

        seqs, labels = amp_dataset(self.max_len)
        return [s for s, y in zip(seqs, labels, strict=True) if y == 1 and self.usable(s)]

    def classifier(self):
        if self._classifier is None:
            from flowdisco.domains.amp import AMPClassifier

            self._classifier = AMPClassifier(self.classifier_dir)
        return self._classifier

    def rule_checks(self, designs: Sequence[str]) -> dict[str, np.ndarray]:
        """Per rule a bool array [n]: length, alphabet, charge, hydrophobic_ratio."""
        from modlamp.descriptors import GlobalDescriptor

        r = self.verify_rules
        seqs = [str(s) if s is not None else "" for s in designs]
        length = np.array([r["min_length"] <= len(s) <= r["max_length"] for s in seqs])
        alphabet = np.array([bool(s) and set(s) <= set(self.alphabet) for s in seqs])
        charge = np.zeros(len(seqs), dtype=bool)
        hydro = np.zeros(len(seqs), dtype=bool)
        ok = [i for i in range(len(seqs)) if alphabet[i]]
        if ok:
            sub = [seqs[i] for i in ok]
            g = GlobalDescriptor(sub)
            g.calculate_charge(ph=7.4, amide=False)
            charge[ok] = g.descriptor[:, 0] >= r["min_charge"]
            g = GlobalDescriptor(sub)
            g.hydrophobic_ratio()
            lo, hi = r["hydrophobic_ratio"]
            hydro[ok] = (g.descriptor[:, 0] >= lo) & (g.descriptor[:, 0] <= hi)
        return {"length": length, "alphabet": alphabet, "charge": charge, "hydrophobic_ratio": hydro}

    def verify(self, designs: Sequence[Any]) -> Sequence[bool]:
        rules = self.rule_checks(designs)
        ok = np.logical_and.reduce(list(rules.values()))
        if ok.any():
            idx = np.flatnonzero(ok)
            clf = self.classifier()
            ok[idx] = clf.probability([designs[i] for i in idx]) >= clf.threshold
        return ok.tolist()

    def property_table(self, designs: Sequence[Any]) -> dict[str, np.ndarray] | None:
        """modlamp's descriptors (see :meth:`peptide_descriptors`)."""
        return self.peptide_descriptors([str(d) for d in designs]) if len(designs) else None

    def peptide_descriptors(self, designs: Sequence[str]) -> dict[str, np.ndarray]:
        """modlamp global descriptors per design (length, charge, pI, instability, aromaticity,
        aliphatic index, Boman index, hydrophobic ratio, Eisenberg hydrophobic moment)."""
        from modlamp.descriptors import GlobalDescriptor, PeptideDescriptor

        seqs = list(designs)
        g = GlobalDescriptor(seqs)
        g.calculate_all(ph=7.4, amide=False)
        names = list(g.featurenames)
        out = {n: g.descriptor[:, i].astype(float) for i, n in enumerate(names)}
        p = PeptideDescriptor(seqs, "eisenberg")
        p.calculate_moment()
        out["HydrophobicMoment"] = p.descriptor[:, 0].astype(float)
        return out


# ---------------------------------------------------------------------------------------- proteins
class Proteins(SequenceDomain):
    """Antibody heavy-chain variable (IGHV/VH/VHH) germline protein sequences — one protein family.

    Data: the V-gene amino-acid sequences (human, mouse, alpaca) shipped inside the ``riot_na`` wheel
    (read as a file, never imported; the data carry a CC BY-NC 4.0 licence — non-commercial use).
    Verifier (real tools, offline), all of:
    - canonical letters and no homopolymer run longer than 6;
    - a pyhmmer hit with E ≤ 1e-3 against a profile HMM of the family, built with pyhmmer from the
      training sequences (:func:`build_family_hmm`);
    - a bit score at least the ``min_score_quantile`` quantile of the training sequences' scores (a
      hit that HMMER finds but that scores below 99 % of real V genes is a poor family member);
    - the anchors: at every HMM match state where ≥ ``anchor_conservation`` of the training sequences
      carry one residue, the design carries it too. On the V genes these are Cys22, Trp36, Tyr94 and
      Cys96 of the 97-state HMM — the disulfide pair and the framework-2 tryptophan of the Ig fold.
    Its acceptance of held-out real and rejection of shuffled and random sequences are measured by
    ``benchmarks/verifiers.py`` (BENCHMARKS.md). Set ``min_score_quantile`` / ``anchor_conservation``
    to None to drop those two checks.
    """

    name = "proteins"
    max_len = 104
    min_len = 80
    max_homopolymer = 6
    evalue = 1e-3
    hmm_options: ClassVar[dict] = {}  # pyhmmer pipeline options (default: HMMER's)
    min_score_quantile: float | None = 0.01
    anchor_conservation: float | None = 0.99
    identity_top_k = 8
    # V genes share 50–90 % identity: at 0.35 a whole family is 1–2 clusters, at 0.9 every design its own;
    # 200 training V genes form 16 clusters at 0.7
    strict_identity_threshold = 0.7
    DATA_FILE = "databases/gene_db/aa_genes_deduplicated/v_genes/all_species.fasta"

    def __init__(self, seed: int = 0, discrete: bool = False, data_file: str | None = None) -> None:
        super().__init__(seed=seed, discrete=discrete, data_file=data_file)
        self._hmm = None
        self._profile: dict | None = None

    def all_sequences(self) -> list[str]:
        path = package_dir("riot_na", "bio") / self.DATA_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed 'riot_na' package")
        heavy = [s for h, s in read_fasta(path) if h.split()[0].upper().startswith(("IGHV", "VH"))]
        return [s for s in heavy if self.usable(s)]

    def default_pretrain(self) -> dict:
        return {**super().default_pretrain(), "steps": 4000}  # 646 training sequences: fewer steps suffice

    def family_hmm(self):
        if self._hmm is None:
            from flowdisco.domains.hmm import build_family_hmm

            self._hmm = build_family_hmm(self.splits()["train"], name=self.name)
        return self._hmm

    def family_profile(self) -> dict:
        """The verifier's calibration from the training split: {"min_score": bits or None,
        "anchors": {match state: residue}} (cached)."""
        if self._profile is None:
            from flowdisco.domains.hmm import conserved_states, hmm_alignments

            hits = hmm_alignments(self.family_hmm(), self.splits()["train"], evalue=self.evalue, **self.hmm_options)
            scores = np.array([h.score for h in hits if h is not None])
            q = self.min_score_quantile
            self._profile = {
                "min_score": float(np.quantile(scores, q)) if q is not None and len(scores) else None,
                "anchors": conserved_states(hits, self.anchor_conservation) if self.anchor_conservation else {}}
        return self._profile

    def verify(self, designs: Sequence[Any]) -> Sequence[bool]:
        from flowdisco.domains.hmm import hmm_alignments

        seqs = [str(s) if s is not None else "" for s in designs]
        ok = np.array([bool(s) and set(s) <= set(self.alphabet) and longest_run(s) <= self.max_homopolymer
                       for s in seqs])
        if ok.any():
            idx = np.flatnonzero(ok)
            profile = self.family_profile()
            hits = hmm_alignments(self.family_hmm(), [seqs[i] for i in idx], evalue=self.evalue, **self.hmm_options)
            ok[idx] = [h is not None
                       and (profile["min_score"] is None or h.score >= profile["min_score"])
                       and all(h.residues.get(k) == r for k, r in profile["anchors"].items())
                       for h in hits]
        return ok.tolist()
