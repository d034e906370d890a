"""The Domain protocol: what flowdisco needs to know about a kind of design.

A domain supplies encoded training data, decodes model tensors into designs, verifies designs
(the black-box verifier v(x) ∈ {0, 1}), and gives descriptors with a similarity for the metrics.
A user's own domain is a small subclass implementing ``training_data``, ``decode`` and ``verify``;
everything else has defaults suited to low-dimensional continuous designs.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from flowdisco.verifier_pool import VerifierPool

log = logging.getLogger("flowdisco")


class VerifierTimeout(RuntimeError):
    """A verifier call ran past its time limit."""


class Domain(ABC):
    """Base class of every design domain.

    Class attributes a subclass may set:
      name: registry name (``get_domain(name)``).
      shape: shape of one encoded design (tensor [*shape]).
      kernel_lengthscale: RBF length scale on descriptors for Vendi/novelty similarity.
      coverage_threshold: sphere-exclusion radius in descriptor distance for coverage.
      extra_coverage_thresholds: further radii reported as ``coverage_<radius>``.
      representation_time / representation_layer: ActFlow's φ_s — noise level s and the dotted name
        of the network module read by a forward hook (``None``: the raw design itself).
      verify_timeout: seconds allowed per design in :meth:`verify` (None: no limit); a design whose
        verification runs longer counts invalid.
      verify_workers: verify in this many worker processes, one design per task (0: in this process);
        see :mod:`flowdisco.verifier_pool`. A worker that hangs past ``verify_timeout`` or crashes is
        replaced and costs only its design. Set it on an instance (``dom.verify_workers = 8``) or with
        the CLI's ``--verify-workers``.
    """

    name: ClassVar[str] = "custom"
    shape: tuple[int, ...] = ()
    kind: ClassVar[str] = "continuous"
    kernel_lengthscale: float = 0.1
    coverage_threshold: float = 0.1
    extra_coverage_thresholds: tuple[float, ...] = ()  # also reported as coverage_<threshold>
    representation_time: float = 1.0
    representation_layer: str | None = None
    verify_timeout: float | None = None
    verify_workers: int = 0

    # ------------------------------------------------------------------ required
    @abstractmethod
    def training_data(self) -> Tensor:
        """Encoded training designs [N, *shape]."""

    @abstractmethod
    def decode(self, x: Tensor) -> list[Any]:
        """Model tensors [B, *shape] → B designs (any Python objects)."""

    @abstractmethod
    def verify(self, designs: Sequence[Any]) -> Sequence[bool]:
        """The verifier: one boolean per design (True = valid). May raise; see :meth:`check`."""

    # ------------------------------------------------------------------ optional
    flow_path: ClassVar[str] = "linear"  # "masked": designs are token ids [L] of a masked discrete flow

    def model_extra(self) -> dict[str, Any]:
        """Extra fields stored with a new model of this domain (discrete domains: {"vocab_size": V})."""
        return {}

    num_classes: int = 0  # class-conditional domains: number of classes (labels from training_conditions)
    label_dropout: float = 0.0  # probability of training on the null class (classifier-free guidance)

    def training_conditions(self) -> Tensor | None:
        """Class labels [N] (long) of the training designs, or None for unconditional domains."""
        return None

    def training_set(self) -> dict[str, Tensor]:
        """The training data as fit() takes it: {"x"} plus "mask" and "cond" where the domain has them."""
        data = {"x": self.training_data()}
        masks = self.training_masks()
        if masks is not None:
            data["mask"] = masks
        labels = self.training_conditions()
        if labels is not None:
            data["cond"] = labels
        return data

    def check_design_shape(self, shape: Sequence[int]) -> None:
        """A clear error when a model's designs (of ``shape``) are not this domain's."""
        if tuple(shape) != tuple(self.shape):
            raise ValueError(f"the model's designs have shape {tuple(shape)} but domain {self.name!r} uses "
                             f"{tuple(self.shape)}")

    def encode_designs(self, designs: Sequence[Any]) -> tuple[Tensor, Tensor | None] | None:
        """The designs as clean model tensors (x [B, *shape], masks or None), or None when the domain
        cannot encode designs back (ActFlow's ``finetune_on="decoded"`` needs it). Rows that do not
        encode are all zeros with an all-zero mask: callers keep their own tensors there."""
        return None

    def training_masks(self) -> Tensor | None:
        """Masks [N, ...] of the training designs (padding), or None for fixed-size designs."""
        return None

    def sample_masks(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Masks for ``n`` new designs (e.g. sizes drawn from the data), or None."""
        return None

    def descriptors(self, designs: Sequence[Any]) -> Tensor:
        """Descriptor vectors [B, d] used for distances, diversity and novelty."""
        return torch.as_tensor(np.asarray(designs, dtype=np.float32)).reshape(len(designs), -1)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """Pairwise distances [n, m] between descriptor sets a [n, d] and b [m, d]."""
        return torch.cdist(a.double(), b.double())

    #: what :meth:`similarity` measures, in words (reports and logs)
    similarity_name = "RBF similarity of descriptors"

    def property_table(self, designs: Sequence[Any]) -> dict[str, np.ndarray] | None:
        """Named per-design properties whose distributions reports compare before/after expansion
        ({name: [n]}), or None when the domain has none."""
        return None

    def similarity(self, a: Tensor, b: Tensor) -> Tensor:
        """Pairwise similarity in [0, 1] (RBF on descriptor distance by default) [n, m]."""
        d = self.distance(a, b)
        return torch.exp(-(d**2) / (2 * self.kernel_lengthscale**2))

    def rejection_reason(self, design: Any) -> str | None:
        """Why the verifier rejects ``design``, in a few words ("several fragments"), or None when the
        domain cannot say. Only asked of rejected designs, for the breakdown `flowdisco evaluate`
        prints; a domain whose verifier has several checks may name the first one that fails."""
        return None

    def key(self, design: Any) -> Hashable:
        """A canonical hashable form for uniqueness/novelty (rounded descriptors by default)."""
        return tuple(np.round(np.asarray(design, dtype=np.float64).ravel(), 6).tolist())

    def default_network(self) -> tuple[str, dict]:
        """Registered network name and keyword arguments for this domain's velocity network."""
        return "mlp", {"shape": list(self.shape), "width": 128, "depth": 3}

    def pretrained_model_path(self) -> str | None:
        """A shipped pre-trained checkpoint for this domain, if any."""
        return None

    def default_pretrain(self) -> dict:
        """Default FitConfig fields for pre-training on this domain."""
        return {"steps": 2000, "batch_size": 256, "lr": 1e-3}

    def extra_metrics(self, model: Any, seed: int = 0, artifacts: dict[str, Tensor] | None = None) -> dict[str, float]:
        """Domain-specific metrics of a model (e.g. the toy's exact generable coverage); may put the
        arrays behind them into ``artifacts`` (for plots)."""
        return {}

    def expand_defaults(self) -> dict[str, Any]:
        """This domain's defaults for :class:`flowdisco.expand.ExpandConfig` fields."""
        return {"representation_time": self.representation_time, "representation_layer": self.representation_layer}

    def plot_samples(self, path: str, samples: Tensor, valid: np.ndarray, title: str = "", **kwargs: Any) -> None:
        """Write a picture of samples; domains without a natural picture write none."""
        return None

    @property
    def balance_radius(self) -> float:
        """Neighbourhood radius, in :meth:`distance`, of ActFlow's density balancing of fine-tuning
        (``finetune_balance``): the coverage radius, so a neighbourhood is about one coverage sphere."""
        return self.coverage_threshold

    # ------------------------------------------------------------------ metrics hooks
    def coverage(self, descriptors: Tensor, threshold: float | None = None,
                 designs: Sequence[Any] | None = None) -> int:
        """Sphere-exclusion cluster count among designs [N, d] at ``threshold`` (default
        ``coverage_threshold``); ``designs`` are passed for domains whose criterion needs them
        (sequence identity)."""
        from flowdisco.metrics import coverage

        t = self.coverage_threshold if threshold is None else threshold
        return coverage(self.distance(descriptors, descriptors), t)

    def design_metrics(self, designs: Sequence[Any]) -> dict[str, float]:
        """Domain-specific metrics of a set of valid designs (e.g. held-out scaffolds reached)."""
        return {}

    def vendi(self, descriptors: Tensor) -> float:
        """Vendi score with this domain's similarity kernel."""
        from flowdisco.metrics import vendi_score

        return vendi_score(self.similarity(descriptors, descriptors))

    def nearest_reference_similarity(self, descriptors: Tensor, designs: Sequence[Any] | None = None) -> Tensor:
        """Similarity of each design [n, d] to its nearest training design: [n] (``designs`` for
        domains whose similarity needs them)."""
        from flowdisco.metrics import chunked_max_similarity

        return chunked_max_similarity(self.similarity, descriptors, self.reference_descriptors())

    def reference_designs(self) -> list[Any]:
        """The training designs, decoded (cached): the reference of novelty."""
        if getattr(self, "_reference_designs", None) is None:
            self._reference_designs = self.decode(self.training_data())
        return self._reference_designs

    def reference_descriptors(self) -> Tensor:
        if getattr(self, "_reference_descriptors", None) is None:
            self._reference_descriptors = self.descriptors(self.reference_designs())
        return self._reference_descriptors

    def frechet_features(self, designs: Sequence[Any]) -> Tensor:
        """Features [n, f] of the Fréchet distances in :func:`flowdisco.evaluate.set_metrics` (the
        descriptors by default; molecule domains use ChemNet activations, which makes them FCD)."""
        return self.descriptors(designs).double()

    def test_designs(self) -> list[Any] | None:
        """Held-out designs for the Fréchet distance to the test set (None: the domain has none)."""
        return None

    def test_frechet_features(self) -> Tensor | None:
        """:meth:`frechet_features` of :meth:`test_designs` (cached)."""
        if getattr(self, "_test_frechet_features", None) is None:
            designs = self.test_designs()
            self._test_frechet_features = self.frechet_features(designs) if designs and len(designs) >= 2 else None
        return self._test_frechet_features

    def dataset_keys(self) -> set[Hashable]:
        """Keys of every design in the data set (all splits), for counting truly new designs.
        Defaults to the training designs."""
        return self.reference_keys()

    def plot_designs(self, path: str, designs: Sequence[Any], legends: Sequence[str] = ()) -> bool:
        """Draw a set of designs (e.g. newly discovered ones); returns False when the domain has no
        drawing for them."""
        return False

    def reference_keys(self) -> set[Hashable]:
        if getattr(self, "_reference_keys", None) is None:
            self._reference_keys = {self.key(d) for d in self.reference_designs()}
        return self._reference_keys

    # ------------------------------------------------------------------ safe decoding / verification
    def decode_safe(self, x: Tensor) -> list[Any]:
        """:meth:`decode` that never raises: a design that cannot be decoded becomes None."""
        try:
            out = list(self.decode(x))
            if len(out) == x.shape[0]:
                return out
        except Exception as e:
            log.warning("%s: decode raised on a batch (%s: %s); decoding one by one", self.name,
                        type(e).__name__, e)
        out = []
        for i in range(x.shape[0]):
            try:
                out.append(self.decode(x[i:i + 1])[0])
            except Exception:
                out.append(None)
        return out

    def check(self, designs: Sequence[Any]) -> np.ndarray:
        """Verify designs without ever raising: [B] bool.

        Calls :meth:`verify` on the whole batch; if that raises or returns the wrong number of
        results, verifies one design at a time, and a design whose verification raises counts as
        invalid (logged with the error). Non-boolean results are read as truthiness.
        """
        designs = list(designs)
        flags = np.zeros(len(designs), dtype=bool)
        idx = [i for i, d in enumerate(designs) if d is not None]  # undecodable designs are invalid
        if not idx:
            return flags
        if self.verify_workers > 0:
            flags[idx] = self.verifier_pool().map([designs[i] for i in idx])[0]
            return flags
        if len(idx) < len(designs):
            flags[idx] = self.check([designs[i] for i in idx])
            return flags
        try:
            out = np.asarray(self._verify_call(designs), dtype=bool)
            if out.shape == (len(designs),):
                return out
            log.warning("%s: verifier returned %d results for %d designs; verifying one by one",
                        self.name, out.size, len(designs))
        except Exception as e:  # any verifier error costs designs, never the run
            log.warning("%s: verifier raised on a batch of %d (%s: %s); verifying one by one",
                        self.name, len(designs), type(e).__name__, e)
        failures = 0
        for i, d in enumerate(designs):
            try:
                res = self._verify_call([d])
                flags[i] = bool(res[0]) if len(res) == 1 else False
            except Exception as e:
                failures += 1
                if failures <= 5:
                    log.warning("%s: verifier raised on design %d (%s: %s); counted invalid",
                                self.name, i, type(e).__name__, e)
        if failures > 5:
            log.warning("%s: %d designs in all raised in the verifier; counted invalid", self.name, failures)
        return flags


    def verifier_pool(self) -> VerifierPool:
        """The process pool of this domain's verifier (started on first use, kept for later calls)."""
        pool = getattr(self, "_pool", None)
        if pool is None or (pool.n_workers, pool.timeout) != (self.verify_workers, self.verify_timeout):
            if pool is not None:
                pool.close()
            pool = self._pool = VerifierPool(self.verify, self.verify_workers, self.verify_timeout, name=self.name)
        return pool

    def _verify_call(self, designs: list[Any]) -> list[Any]:
        """verify() under the time limit (``verify_timeout`` per design), run in a daemon thread.

        A thread cannot be stopped: a verifier that hangs keeps its thread busy in the background
        while the run goes on (the process pool of parallel verification can stop its workers).
        """
        if self.verify_timeout is None:
            return list(self.verify(designs))
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["out"] = list(self.verify(designs))
            except BaseException as e:  # handed to the caller below
                box["err"] = e

        worker = threading.Thread(target=target, daemon=True, name=f"{self.name}-verify")
        worker.start()
        worker.join(self.verify_timeout * len(designs))
        if worker.is_alive():
            raise VerifierTimeout(f"verifier took longer than {self.verify_timeout} s per design "
                                  f"on {len(designs)} design(s)")
        if "err" in box:
            raise box["err"]
        return box["out"]


def seeded_split(items: Sequence[Any], seed: int, fractions: tuple[float, float] = (0.8, 0.1)
                 ) -> dict[str, list[Any]]:
    """The fixed train/valid/test split of a data set: a permutation seeded by ``seed``, the first
    ``fractions[0]`` (at least one item) for training, the next ``fractions[1]`` for validation, the
    rest for testing."""
    perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    n_tr = max(1, int(fractions[0] * len(items)))
    n_va = int(fractions[1] * len(items))
    return {"train": [items[i] for i in perm[:n_tr]], "valid": [items[i] for i in perm[n_tr:n_tr + n_va]],
            "test": [items[i] for i in perm[n_tr + n_va:]]}


def shipped_model_path(asset: str) -> str | None:
    """``flowdisco/assets/<asset>`` if a model ships there (its flowdisco_model.json exists), else None."""
    from importlib import resources

    path = resources.files("flowdisco") / "assets" / asset
    return str(path) if (path / "flowdisco_model.json").is_file() else None


def package_dir(package: str, extra: str) -> Path:
    """Where an installed data package lives, without importing it (clear error when missing)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the {package!r} data package is not installed: pip install 'flowdisco[{extra}]'")
    return Path(spec.submodule_search_locations[0])


def grid_points(lo: float, hi: float, n: int) -> Tensor:
    """Centres of an n×n grid of cells covering [lo, hi]²: [n·n, 2] (row-major in y, then x)."""
    step = (hi - lo) / n
    c = torch.linspace(lo + step / 2, hi - step / 2, n)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def cell_area(lo: float, hi: float, n: int) -> float:
    return ((hi - lo) / n) ** 2
