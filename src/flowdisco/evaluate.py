"""evaluate(): the standard metrics of a model on a domain.

Validity is measured on ``n_samples`` raw samples; the set metrics (coverage, Vendi, uniqueness,
novelty, Fréchet distance) on a fixed number ``n_valid`` of valid samples, so that counts compare
across models.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowdisco.domains import Domain, get_domain
from flowdisco.generate import Generated, collect_valid
from flowdisco.metrics import frechet_distance, novel_fraction, novelty, uniqueness, validity
from flowdisco.seeding import make_generator


def set_metrics(domain: Domain, valid: Generated, reference_features: Tensor | None = None) -> dict[str, float]:
    """Metrics of a set of valid designs: coverage, Vendi, uniqueness, novelty, and Fréchet
    distances of ``domain.frechet_features`` (FCD on molecules) to the domain's test set and to
    ``reference_features`` [m, f] (e.g. of the pre-trained model's valid samples)."""
    n = len(valid.designs)
    out: dict[str, float] = {"n_valid": float(n)}
    if n == 0:
        return {**out, "coverage": 0.0, "vendi": float("nan"), "uniqueness": float("nan"),
                "novel_fraction": float("nan"), "novelty": float("nan")}
    desc = domain.descriptors(valid.designs)
    keys = [domain.key(d) for d in valid.designs]
    sim_nn = domain.nearest_reference_similarity(desc, designs=valid.designs)
    out.update({
        "coverage": float(domain.coverage(desc, designs=valid.designs)),
        "vendi": domain.vendi(desc),
        "uniqueness": uniqueness(keys),
        "novel_fraction": novel_fraction(keys, domain.reference_keys()),
        "n_new_unique": float(len(set(keys) - domain.dataset_keys())),
        "novelty": novelty(sim_nn[:, None]),
    })
    for t in domain.extra_coverage_thresholds:
        out[f"coverage_{t:g}"] = float(domain.coverage(desc, t))
    out.update(domain.design_metrics(valid.designs))
    test = domain.test_frechet_features()
    if n >= 2 and (test is not None or reference_features is not None):
        feats = domain.frechet_features(valid.designs).double().numpy()
        if test is not None:
            out["frechet_to_test"] = frechet_distance(feats, test.double().numpy())
        if reference_features is not None:
            out["frechet_to_reference"] = frechet_distance(feats, reference_features.double().numpy())
    return out


def sample_metrics(domain: Domain, raw: Generated, n_samples: int, valid: Generated,
                   reference_features: Tensor | None = None) -> dict[str, float]:
    """The metrics of drawn samples: validity of the first ``n_samples`` raw designs, uniqueness among
    their valid ones, and :func:`set_metrics` of the ``valid`` designs (a fixed number of them)."""
    stats: dict[str, float] = {"validity": validity(raw.valid[:n_samples])}
    first_valid = [d for d, ok in zip(raw.designs[:n_samples], raw.valid[:n_samples], strict=True) if ok]
    if first_valid:  # uniqueness among all valid designs of the n_samples raw ones
        stats["uniqueness_raw"] = uniqueness([domain.key(d) for d in first_valid])
    stats.update(set_metrics(domain, valid, reference_features))
    return stats


#: the reason counted for a rejected design whose domain names none (see :meth:`Domain.rejection_reason`)
UNEXPLAINED_REJECTION = "rejected by the verifier"


def rejection_counts(domain: Domain, raw: Generated, n_samples: int | None = None) -> dict[str, int]:
    """Why the invalid designs among the first ``n_samples`` raw ones were rejected: {reason: count},
    most common first, from :meth:`Domain.rejection_reason`. An undecodable design is "not decoded";
    a domain that cannot say, or whose reason raises, gives "rejected by the verifier"."""
    counts: Counter[str] = Counter()
    for design, ok in zip(raw.designs[:n_samples], raw.valid[:n_samples], strict=True):
        if ok:
            continue
        if design is None:
            counts["not decoded"] += 1
            continue
        try:
            reason = domain.rejection_reason(design)
        except Exception:  # a diagnostic must not cost the evaluation
            reason = None
        counts[reason or UNEXPLAINED_REJECTION] += 1
    return dict(counts.most_common())


def format_rejections(counts: dict[str, int], n: int) -> str:
    """One line: "412 of 1000 invalid: 300 several fragments, 112 an atom over its valence"."""
    total = sum(counts.values())
    return f"{total} of {n} invalid" + (": " + ", ".join(f"{c} {r}" for r, c in counts.items()) if total else "")


def redecoded(domain: Domain, raw: Generated) -> Generated:
    """The same sampled tensors decoded and verified by another ``domain`` of the same shape (a molecule
    domain's capped variant, a user's stricter verifier): the designs and verdicts change, x does not."""
    designs = domain.decode_safe(raw.x)
    return Generated(x=raw.x, mask=raw.mask, designs=designs, valid=np.asarray(domain.check(designs), dtype=bool))


def evaluate(model: Any, domain: str | Domain, *, n_samples: int = 1000, n_valid: int = 500, seed: int = 0,
             steps: int = 100, solver: str = "euler", reference_features: Tensor | None = None,
             extra: bool = True, max_batches: int = 20, return_samples: bool = False,
             artifacts: dict[str, Tensor] | None = None, progress: bool = False) -> Any:
    """Sample ``model``, verify, and compute the metrics (a dict of floats).

    With ``return_samples=True`` returns (stats, raw samples, the n_valid valid samples).
    ``artifacts``: a dict the domain may fill with arrays behind its extra metrics (the toy's
    density grid), for plots. ``progress``: a bar while the valid designs are collected.
    """
    dom = get_domain(domain)
    if n_samples < 1 or n_valid < 1:
        raise ValueError("n_samples and n_valid must be ≥ 1")
    t0 = time.perf_counter()
    gen = make_generator(seed)
    raw, valid = collect_valid(model, dom, n_valid, generator=gen, batch=n_samples, max_batches=max_batches,
                               steps=steps, solver=solver, progress=progress)
    stats = sample_metrics(dom, raw, n_samples, valid, reference_features)
    if extra:
        with torch.no_grad():
            stats.update(dom.extra_metrics(model, seed=seed, artifacts=artifacts))
    stats["seconds"] = time.perf_counter() - t0
    if valid.valid.size < n_valid:
        stats["n_valid_short"] = float(n_valid - valid.valid.size)
    if return_samples:
        return stats, raw, valid
    return stats


def format_table(rows: dict[str, dict[str, float]], keys: list[str] | None = None) -> str:
    """A plain-text table: one column per row name, one line per metric."""
    names = list(rows)
    keys = keys or sorted({k for r in rows.values() for k in r})
    width = max([len(k) for k in keys] + [6])
    colw = max([len(n) for n in names] + [10])
    lines = [" " * width + "  " + "  ".join(n.rjust(colw) for n in names)]
    for k in keys:
        cells = []
        for n in names:
            v = rows[n].get(k)
            cells.append(("—" if v is None or (isinstance(v, float) and np.isnan(v)) else _fmt(v)).rjust(colw))
        lines.append(k.ljust(width) + "  " + "  ".join(cells))
    return "\n".join(lines)


def _fmt(v: float) -> str:
    if float(v).is_integer() and abs(v) < 1e9:
        return f"{int(v)}"
    return f"{v:.4g}"
