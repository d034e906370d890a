"""Shared machinery of the molecule domains (qm9, moses): graph tensors, SMILES designs, fixed splits,
cached encodings, Morgan fingerprints with Tanimoto similarity, RDKit LeaderPicker coverage, and
novelty against the training set by RDKit's bulk Tanimoto.

Two model families share this machinery: the Gaussian flow on the dense ±1 one-hot graphs [N, F] of
:mod:`flowdisco.domains.molgraph` (``qm9``, ``moses`` and their decoding variants), and, with
``discrete=True`` (``qm9-discrete``, ``moses-discrete``), a masked discrete flow on the same graphs
written as L = N + N(N−1)/2 tokens (one per atom, then one per atom pair; see
:mod:`flowdisco.nn.graph`), whose denoiser is the same graph transformer. Both decode through the
same dense argmax decoder, so validity and every metric are computed by the same code.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowdisco.datafiles import read_smiles_file
from flowdisco.domains.base import Domain, seeded_split
from flowdisco.domains.molgraph import BOND_CLASSES, DECODINGS, GraphSpec, _rdkit, canonical
from flowdisco.domains.rings import RING_RULES, cached_ring_systems, unknown_ring_systems
from flowdisco.io import CheckpointError, atomic_write_json, load_tensors, read_json, save_tensors
from flowdisco.nn.graph import graph_token_count, graph_token_mask, onehots_to_tokens, tokens_to_onehots

log = logging.getLogger("flowdisco")

TEST_FCD_MOLECULES = 10_000  # test molecules behind the FCD-to-test statistics


def cache_dir() -> Path:
    return Path(os.environ.get("FLOWDISCO_CACHE", Path.home() / ".cache" / "flowdisco"))


def morgan_bits(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> Tensor:
    """Morgan fingerprints as a bool tensor [n, n_bits] (all-zero rows for unparsable SMILES)."""
    Chem = _rdkit()
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=bool)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s) if s else None
        if mol is not None:
            out[i] = gen.GetFingerprintAsNumPy(mol).astype(bool)
    return torch.from_numpy(out)


def _digest(smiles: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(smiles).encode()).hexdigest()[:16]


def cached_canonical(smiles: Sequence[str]) -> list[str | None]:
    """Canonical SMILES of ``smiles`` (None where RDKit cannot parse one), cached on disk under the
    list's checksum (so domains with the same molecules share it): the canonicalisation of a whole data
    set takes RDKit ~17 s for QM9, once per machine instead of once per process."""
    def compute() -> list[str | None]:
        if len(smiles) >= 100_000:  # MOSES's 1.76 M molecules: minutes of RDKit, once
            log.info("canonicalising %d SMILES once for this machine (cached in %s)", len(smiles), cache_dir())
        return [canonical(s) for s in smiles]

    return cached_json_list(f"canonical-{_digest(smiles)}.json", "canonical-SMILES cache", compute,
                            expected_length=len(smiles))


def cached_json_list(name: str, what: str, compute: Callable[[], list], expected_length: int | None = None) -> list:
    """A list kept as JSON in :func:`cache_dir` under ``name``: read back when the file holds a list (of
    ``expected_length`` items, if given), else ``compute()``d and written atomically; a corrupt file is
    ignored with a warning."""
    cached = cache_dir() / name
    if cached.is_file():
        try:
            out = read_json(cached, what)
            if isinstance(out, list) and (expected_length is None or len(out) == expected_length):
                return out
        except CheckpointError:
            pass
        log.warning("ignoring a corrupt cache file %s", cached)
    out = compute()
    atomic_write_json(cached, out)
    return out


def cached_morgan_bits(smiles: Sequence[str]) -> Tensor:
    """:func:`morgan_bits` of ``smiles``, cached on disk as packed bits under the list's checksum (the
    training set's fingerprints: ~14 s for QM9's 105,000 molecules)."""
    cached = cache_dir() / f"morgan-{_digest(smiles)}.safetensors"
    if cached.is_file():
        try:
            packed = load_tensors(cached)["packed"].numpy()
            if packed.shape == (len(smiles), 2048 // 8):
                return torch.from_numpy(np.unpackbits(packed, axis=1).astype(bool))
        except (CheckpointError, KeyError):
            pass
        log.warning("ignoring a corrupt cache file %s", cached)
    if len(smiles) >= 100_000:
        log.info("fingerprinting %d molecules once for this machine (cached in %s)", len(smiles), cached.parent)
    bits = morgan_bits(smiles)
    save_tensors(cached, {"packed": torch.from_numpy(np.packbits(bits.numpy(), axis=1))})
    return bits


def tanimoto(a: Tensor, b: Tensor) -> Tensor:
    """Tanimoto similarity [n, m] of bit matrices a [n, d], b [m, d]."""
    af, bf = a.float(), b.float()
    inter = af @ bf.T
    union = af.sum(1, keepdim=True) + bf.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter)).double()


def _bitvects(bits: Tensor) -> list:
    from rdkit import DataStructs

    out = []
    for row in bits.numpy():
        bv = DataStructs.ExplicitBitVect(len(row))
        bv.SetBitsFromList(np.flatnonzero(row).tolist())
        out.append(bv)
    return out


class MoleculeDomain(Domain):
    """Shared behaviour of molecule domains: graph tensors, SMILES designs, fingerprints."""

    kind = "graph"
    spec: GraphSpec = GraphSpec()
    coverage_threshold = 0.85  # Tanimoto *distance* of LeaderPicker
    extra_coverage_thresholds = (0.7, 0.9)  # finer, and stricter (a new cluster needs distance ≥ 0.9)
    representation_layer = "node_head"

    def __init__(self, seed: int = 0, max_train: int | None = None, data_file: str | None = None,
                 decoding: str = "argmax", discrete: bool = False, ring_systems: str = "any") -> None:
        if ring_systems not in RING_RULES:
            raise ValueError(f"unknown ring_systems rule {ring_systems!r}; choose one of {', '.join(RING_RULES)}")
        if decoding not in DECODINGS:
            raise ValueError(f"unknown decoding {decoding!r}; choose one of {', '.join(DECODINGS)}")
        if discrete and decoding != "argmax":
            raise ValueError("the discrete (masked-flow) molecule domains sample bond classes, not scores: "
                             "they decode as drawn (decoding 'argmax'), not capped or connected")
        self.decoding = decoding
        self.discrete = bool(discrete)
        if decoding != "argmax":  # the registry name of the variant (qm9-capped), recorded in run configs
            self.name = f"{type(self).name}-{decoding}"
        if self.discrete:
            self.name = f"{type(self).name}-discrete"
            self.representation_time = 1.0  # tokens are not noised; φ reads the clean graph
        self.ring_systems = ring_systems  # "known": the verifier also asks for ring systems of the training set
        if ring_systems == "known":
            self.name = f"{self.name}-known-rings"
        self.seed = seed
        self.max_train = max_train
        self.data_file = data_file  # the user's own training SMILES (see flowdisco.datafiles)
        self.shape = (graph_token_count(self.spec.max_atoms),) if self.discrete else self.spec.shape
        self._train_x: Tensor | None = None
        self._train_tokens: Tensor | None = None  # the discrete variant's token graphs of _train_x
        self._train_sizes: Tensor | None = None
        self._train_smiles: list[str] | None = None
        self._splits: dict[str, list[str]] | None = None
        self._ref_fps: list | None = None
        self._known_rings: set[str] | None = None

    # ------------------------------------------------------------------ verifier
    def base_rejection(self, smiles: str) -> str | None:
        """The first check of the domain's own verifier that ``smiles`` fails, in words; None when it
        passes or the domain cannot say."""
        return super().rejection_reason(smiles)

    def rejection_reason(self, design: Any) -> str | None:
        why = self.base_rejection(design)
        if why is None and self.ring_systems == "known" and unknown_ring_systems(design, self.known_ring_systems()):
            return "a ring system not in the training set"
        return why

    def check(self, designs: Sequence[Any]) -> np.ndarray:
        """:meth:`Domain.check`, and with ``ring_systems="known"`` every ring system of a valid design must
        occur in a training molecule (applied here, after the domain's own ``verify``, so that it holds
        for every verifier, in worker processes or not)."""
        designs = list(designs)
        flags = super().check(designs)
        if self.ring_systems == "known":
            known = self.known_ring_systems()
            flags = np.array([ok and not unknown_ring_systems(d, known) for ok, d in zip(flags, designs, strict=True)],
                             dtype=bool)
        return flags

    def known_ring_systems(self) -> set[str]:
        """The ring systems of the training molecules (:meth:`reference_designs`; see
        :mod:`flowdisco.domains.rings`)."""
        if self._known_rings is None:
            self._known_rings = cached_ring_systems(self.reference_designs())
        return self._known_rings

    # ------------------------------------------------------------------ data
    def all_smiles(self) -> list[str]:
        raise NotImplementedError

    def splits(self) -> dict[str, list[str]]:
        if self._splits is None:
            smiles = read_smiles_file(self.data_file) if self.data_file else self.all_smiles()
            self._splits = seeded_split(smiles, self.seed)
        return self._splits

    def _encode_train(self) -> None:
        train = self.splits()["train"]
        if self.max_train is not None:
            train = train[: self.max_train]
        digest = hashlib.sha256(("\n".join(train) + repr(self.spec)).encode()).hexdigest()[:16]
        cached = cache_dir() / f"{type(self).name}-train-{digest}.safetensors"  # shared by decodings
        if cached.is_file():
            try:
                t = load_tensors(cached)
                self._train_x, self._train_sizes = t["x"], t["sizes"]
                self._train_smiles = [s for s, keep in zip(train, t["kept"].bool().tolist(), strict=True) if keep]
                return
            except (CheckpointError, KeyError):
                log.warning("ignoring a corrupt cache file %s", cached)
        xs, sizes, kept = [], [], []
        for s in train:
            x = self.spec.encode(s)
            kept.append(x is not None)
            if x is not None:
                xs.append(x)
                sizes.append(self.spec.atom_count(x))
        skipped = len(train) - len(xs)
        if not xs:
            raise ValueError(f"none of the {len(train)} {self.name} training molecules could be encoded")
        if skipped:
            log.info("%s: skipped %d of %d training molecules the graph encoding cannot represent", self.name,
                     skipped, len(train))
        self._train_x = torch.stack(xs)
        self._train_sizes = torch.tensor(sizes)
        self._train_smiles = [s for s, k in zip(train, kept, strict=True) if k]
        save_tensors(cached, {"x": self._train_x, "sizes": self._train_sizes,
                              "kept": torch.tensor(kept, dtype=torch.uint8)})

    @property
    def flow_path(self) -> str:  # type: ignore[override]
        return "masked" if self.discrete else "linear"

    def model_extra(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size} if self.discrete else {}

    @property
    def vocab_size(self) -> int:
        """Token classes of the discrete variant: E·Q atom classes and the bond classes."""
        return len(self.spec.elements) * len(self.spec.charges) + len(BOND_CLASSES)

    def to_tokens(self, x: Tensor) -> Tensor:
        """Dense graphs [B, N, F] → token graphs [B, L] (float ids, PAD at padding), in chunks."""
        E, Q = len(self.spec.elements), len(self.spec.charges)
        return torch.cat([onehots_to_tokens(x[i:i + 4096], E, Q, len(BOND_CLASSES)).float()
                          for i in range(0, len(x), 4096)]) if len(x) else torch.empty(0, *self.shape)

    def to_dense(self, tokens: Tensor) -> Tensor:
        """Token graphs [B, L] → dense ±1 graphs [B, N, F] (padding and mask tokens all zero)."""
        return tokens_to_onehots(tokens.round().long(), self.spec.max_atoms, len(self.spec.elements),
                                 len(self.spec.charges), len(BOND_CLASSES))

    def _masks_for_sizes(self, sizes: Tensor) -> Tensor:
        if not self.discrete:
            return self.spec.mask_for_sizes(sizes)
        return graph_token_mask(torch.arange(self.spec.max_atoms)[None, :] < sizes[:, None])

    def training_data(self) -> Tensor:
        if self._train_x is None:
            self._encode_train()
        if self.discrete:
            if self._train_tokens is None:
                self._train_tokens = self.to_tokens(self._train_x)
            return self._train_tokens
        return self._train_x

    def training_masks(self) -> Tensor:
        self.training_data()
        return self._masks_for_sizes(self._train_sizes)

    def sample_masks(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Atom counts drawn from the training distribution."""
        self.training_data()
        idx = torch.randint(len(self._train_sizes), (n,), generator=generator)
        return self._masks_for_sizes(self._train_sizes[idx])

    def data_set_smiles(self) -> list[str]:
        """Every molecule of the data set, all splits: what :meth:`dataset_keys` holds."""
        return [s for split in self.splits().values() for s in split]

    def _canonical_map(self) -> dict[str, str | None]:
        """Raw → canonical SMILES of :meth:`data_set_smiles` (cached on disk, see cached_canonical)."""
        if getattr(self, "_canonical", None) is None:
            raw = self.data_set_smiles()
            self._canonical = dict(zip(raw, cached_canonical(raw), strict=True))
        return self._canonical

    def canonical_of(self, smiles: Sequence[str]) -> list[str | None]:
        """Canonical SMILES of molecules of this data set (looked up in the cached canonicalisation;
        computed for any other)."""
        known = self._canonical_map()
        return [known[s] if s in known else canonical(s) for s in smiles]

    def reference_designs(self) -> list[str]:
        if getattr(self, "_reference_designs", None) is None:
            self.training_data()
            # training molecules were kept only if they encode, so every one parses
            self._reference_designs = [c or s for c, s in zip(self.canonical_of(self._train_smiles),
                                                              self._train_smiles, strict=True)]
        return self._reference_designs

    def dataset_keys(self) -> set[Hashable]:
        """Canonical SMILES of every molecule in the data set (all splits)."""
        if getattr(self, "_dataset_keys", None) is None:
            self._dataset_keys = {c for c in self._canonical_map().values() if c}
        return self._dataset_keys

    def plot_designs(self, path: str, designs: Sequence[Any], legends: Sequence[str] = ()) -> bool:
        from flowdisco.plotting import molecule_grid

        molecule_grid(path, list(designs), legends)
        return True

    def frechet_features(self, designs: Sequence[Any]) -> Tensor:
        """ChemNet activations [n, 512]: Fréchet distances on molecules are FCDs."""
        from flowdisco.metrics.fcd import chemnet_features

        return chemnet_features(list(designs))

    def test_designs(self) -> list[str]:
        return self.splits()["test"][:TEST_FCD_MOLECULES]

    def test_frechet_features(self) -> Tensor:
        """ChemNet activations of the test split (cached on disk next to the training encoding)."""
        if getattr(self, "_test_frechet_features", None) is None:
            test = self.test_designs()
            digest = hashlib.sha256("\n".join(test).encode()).hexdigest()[:16]
            cached = cache_dir() / f"{type(self).name}-test-chemnet-{digest}.safetensors"
            feats = None
            if cached.is_file():
                try:
                    feats = load_tensors(cached)["features"]
                except (CheckpointError, KeyError):
                    log.warning("ignoring a corrupt cache file %s", cached)
            if feats is None:
                feats = self.frechet_features(test)
                save_tensors(cached, {"features": feats})
            self._test_frechet_features = feats
        return self._test_frechet_features

    # ------------------------------------------------------------------ designs
    def decode(self, x: Tensor) -> list[Any]:
        if self.discrete:
            x = self.to_dense(x)
        return self.spec.decode(x, decoding=self.decoding)

    def encode_designs(self, designs: Sequence[Any]) -> tuple[Tensor, Tensor]:
        """SMILES → graph tensors [B, N, F] and masks [B, N, F] (zeros where a SMILES does not encode)."""
        x = torch.zeros(len(designs), *self.spec.shape)
        sizes = torch.zeros(len(designs), dtype=torch.long)
        for i, s in enumerate(designs):
            enc = self.spec.encode(s) if s else None
            if enc is not None:
                x[i] = enc
                sizes[i] = self.spec.atom_count(enc)
        return (self.to_tokens(x) if self.discrete else x), self._masks_for_sizes(sizes)

    def key(self, design: Any) -> Hashable:
        return design

    def default_network(self) -> tuple[str, dict]:
        # endpoint output: per one-hot group a softmax, trained on the implied x̂1 (FlowMol-style);
        # at 2000 steps it doubled QM9 validity over direct velocity output (20.8 % vs 12.2 %).
        # edge pathway (pair features updated in every block): QM9 validity 0.53 against 0.28 without
        kwargs = {"max_atoms": self.spec.max_atoms, "atom_features": self.spec.n_atom_features,
                  "bond_classes": 4, "dim": 128, "depth": 4, "heads": 4,
                  "atom_groups": [len(self.spec.elements), len(self.spec.charges)], "edge_dim": 64}
        if self.discrete:  # the same network as the denoiser of a masked flow on token graphs
            return "graph-mp-tokens", kwargs
        return "graph-mp", {**kwargs, "output": "endpoint"}

    def expand_defaults(self) -> dict[str, Any]:
        if not self.discrete:
            return super().expand_defaults()
        # discrete ActFlow explores by reward-tilted fine-tuning; α and the clip of the sequence domains,
        # where the paper's α = 0.005 unclipped collapsed the weights (BENCHMARKS.md, tilt sweep)
        return {**super().expand_defaults(), "tilt_alpha": 0.25, "tilt_log_ratio_clip": 1.0}

    # ------------------------------------------------------------------ descriptors and metrics
    def descriptors(self, designs: Sequence[Any]) -> Tensor:
        return morgan_bits(list(designs))

    similarity_name = "Tanimoto similarity (Morgan r = 2, 2048 bits)"

    def similarity(self, a: Tensor, b: Tensor) -> Tensor:
        return tanimoto(a, b)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        return 1.0 - tanimoto(a, b)

    def coverage(self, descriptors: Tensor, threshold: float | None = None,
                 designs: Sequence[Any] | None = None) -> int:
        """RDKit LeaderPicker clusters at Tanimoto distance ``threshold`` (default 0.85, the paper's)."""
        from rdkit.SimDivFilters.rdSimDivPickers import LeaderPicker

        fps = _bitvects(descriptors)
        if not fps:
            return 0
        t = self.coverage_threshold if threshold is None else threshold
        return len(LeaderPicker().LazyBitVectorPick(fps, len(fps), t))

    def nearest_reference_similarity(self, descriptors: Tensor, designs: Sequence[Any] | None = None) -> Tensor:
        """Max Tanimoto to the training molecules [n] (RDKit bulk similarity, no [n, N] matrix)."""
        from rdkit import DataStructs

        if self._ref_fps is None:
            self._ref_fps = _bitvects(cached_morgan_bits(self.reference_designs()))
        return torch.tensor([max(DataStructs.BulkTanimotoSimilarity(fp, self._ref_fps))
                             for fp in _bitvects(descriptors)], dtype=torch.float64)
