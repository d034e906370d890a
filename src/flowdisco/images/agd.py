"""The AGD image experiment on digits: CFG against distilled students, from the same noise and labels.

Per guidance scale ω and method: classifier-FD against the digits training split and class accuracy
(the in-project digits CNN: proxies, not FID), the mean L2 distance of each sample to the CFG sample
drawn from the same noise and label, network evaluations per sample (counted rows through the base
network, not assumed) and wall-clock seconds per sample, all measured in the same call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from flowdisco.flow.model import FlowModel
from flowdisco.guidance.adapters import GuidanceStudent
from flowdisco.images.dit import class_labels, classifier_reference, score_images
from flowdisco.seeding import make_generator

CFG = "cfg"
CONDITIONAL = "conditional (ω = 1)"


@contextmanager
def count_evaluations(net: nn.Module) -> Iterator[list[int]]:
    """Counts the rows (designs) passed through ``net``: yields a one-element list, the running total."""
    total = [0]
    handle = net.register_forward_pre_hook(lambda _m, args: total.__setitem__(0, total[0] + args[0].shape[0]))
    try:
        yield total
    finally:
        handle.remove()


def draw(base: FlowModel, labels: Tensor, x0: Tensor, *, omega: float | None, student: GuidanceStudent | None,
         steps: int, solver: str) -> tuple[Tensor, float, float]:
    """(samples [n, 1, 8, 8] clamped to the pixel range, NFEs per sample, seconds per sample).

    student None and ω set: CFG (2 NFEs per step); student given: one pass at ω; neither: ω = 1."""
    n = labels.shape[0]
    counted = student.base.net if student is not None else base.net  # a full fine-tune has its own copy
    with count_evaluations(counted) as rows:
        t0 = time.perf_counter()
        if student is not None:
            x = student.sample(n, omega=float(omega), cond=labels, x0=x0, steps=steps, solver=solver)
        else:
            x = base.sample(n, cond=labels, x0=x0, cfg_scale=omega, steps=steps, solver=solver)
        seconds = time.perf_counter() - t0
    return x.clamp(-1, 1), rows[0] / n, seconds / n


@torch.no_grad()
def compare_guidance(base: FlowModel, students: Mapping[str, GuidanceStudent], omegas: Sequence[float], *,
                     n_per_class: int = 100, steps: int = 50, solver: str = "euler", seed: int = 0,
                     classifier_dir: str | os.PathLike | None = None, keep_samples: int = 0,
                     ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, Tensor]]]:
    """Metrics[method][str(ω)] for CFG and every student at every ω, plus the ω = 1 conditional model.

    All methods at one ω start from the same noise and labels; methods are timed back to back in the
    same process. keep_samples: the first k samples per class kept per method and ω (for grids).
    Returns (metrics, samples[method][str(ω)] [10·k, 1, 8, 8]).
    """
    clf, ref = classifier_reference(classifier_dir)
    labels = class_labels(n_per_class, base.num_classes)
    x0 = torch.randn((labels.shape[0], *base.shape), generator=make_generator(seed))
    keep = torch.cat([torch.arange(c * n_per_class, c * n_per_class + keep_samples) for c in range(base.num_classes)])
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    samples: dict[str, dict[str, Tensor]] = {}

    def score(method: str, key: str, x: Tensor, nfe: float, sec: float, x_cfg: Tensor | None) -> None:
        row = {**score_images(clf, ref, x, labels)[0], "nfe_per_sample": nfe, "seconds_per_sample": sec}
        if x_cfg is not None:
            row["distance_to_cfg"] = float((x - x_cfg).flatten(1).norm(dim=1).mean())
        metrics.setdefault(method, {})[key] = row
        if keep_samples:
            samples.setdefault(method, {})[key] = x[keep]

    x, nfe, sec = draw(base, labels, x0, omega=None, student=None, steps=steps, solver=solver)
    score(CONDITIONAL, "1", x, nfe, sec, None)
    for omega in omegas:
        key = f"{omega:g}"
        x_cfg, nfe, sec = draw(base, labels, x0, omega=omega, student=None, steps=steps, solver=solver)
        score(CFG, key, x_cfg, nfe, sec, None)
        for name, student in students.items():
            x, nfe, sec = draw(base, labels, x0, omega=omega, student=student, steps=steps, solver=solver)
            score(name, key, x, nfe, sec, x_cfg)
    return metrics, samples
