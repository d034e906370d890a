"""expand(): ActFlow and its baselines as one round loop with switches.

    warm-up:  sample θ0 (no guidance) until the buffer D holds W valid designs        (round 0)
    round r:  [actflow] φ-features of all of D with the current θ → fit surrogate σ on D
              sample B designs (actflow: with uncertainty guidance, λ = 1/β) → verify → D ∪= them
              UpdateFlow: the shared fit() on the valid part of D (rec-nf: on all of D),
              fresh AdamW, optional anchor replay α and negative gradient c
              (every eval_every rounds) evaluate θ_r
              commit the round atomically (model, buffer, history)

Discrete (masked) flows cannot take gradient guidance: there ActFlow samples without guidance and
explores through reward-tilted fine-tuning instead — the valid designs are weighted by
softmax(log p_θ/p_gen + σ/α) in the denoising loss (see :mod:`flowdisco.expand.tilt`). With
select_factor k > 1 it also chooses each round's designs from k·B candidates, resampled towards
p_θ·exp(σ/α) before they are verified (see :mod:`flowdisco.expand.selection`); log p_gen stays the
drawing model's likelihood, without the selection.

The three methods share every step and the budget (samples per round, fine-tuning steps, rounds):
  actflow  guidance on (discrete: tilted fine-tuning), fine-tune on valid designs
  rec-f    guidance off, fine-tune on valid designs   (filtered recursive self-training)
  rec-nf   guidance off, fine-tune on all designs     (no verifier: the model-collapse setting)

Every random draw of round r comes from a generator seeded by (seed, purpose, r), so a killed run
resumed from its last committed round (and that round's saved samples and fine-tuning checkpoint)
ends with exactly the numbers of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from flowdisco import dist
from flowdisco.domains import Domain, get_domain
from flowdisco.evaluate import evaluate, rejection_counts
from flowdisco.expand.balance import balance_weights, neighbour_counts
from flowdisco.expand.buffer import DesignBuffer
from flowdisco.expand.exploration import WEIGHTINGS, UncertaintyGuidance
from flowdisco.expand.representation import (
    DESCRIPTORS,
    DescriptorRepresentation,
    Representation,
    make_representation,
)
from flowdisco.expand.selection import UncertaintySelection
from flowdisco.expand.state import RoundStore
from flowdisco.expand.surrogates import SURROGATES, Surrogate, make_surrogate
from flowdisco.expand.tilt import effective_sample_size, tilt_weights
from flowdisco.flow.discrete import content_seeds
from flowdisco.flow.fit import FitConfig, fit
from flowdisco.flow.model import FlowModel
from flowdisco.flow.solvers import NoiseSchedule
from flowdisco.generate import Generated, generate
from flowdisco.io import atomic_write_json, atomic_write_text, load_tensors, save_tensors
from flowdisco.pretrain import data_file_record
from flowdisco.progress import progress_bar
from flowdisco.runs import RunDir, open_run
from flowdisco.seeding import derive_seed, make_generator

log = logging.getLogger("flowdisco")

METHODS = ("actflow", "rec-f", "rec-nf")
FINETUNE_ON = ("samples", "decoded")  # what UpdateFlow trains on (ExpandConfig.finetune_on)
WEIGHTS_AS = ("loss", "draw")  # how tilt/balancing weights act on fine-tuning (ExpandConfig.finetune_weights_as)
# joint spread of the surrogate's σ over the buffer and a round's designs (see _drawn_uncertainty) below
# which σ is called flat
FLAT_SPREAD = 0.1


@dataclass
class ExpandConfig:
    """All settings of an expansion run (defaults, then the domain's, then the caller's)."""

    method: str = "actflow"
    rounds: int = 20
    samples_per_round: int = 64
    warmup_valid: int = 64  # W
    warmup_batch: int = 256
    max_warmup_batches: int = 50
    finetune_steps: int = 250
    finetune_batch: int = 256
    finetune_lr: float = 1e-4
    finetune_weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    grad_shards: int | None = None  # UpdateFlow's gradient pieces (fixed: the same weights on 1 or N processes)
    sampler_steps: int = 100
    sample_chunk: int | None = None  # designs per sampling chunk (None: 64); torchrun shares the chunks
    noise: str = "memoryless"  # noise schedule of the exploration sampler (all methods)
    noise_scale: float = 1.0
    guidance_strength: float = 10.0  # λ = 1/β
    guidance_weighting: str = "g"
    guidance_max_norm: float | None = None
    mean_weight: float = 0.0  # 0: task-agnostic (pure uncertainty)
    representation_time: float = 1.0  # s
    representation_layer: str | None = None  # None: the raw design; "descriptors": the domain's descriptors
    surrogate: str = "gp"
    surrogate_options: dict[str, Any] = field(default_factory=dict)
    tilt_alpha: float = 0.005  # discrete models: temperature α of reward-tilted fine-tuning (WDCE)
    elbo_samples: int = 8  # discrete models: Monte-Carlo draws per ELBO (log-likelihood) estimate
    # discrete models: clip |log p_θ − log p_gen| of the tilt weights at this many nats (None: no clip).
    # Fine-tuning raises p_θ on the designs it was weighted towards, so unclipped ratios feed back.
    tilt_log_ratio_clip: float | None = None
    # ActFlow (the sampling-time exploration of discrete models, which gradient guidance cannot steer; on top
    # of guidance for continuous ones): each design of a round is chosen from this many candidates of the
    # sampler, resampled towards p·exp(r/select_alpha) before it is verified (expand/selection.py);
    # None or 1: off (None, like every option added after runs existed, so older run directories resume).
    # select_alpha None: tilt_alpha
    select_factor: int | None = None
    select_alpha: float | None = None
    anchor_weight: float = 0.0  # α: replay of the original training data inside UpdateFlow
    # density balancing of UpdateFlow's data (expand/balance.py): each valid design weighted by
    # (its neighbours within the radius, in the domain's descriptor distance)^(−power); 0: off
    finetune_balance: float = 0.0
    finetune_balance_radius: float | None = None  # None: the domain's balance_radius (its coverage radius)
    # how the tilt and balancing weights act on fine-tuning: None or "loss": rows drawn uniformly, each
    # row's loss weighted; "draw": rows drawn in proportion to the weights (importance resampling), loss
    # weights 1 — the same expected gradient, without batches dominated by one rare, heavy row
    finetune_weights_as: str | None = None
    # what UpdateFlow trains on: None or "samples": the sampled tensors of the buffer's designs; "decoded":
    # each design decoded and encoded again (the clean graph a capped decoder turned it into), where the
    # domain can encode designs (molecules); designs that do not encode keep their sampled tensors
    finetune_on: str | None = None
    negative_scale: float = 0.0  # c: negative gradient on invalid designs
    negative_clip: float = 0.1
    eval_every: int = 10
    eval_samples: int = 1000
    eval_valid: int = 500
    keep_every: int = 0  # keep model snapshots of every k-th round (0: only round 0 and the latest)
    seed: int = 0

    @property
    def selecting(self) -> bool:
        """Whether ActFlow chooses each round's designs from several candidates (uncertainty selection)."""
        return (self.select_factor or 1) > 1

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; available: {', '.join(METHODS)}")
        for name in ("rounds", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        for name in ("samples_per_round", "warmup_valid", "warmup_batch", "max_warmup_batches", "finetune_batch",
                     "sampler_steps", "eval_samples", "eval_valid"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.sample_chunk is not None and self.sample_chunk < 1:
            raise ValueError(f"sample_chunk must be ≥ 1 or None, got {self.sample_chunk}")
        if self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be ≥ 0, got {self.finetune_steps}")
        if not 0 <= self.anchor_weight < 1:
            raise ValueError(f"anchor_weight must be in [0, 1), got {self.anchor_weight}")
        if self.finetune_balance < 0:
            raise ValueError(f"finetune_balance must be ≥ 0, got {self.finetune_balance}")
        if self.finetune_balance_radius is not None and not self.finetune_balance_radius > 0:
            raise ValueError(f"finetune_balance_radius must be > 0 or None, got {self.finetune_balance_radius}")
        if self.finetune_weights_as not in (None, *WEIGHTS_AS):
            raise ValueError(f"unknown finetune_weights_as {self.finetune_weights_as!r}; available: "
                             f"{', '.join(WEIGHTS_AS)}")
        if self.finetune_on not in (None, *FINETUNE_ON):
            raise ValueError(f"unknown finetune_on {self.finetune_on!r}; available: {', '.join(FINETUNE_ON)}")
        if self.finetune_balance > 0 and self.method == "rec-nf":
            raise ValueError("finetune_balance weights valid designs by their descriptors; rec-nf fine-tunes on "
                             "every design, valid or not (use it with actflow or rec-f)")
        if self.tilt_alpha <= 0:
            raise ValueError(f"tilt_alpha must be > 0, got {self.tilt_alpha}")
        if self.tilt_log_ratio_clip is not None and not self.tilt_log_ratio_clip >= 0:
            raise ValueError(f"tilt_log_ratio_clip must be ≥ 0 or None, got {self.tilt_log_ratio_clip}")
        if self.select_factor is not None and self.select_factor < 1:
            raise ValueError(f"select_factor must be ≥ 1 or None, got {self.select_factor}")
        if self.select_alpha is not None and not self.select_alpha > 0:
            raise ValueError(f"select_alpha must be > 0 or None, got {self.select_alpha}")
        if self.selecting and self.method != "actflow":
            raise ValueError(f"select_factor selects designs by the surrogate's uncertainty, which only actflow "
                             f"fits; {self.method} samples plainly (leave select_factor unset)")
        if self.elbo_samples < 1:
            raise ValueError(f"elbo_samples must be ≥ 1, got {self.elbo_samples}")
        if self.guidance_strength < 0:
            raise ValueError(f"guidance_strength must be ≥ 0, got {self.guidance_strength}")
        if self.guidance_weighting not in WEIGHTINGS:
            raise ValueError(f"unknown guidance_weighting {self.guidance_weighting!r}; available: {WEIGHTINGS}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {self.surrogate!r}; available: {', '.join(SURROGATES)}")
        NoiseSchedule(self.noise, self.noise_scale)  # validates kind and scale
        FitConfig(steps=self.finetune_steps, batch_size=self.finetune_batch, lr=self.finetune_lr,
                  grad_shards=self.grad_shards).validate()


def make_config(domain: Domain, **settings: Any) -> ExpandConfig:
    """ExpandConfig from its defaults, the domain's ``expand_defaults()`` and ``settings``."""
    allowed = {f.name for f in fields(ExpandConfig)}
    merged = {**domain.expand_defaults(), **{k: v for k, v in settings.items() if v is not None}}
    unknown = sorted(set(merged) - allowed)
    if unknown:
        raise ValueError(f"unknown expand option(s) {unknown}; available: {', '.join(sorted(allowed))}")
    cfg = ExpandConfig(**merged)
    cfg.validate()
    return cfg


@dataclass
class ExpandRun:
    """The result: the expanded model, the buffer D, per-round history, where it was written."""

    model: FlowModel
    buffer: DesignBuffer
    history: list[dict[str, Any]]
    config: ExpandConfig
    run_dir: Path | None = None

    def evaluations(self) -> list[dict[str, Any]]:
        return evaluations(self.history)

    def discovered(self, domain: str | Domain, max_coverage_designs: int = 2000) -> dict[str, float]:
        """What the expansion rounds generated (the warm-up excluded): ``generated`` designs,
        ``valid_unique`` distinct valid ones, ``new_valid_unique`` of them not in the data set, and the
        domain's ``coverage`` of the distinct valid ones (the evaluation's measure), computed on all of
        them or, beyond ``max_coverage_designs`` (sequence coverage aligns every design against every
        centre), on that many drawn at random (seeded); ``coverage_designs`` says how many."""
        dom = get_domain(domain)
        buf = self.buffer
        found = found_in_rounds(buf, dom)
        designs = list(found.values())
        if len(designs) > max_coverage_designs:
            rng = make_generator(derive_seed(self.config.seed, "discovered", 0))
            pick = torch.randperm(len(designs), generator=rng)
            designs = [designs[i] for i in sorted(pick[:max_coverage_designs].tolist())]
        coverage = dom.coverage(dom.descriptors(designs), designs=designs) if designs else 0
        return {"generated": float(int((buf.round > 0).sum())), "valid_unique": float(len(found)),
                "new_valid_unique": float(len(found.keys() - dom.dataset_keys())),
                "coverage": float(coverage), "coverage_designs": float(len(designs))}


def expand(model: FlowModel | str | os.PathLike, domain: str | Domain, method: str = "actflow", *,
           rounds: int | None = None, samples_per_round: int | None = None, finetune_steps: int | None = None,
           seed: int = 0, run_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
           **options: Any) -> ExpandRun:
    """Expand a pre-trained flow model's generable set with verifier feedback.

    model: a FlowModel (left untouched; a copy is trained) or a model directory.
    method: ``actflow`` | ``rec-f`` | ``rec-nf``. Any :class:`ExpandConfig` field can be given as a
    keyword (e.g. ``guidance_strength=13``); the domain supplies its own defaults.
    run_dir: writes config.json, metrics.jsonl, state/ (atomic per round), frames/ and plots/;
    ``resume=True`` continues a killed run from its last committed round.
    """
    dom = get_domain(domain)
    cfg = make_config(dom, method=method, rounds=rounds, samples_per_round=samples_per_round,
                      finetune_steps=finetune_steps, seed=seed, **options)
    base = FlowModel.load(model) if isinstance(model, (str, os.PathLike)) else model
    dom.check_design_shape(base.shape)
    if (cfg.representation_layer == DESCRIPTORS and cfg.method == "actflow" and cfg.guidance_strength > 0
            and getattr(base, "kind", "continuous") != "discrete"):
        raise ValueError("representation_layer='descriptors' has no gradient for ActFlow's guidance of a continuous "
                         "model: set guidance_strength=0 (and explore by select_factor) or use a network layer")
    if getattr(dom, "data_file", None):
        dom.splits()  # a bad data file fails here, before the run directory is written
    work = base.clone()
    dist.init(work.device)
    run = None
    if run_dir is not None:
        run = open_run(run_dir, {"kind": "expand", "domain": dom.name, **data_file_record(dom), "config": asdict(cfg),
                                 "model": {"network": base.network_name, "network_kwargs": base.network_kwargs,
                                           "source": str(model) if isinstance(model, (str, os.PathLike)) else None}},
                       resume=resume, device=work.device)
    store = RoundStore(run.path / "state", keep_every=cfg.keep_every, writable=run.writable) if run else None
    return _Loop(work, dom, cfg, run, store, progress and dist.is_main()).run()


class RoundSurrogate(NamedTuple):
    """What ActFlow fits at the start of a round (see ``fit_round_surrogate``)."""

    rep: Representation | DescriptorRepresentation
    features: torch.Tensor  # [N, d] φ of every buffered design
    surrogate: Surrogate
    fit_features: torch.Tensor  # [M, d] the rows it was fitted on
    fit_labels: torch.Tensor  # [M] bool validity of those rows


def fit_round_surrogate(model: FlowModel, buffer: DesignBuffer, cfg: ExpandConfig, *, round_: int,
                        fit_on: torch.Tensor | None = None, domain: Domain | None = None) -> RoundSurrogate:
    """What ActFlow fits at the start of round ``round_``: the representation φ of ``model``, the φ-features
    [N, d] of the whole buffer, and the surrogate fitted on the designs selected by ``fit_on`` [N] bool
    (default: all) against their validity. Seeds derive from ``cfg.seed`` and the round, as in ``expand``.
    ``domain``: needed for ``representation_layer="descriptors"``."""
    rep = make_representation(model, cfg.representation_layer, cfg.representation_time, domain)
    feats = rep.features(buffer.x, buffer.mask, generator=make_generator(derive_seed(cfg.seed, "phi", round_)))
    x, labels = (feats, buffer.valid) if fit_on is None else (feats[fit_on], buffer.valid[fit_on])
    surrogate = make_surrogate(cfg.surrogate, **cfg.surrogate_options)
    surrogate.fit(x, labels.float(), seed=derive_seed(cfg.seed, "surrogate", round_))
    return RoundSurrogate(rep, feats, surrogate, x, labels)


def round_guidance(rep: Representation, surrogate: Surrogate, cfg: ExpandConfig, *, round_: int,
                   strength: float | None = None) -> UncertaintyGuidance:
    """ActFlow's sampling guidance of round ``round_`` (``strength`` overrides ``cfg.guidance_strength``)."""
    return UncertaintyGuidance(rep, surrogate, cfg.guidance_strength if strength is None else strength,
                               cfg.guidance_weighting, cfg.mean_weight,
                               generator=make_generator(derive_seed(cfg.seed, "phi-guide", round_)),
                               max_norm=cfg.guidance_max_norm)


class _Loop:
    def __init__(self, model: FlowModel, dom: Domain, cfg: ExpandConfig, run: RunDir | None,
                 store: RoundStore | None, progress: bool) -> None:
        self.model, self.dom, self.cfg, self.run_dir, self.store = model, dom, cfg, run, store
        self.progress = progress
        self.schedule = NoiseSchedule(cfg.noise, cfg.noise_scale)
        self.buffer = DesignBuffer(dom.shape)
        self.history: list[dict[str, Any]] = []
        self.reference: torch.Tensor | None = None  # Fréchet features of the pre-trained model's valid samples
        self.valid_keys: set | None = None
        self.surrogate_inputs: dict[str, torch.Tensor] | None = None  # of the round in progress
        self.warned_flat = False

    def seed(self, *tags: Any) -> int:
        return derive_seed(self.cfg.seed, *tags)

    # ------------------------------------------------------------------ driver
    def run(self) -> ExpandRun:
        start = self._restore()
        if start is None:
            self._warmup()
            start = 0
        bar = progress_bar(self.cfg.rounds, f"{self.cfg.method} {self.dom.name}", enabled=self.progress,
                           initial=start)
        for r in range(start + 1, self.cfg.rounds + 1):
            self._round(r)
            last = self.history[-1]
            bar.set_postfix(valid=f"{last['round_validity']:.2f}", buffer=last["buffer_valid"])
            bar.update(1)
        bar.close()
        if self.run_dir is not None and self.run_dir.writable:
            self._plots()
        return ExpandRun(self.model, self.buffer, self.history, self.cfg,
                         self.run_dir.path if self.run_dir else None)

    def _restore(self) -> int | None:
        if self.store is None or self.store.latest_round() is None:
            return None
        r, self.buffer, self.history = self.store.load(self.model.net, self.dom.shape)
        ref = self.store.dir / "reference.safetensors"
        self.reference = load_tensors(ref)["features"] if ref.is_file() else None
        log.info("%s: resuming after round %d (buffer %d designs, %d valid)", self.dom.name, r, len(self.buffer),
                 self.buffer.n_valid)
        return r

    # ------------------------------------------------------------------ warm-up (round 0)
    def _warmup(self) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        gen = make_generator(self.seed("warmup"))
        n_valid, batches = 0, 0
        while n_valid < cfg.warmup_valid and batches < cfg.max_warmup_batches:
            g = self._sample(cfg.warmup_batch, gen, guidance=None)
            need = cfg.warmup_valid - n_valid
            # keep draws up to (and including) the W-th valid design
            cut = int(np.searchsorted(np.cumsum(g.valid), need) + 1) if g.valid.sum() >= need else len(g)
            kept = g.select(np.arange(cut))
            self.buffer.add(kept, 0, self._generation_columns(kept))
            n_valid += int(g.valid[:cut].sum())
            batches += 1
        if n_valid == 0:
            raise RuntimeError(f"the pre-trained model produced no valid {self.dom.name} design in "
                               f"{batches * cfg.warmup_batch} samples; check the model and the verifier")
        if n_valid < cfg.warmup_valid:
            log.warning("warm-up found %d of %d valid designs in %d samples; continuing with them", n_valid,
                        cfg.warmup_valid, len(self.buffer))
        n = len(self.buffer)
        record: dict[str, Any] = {"round": 0, "method": cfg.method, "phase": "warmup", "n_generated": n,
                                  "round_validity": self.buffer.n_valid / n, "buffer_size": n,
                                  "buffer_valid": self.buffer.n_valid, "round_seconds": time.perf_counter() - t0}
        if cfg.eval_every:
            record["eval"], record["rejections"] = self._evaluate(0, set_reference=True)
        self._commit(0, record)

    # ------------------------------------------------------------------ one round
    def _round(self, r: int) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        record: dict[str, Any] = {"round": r, "method": cfg.method}
        pending = self.store.load_pending_samples(r) if self.store else None
        if pending is not None:
            tensors, meta = pending
            x, mask = tensors["x"], tensors.get("mask")
            g = Generated(x=x, mask=mask, designs=self.dom.decode_safe(x), valid=tensors["valid"].bool().numpy())
            record.update({k: v for k, v in meta.items() if k != "sha256"})
            saved = self.store.pending_dir(r) / "surrogate_inputs.safetensors"
            self.surrogate_inputs = load_tensors(saved) if saved.is_file() else None
        else:
            guidance = selection = None
            if cfg.method == "actflow" and (not self.discrete or cfg.selecting):
                ts = time.perf_counter()
                guidance = None if self.discrete else self._guidance(r)
                if cfg.selecting:
                    selection = self._selection(r, guidance)
                record["surrogate_seconds"] = time.perf_counter() - ts
            ts = time.perf_counter()
            g = self._sample(cfg.samples_per_round, make_generator(self.seed("sample", r)), guidance, selection)
            record["sample_verify_seconds"] = time.perf_counter() - ts
            if guidance is not None:
                record.update(self._drawn_uncertainty(r, guidance, g))
            if selection is not None:
                record.update(selection.summary())
            if self.store is not None:
                if self.surrogate_inputs is not None:
                    self.store.save_pending_tensors(r, "surrogate_inputs", self.surrogate_inputs)
                kept = ("surrogate_sigma", "select_")  # what the round's record says of sampling, kept on resume
                self.store.save_pending_samples(r, g, {k: v for k, v in record.items()
                                                       if k.endswith("seconds") or k.startswith(kept)})
        known = self._valid_keys()
        new_valid = {self.dom.key(d) for d, v in zip(g.designs, g.valid, strict=True) if v} - known
        known |= new_valid
        self.buffer.add(g, r, self._generation_columns(g))
        record.update({"n_generated": len(g), "round_validity": float(np.mean(g.valid)),
                       "round_new_valid_unique": len(new_valid), "buffer_size": len(self.buffer),
                       "buffer_valid": self.buffer.n_valid})

        ts = time.perf_counter()
        record["finetune_loss"] = self._update_flow(r, record)
        record["finetune_seconds"] = time.perf_counter() - ts
        if cfg.eval_every and (r % cfg.eval_every == 0 or r == cfg.rounds):
            record["eval"], record["rejections"] = self._evaluate(r)
        record["round_seconds"] = time.perf_counter() - t0
        self._commit(r, record)

    def _valid_keys(self) -> set:
        """Keys of the valid designs in the buffer (computed once, then kept up to date)."""
        if self.valid_keys is None:
            data = self.buffer.data(only_valid=True)["x"]
            self.valid_keys = {self.dom.key(d) for d in self.dom.decode_safe(data)} if len(data) else set()
        return self.valid_keys

    def _fit_surrogate(self, r: int, fit_on: torch.Tensor | None = None) -> RoundSurrogate:
        """``fit_round_surrogate`` on the buffer, keeping what it was fitted on for the round's commit."""
        fitted = fit_round_surrogate(self.model, self.buffer, self.cfg, round_=r, fit_on=fit_on, domain=self.dom)
        self.surrogate_inputs = {"features": fitted.fit_features, "labels": fitted.fit_labels.to(torch.uint8)}
        return fitted

    def _guidance(self, r: int) -> UncertaintyGuidance:
        fitted = self._fit_surrogate(r)
        return round_guidance(fitted.rep, fitted.surrogate, self.cfg, round_=r)

    def _selection(self, r: int, guidance: UncertaintyGuidance | None) -> UncertaintySelection:
        """The round's uncertainty selection: on the guidance's φ and surrogate, or (no guidance: discrete
        models) on a surrogate fitted to the whole buffer, as the tilt of this round fits it."""
        cfg = self.cfg
        if guidance is not None:
            rep, surrogate = guidance.rep, guidance.surrogate
        else:
            fitted = self._fit_surrogate(r)
            rep, surrogate = fitted.rep, fitted.surrogate
        alpha = cfg.select_alpha if cfg.select_alpha is not None else cfg.tilt_alpha
        return UncertaintySelection(rep, surrogate, alpha, cfg.select_factor, cfg.mean_weight)

    def _drawn_uncertainty(self, r: int, guidance: UncertaintyGuidance, g: Generated) -> dict[str, float]:
        """The surrogate's σ over the designs the guided sampler drew (10/50/90 % quantiles), the same over
        the buffer it was fitted on, and their joint spread: (the higher 90 % quantile − the lower 10 %
        quantile) / the higher median. The two groups count alike, however large the buffer grows.

        Guidance ascends σ, so a σ that barely varies over both gives it no direction. That happens when
        the ensemble stops training at once (few designs, labels that φ does not predict) or a GP's
        lengthscale is far wider than the features' spread; it is logged once per run, with what to change."""
        feats = guidance.rep.features(g.x, g.mask, generator=make_generator(self.seed("phi-drawn", r)))
        with torch.no_grad():
            drawn = guidance.surrogate.uncertainty(feats).double()
            fitted = guidance.surrogate.uncertainty(self.surrogate_inputs["features"]).double()
        levels = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
        q10, q50, q90 = (float(v) for v in torch.quantile(drawn, levels))
        b10, b50, b90 = (float(v) for v in torch.quantile(fitted, levels))
        lo, hi = min(q10, b10), max(q90, b90)
        spread = (hi - lo) / max(q50, b50, 1e-12)
        if spread < FLAT_SPREAD and not self.warned_flat:
            self.warned_flat = True
            log.warning("%s round %d: the %s surrogate's uncertainty is nearly flat (σ %.3g–%.3g, 10–90 %% over "
                        "the buffer and the drawn designs), so guidance has no direction to follow. With few "
                        "designs the ensemble stops training at once; surrogate=gp or a larger warmup_valid "
                        "gives it one.", self.dom.name, r, self.cfg.surrogate, lo, hi)
        return {"surrogate_sigma_drawn_q10": q10, "surrogate_sigma_drawn_median": q50,
                "surrogate_sigma_drawn_q90": q90, "surrogate_sigma_buffer_median": b50,
                "surrogate_sigma_spread": spread}

    @property
    def discrete(self) -> bool:
        return getattr(self.model, "kind", "continuous") == "discrete"

    def _sample(self, n: int, gen: torch.Generator, guidance: UncertaintyGuidance | None,
                selection: UncertaintySelection | None = None) -> Generated:
        if self.discrete:  # the masked flow's own sampler (no SDE, no gradient guidance)
            return generate(self.model, self.dom, n, generator=gen, steps=self.cfg.sampler_steps,
                            chunk_size=self.cfg.sample_chunk, selection=selection)
        return generate(self.model, self.dom, n, generator=gen, steps=self.cfg.sampler_steps, solver="euler-maruyama",
                        noise=self.schedule, guidance=guidance, chunk_size=self.cfg.sample_chunk, selection=selection)

    def _tilting(self) -> bool:
        return self.discrete and self.cfg.method == "actflow"

    def _generation_columns(self, g: Generated) -> dict[str, torch.Tensor] | None:
        """Per-design buffer columns recorded at generation: for tilted fine-tuning, the ELBO of each
        design under the model that drew it (log p_gen)."""
        if not self._tilting():
            return None
        seeds = content_seeds(g.x, self.seed("elbo"))  # the same draws again when the design is re-scored
        return {"logp_gen": self.model.elbo(g.x, g.mask, n_mc=self.cfg.elbo_samples, seeds=seeds).float()}

    def _tilt_weights(self, r: int, record: dict[str, Any]) -> torch.Tensor:
        """Importance weights [N_valid] of the valid buffer designs: softmax(log p_θ − log p_gen + σ/α).

        The surrogate is fitted on the designs of the rounds before r (what was known when this round's
        samples were drawn): a GP's uncertainty at its own training points is ~0, so a surrogate fitted on
        all of D would give every buffer design the same zero reward."""
        cfg = self.cfg
        ts = time.perf_counter()
        fitted = self._fit_surrogate(r, fit_on=self.buffer.round < r)
        feats, surrogate = fitted.features, fitted.surrogate
        sel = self.buffer.valid
        reward = surrogate.reward(feats[sel], cfg.mean_weight, torch.float64)
        data = self.buffer.data(only_valid=True)
        logp_now = self.model.elbo(data["x"], data.get("mask"), n_mc=cfg.elbo_samples,
                                   seeds=content_seeds(data["x"], self.seed("elbo"))).double()
        log_ratio = logp_now - self.buffer.aux["logp_gen"][sel].double()
        if cfg.tilt_log_ratio_clip is not None:
            log_ratio = log_ratio.clamp(-cfg.tilt_log_ratio_clip, cfg.tilt_log_ratio_clip)
        w = tilt_weights(log_ratio, reward, cfg.tilt_alpha)
        new = self.buffer.round[sel] == r
        record.update({"surrogate_seconds": time.perf_counter() - ts, "tilt_ess": effective_sample_size(w),
                       "tilt_weight_on_new": float(w[new].sum()),
                       "tilt_reward_mean": float(reward.mean()), "tilt_reward_max": float(reward.max()),
                       "tilt_log_ratio_std": float(log_ratio.std()) if log_ratio.numel() > 1 else 0.0})
        return w

    def _balance_weights(self, record: dict[str, Any]) -> torch.Tensor:
        """Density-balancing weights [N_valid] of the valid buffer designs (see expand/balance.py)."""
        cfg = self.cfg
        started = time.perf_counter()
        radius = cfg.finetune_balance_radius if cfg.finetune_balance_radius is not None else self.dom.balance_radius
        designs = self.dom.decode_safe(self.buffer.x[self.buffer.valid])
        ok = torch.tensor([d is not None for d in designs], dtype=torch.bool)
        counts = torch.ones(len(designs), dtype=torch.long)
        if ok.any():
            counts[ok] = neighbour_counts(self.dom.descriptors([d for d in designs if d is not None]),
                                          self.dom.distance, radius)
        if not ok.all():  # the domain's decode raised this time on designs it decoded before
            log.warning("%s: %d valid buffer design(s) did not decode for balancing; they count as the median "
                        "neighbourhood", self.dom.name, int((~ok).sum()))
            counts[~ok] = int(counts[ok].double().median()) if ok.any() else 1
        w = balance_weights(counts, cfg.finetune_balance)
        record.update({"balance_radius": float(radius), "balance_neighbours_median": float(counts.double().median()),
                       "balance_neighbours_max": int(counts.max()), "balance_ess": effective_sample_size(w),
                       "balance_seconds": time.perf_counter() - started})
        return w

    def _update_flow(self, r: int, record: dict[str, Any] | None = None) -> float:
        cfg = self.cfg
        if cfg.finetune_steps == 0:
            return float("nan")
        data = self.buffer.data(only_valid=cfg.method != "rec-nf")
        if cfg.finetune_on == "decoded" and data["x"].shape[0]:
            data = _decoded_again(data, self.dom)
        if self._tilting() and data["x"].shape[0]:
            w = self._tilt_weights(r, record if record is not None else {})
            data["weight"] = (w * w.numel()).float()  # mean 1; each batch renormalises
        if cfg.finetune_balance > 0 and data["x"].shape[0]:
            b = self._balance_weights(record if record is not None else {})
            w = b * data["weight"].double() if "weight" in data else b
            data["weight"] = (w * (w.numel() / w.sum())).float()
        if cfg.finetune_weights_as == "draw" and "weight" in data:
            data = _resampled(data)
        if cfg.anchor_weight > 0:
            data = _with_anchors(data, self.dom, cfg.anchor_weight)
        negatives = None
        if cfg.negative_scale > 0 and cfg.method != "rec-nf" and int((~self.buffer.valid).sum()) > 0:
            negatives = self.buffer.data(only_valid=False, only_invalid=True)
        fc = FitConfig(steps=cfg.finetune_steps, batch_size=cfg.finetune_batch, lr=cfg.finetune_lr,
                       weight_decay=cfg.finetune_weight_decay, grad_clip=cfg.grad_clip,
                       negative_scale=cfg.negative_scale if negatives is not None else 0.0,
                       negative_clip=cfg.negative_clip, seed=self.seed("fit", r), progress=False,
                       grad_shards=cfg.grad_shards,
                       checkpoint_every=max(50, cfg.finetune_steps // 4), log_every=max(1, cfg.finetune_steps // 5),
                       desc=f"round {r} update")
        state = self.store.pending_dir(r) / "fit" if self.store else None
        res = fit(self.model, data, fc, negatives=negatives, state_dir=state, resume=state is not None)
        return res.losses[-1] if res.losses else float("nan")

    def _evaluate(self, r: int, set_reference: bool = False) -> tuple[dict[str, float], dict[str, int]]:
        """The evaluation of round r: its metrics, and why its invalid raw samples were rejected."""
        cfg = self.cfg
        artifacts: dict[str, torch.Tensor] = {}
        stats, raw, valid = evaluate(self.model, self.dom, n_samples=cfg.eval_samples, n_valid=cfg.eval_valid,
                                     seed=self.seed("eval"), steps=cfg.sampler_steps, solver="euler",
                                     reference_features=self.reference, return_samples=True, artifacts=artifacts)
        if set_reference and len(valid.designs) >= 2:
            self.reference = self.dom.frechet_features(valid.designs)
            if self.store is not None:
                self.store.save_tensors("reference", {"features": self.reference})
        if self.run_dir is not None and self.run_dir.writable:
            self._frame(r, raw, artifacts)
        return stats, rejection_counts(self.dom, raw, cfg.eval_samples)

    def _frame(self, r: int, raw: Generated, artifacts: dict[str, torch.Tensor]) -> None:
        frames = self.run_dir.path / "frames"
        frames.mkdir(exist_ok=True)
        if artifacts:
            save_tensors(frames / f"round-{r:05d}.safetensors", artifacts)
        n = self.cfg.eval_samples
        self.dom.plot_samples(str(frames / f"round-{r:05d}.png"), raw.x[:n], raw.valid[:n],
                              title=f"{self.cfg.method} round {r}", **artifacts)

    def _new_designs_plot(self, limit: int = 24) -> None:
        """Draw up to ``limit`` valid designs of the expansion rounds that are not in the data set."""
        new = _new_in_rounds(self.buffer, self.dom)[-limit:]
        if new:
            self.dom.plot_designs(str(self.run_dir.plots / "new_designs.png"), [d for d, _ in new],
                                  [f"round {r}" for _, r in new])

    def _commit(self, r: int, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.store is None:
            return
        extra = {"surrogate_inputs": self.surrogate_inputs} if self.surrogate_inputs is not None else None
        self.store.commit(r, self.model.net, self.buffer, self.history, extra_tensors=extra, seed=self.cfg.seed)
        self.surrogate_inputs = None
        dist.barrier()  # no rank starts the next round before the round is on disk
        if not self.run_dir.writable:
            return
        # metrics.jsonl mirrors the committed history (rewritten atomically: no duplicate rounds on resume)
        lines = []
        for h in self.history:
            flat = {k: v for k, v in h.items() if k != "eval"}
            flat.update({f"eval_{k}": v for k, v in h.get("eval", {}).items()})
            lines.append(_json_line({"phase": "expand", **flat}))
        atomic_write_text(self.run_dir.metrics_path, "".join(lines))

    def _write_discoveries(self, limit: int = 48, max_properties: int = 2000) -> None:
        """discoveries.json: the latest ``limit`` valid designs first generated in the expansion rounds and
        not in the data set, each with its similarity to the nearest training design, and the domain's
        property table for the pre-trained model's valid designs (warm-up) and for every new one. What
        cannot be computed is written as an "errors" entry, so reports can show it."""
        out: dict[str, Any] = {"domain": self.dom.name, "method": self.cfg.method,
                               "similarity": self.dom.similarity_name, "errors": {}}
        new = _new_in_rounds(self.buffer, self.dom)
        if new and not isinstance(new[0][0], str):
            return  # designs without a text form (the 2-D toy): its frames show them instead
        out["n_new"] = len(new)
        shown = new[-limit:]
        try:
            sims = self.dom.nearest_reference_similarity(self.dom.descriptors([d for d, _ in shown]),
                                                         [d for d, _ in shown]).tolist() if shown else []
        except Exception as e:  # shown in the report as not computed
            sims = [None] * len(shown)
            out["errors"]["nearest_similarity"] = f"{type(e).__name__}: {e}"
        out["designs"] = [{"design": d, "round": r, "nearest_similarity": s}
                          for (d, r), s in zip(shown, sims, strict=True)]
        warm = self.buffer.valid & (self.buffer.round == 0)
        groups = {"pre-trained (warm-up)": [d for d in self.dom.decode_safe(self.buffer.x[warm]) if d],
                  "new in the expansion": [d for d, _ in new]}
        try:
            tables = {g: self.dom.property_table(v[:max_properties]) for g, v in groups.items() if v}
            if any(t is not None for t in tables.values()):
                out["properties"] = {g: {k: np.asarray(a, dtype=float).round(4).tolist() for k, a in t.items()}
                                     for g, t in tables.items() if t is not None}
        except Exception as e:
            out["errors"]["properties"] = f"{type(e).__name__}: {e}"
        atomic_write_json(self.run_dir.path / "discoveries.json", out)

    def _plots(self) -> None:
        from flowdisco.plotting import plot_curves

        try:  # a drawing library missing on a headless machine (RDKit's needs libXrender) costs the figure
            self._new_designs_plot()
        except Exception as e:
            log.warning("could not draw %s (%s: %s); the run's results are saved without it",
                        self.run_dir.plots / "new_designs.png", type(e).__name__, e)
        self._write_discoveries()
        evals = evaluations(self.history)
        if not evals:
            return
        rounds = [h["round"] for h in evals]
        keys = [k for k in ("validity", "coverage", "vendi", "novelty", "generable_coverage", "mass_outside")
                if k in evals[0]["eval"]]
        for k in keys:
            plot_curves(self.run_dir.plots / f"{k}.png", rounds, {self.cfg.method: [h["eval"][k] for h in evals]},
                        xlabel="round", ylabel=k, title=f"{self.dom.name}: {k}")


def evaluations(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rounds of a history that carry an evaluation."""
    return [h for h in history if "eval" in h]


def first_found_in_rounds(buffer: DesignBuffer, dom: Domain) -> dict[Any, tuple[Any, int]]:
    """The distinct valid designs a run generated in its rounds (the warm-up excluded): {key: (design,
    round)}, each at its first occurrence, in buffer order. Designs that no longer decode are left out."""
    sel = buffer.valid & (buffer.round > 0)
    if not bool(sel.any()):
        return {}
    found: dict[Any, tuple[Any, int]] = {}
    for d, r in zip(dom.decode_safe(buffer.x[sel]), buffer.round[sel].tolist(), strict=True):
        if d is not None:
            found.setdefault(dom.key(d), (d, r))
    return found


def found_in_rounds(buffer: DesignBuffer, dom: Domain) -> dict[Any, Any]:
    """The distinct valid designs a run generated in its rounds: {key: design} (see first_found_in_rounds)."""
    return {k: d for k, (d, _) in first_found_in_rounds(buffer, dom).items()}


def _new_in_rounds(buffer: DesignBuffer, dom: Domain) -> list[tuple[Any, int]]:
    """The distinct valid designs of the rounds that are not in the data set, with the round each was
    first generated."""
    known = dom.dataset_keys()
    return [dr for k, dr in first_found_in_rounds(buffer, dom).items() if k not in known]


def _resampled(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn loss weights into draw probabilities (importance resampling): rows [N] are drawn ∝ weight and
    each drawn row's loss weighs 1. The expected gradient is the weighted one, but a design with a large
    weight is seen often at weight 1 instead of rarely at a weight that dominates its batch."""
    out = {k: v for k, v in data.items() if k != "weight"}
    w = data["weight"].double()
    out["draw"] = w / w.sum()
    return out


def _decoded_again(data: dict[str, torch.Tensor], dom: Domain) -> dict[str, torch.Tensor]:
    """The rows' designs decoded and encoded again (clean tensors of what the verifier judged); rows
    that do not encode keep their sampled tensors. A domain that cannot encode designs is an error."""
    encoded = dom.encode_designs(dom.decode_safe(data["x"]))
    if encoded is None:
        raise ValueError(f"finetune_on='decoded' needs a domain that encodes designs back; {dom.name} does not")
    x, mask = encoded
    ok = mask.flatten(1).any(1) if mask is not None else torch.ones(len(x), dtype=torch.bool)
    out = dict(data)
    out["x"] = torch.where(ok.view(-1, *([1] * (x.ndim - 1))), x.to(data["x"].dtype), data["x"])
    if mask is not None and "mask" in data:
        out["mask"] = torch.where(ok.view(-1, *([1] * (mask.ndim - 1))), mask.to(data["mask"].dtype), data["mask"])
    return out


def _with_anchors(data: dict[str, torch.Tensor], dom: Domain, alpha: float) -> dict[str, torch.Tensor]:
    """Append the training data as anchors, drawn for a share α of each batch's rows.

    The share is set by draw probabilities, not by loss weights: the training set is hundreds of times
    larger than the buffer, so uniform draws would fill most batches with anchors alone, whatever their
    weights. The buffer designs keep their own loss weights (tilt, balancing; mean 1) and their own draw
    probabilities (resampled weights, scaled to sum 1 − α; uniform where they have none); anchors weigh 1."""
    anchors = dom.training_set()
    nb, na = data["x"].shape[0], anchors["x"].shape[0]
    out = {k: torch.cat([data[k], anchors[k]]) for k in data if k in anchors}
    own = data["weight"].double() if "weight" in data else torch.ones(nb, dtype=torch.float64)
    own = own * (nb / own.sum().clamp_min(1e-300))
    out["weight"] = torch.cat([own.float(), torch.ones(na)])
    share = data["draw"].double() if "draw" in data else torch.ones(nb, dtype=torch.float64)
    share = share * ((1 - alpha) / share.sum().clamp_min(1e-300))
    out["draw"] = torch.cat([share, torch.full((na,), alpha / na, dtype=torch.float64)])
    return out


def _json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, default=float) + "\n"
