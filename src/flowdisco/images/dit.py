"""The MP-DiT image experiment on digits: named configurations, training, sampling, evaluation.

Training is flowdisco's ``pretrain`` (the shared ``fit`` loop) on the ``digits`` domain with a DiT
velocity network, power-function EMA and label dropout; sampling is class-conditional with
classifier-free guidance; evaluation uses the in-project digits classifier (classifier-FD, KID,
class accuracy — proxies, not FID) and the held-out flow-matching loss at fixed times.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from flowdisco.flow.model import FlowModel
from flowdisco.metrics.images import batched, class_accuracy, classifier_fd, kid
from flowdisco.seeding import make_generator

# The paper's configurations (baseline DiT, MP-DiT with AdaLN-style modulation, and rotation variants).
CONFIGS: dict[str, dict[str, Any]] = {
    "baseline": {"kind": "baseline", "mods": []},
    "mp-adaln": {"kind": "mp", "mods": ["scale", "shift", "gate"]},
    "mp-rot-scale-gate": {"kind": "mp", "mods": ["rotation", "scale", "gate"]},
    "mp-rot-scale": {"kind": "mp", "mods": ["rotation", "scale"]},
    "mp-rot": {"kind": "mp", "mods": ["rotation"]},
    "mp-scale-gate": {"kind": "mp", "mods": ["scale", "gate"]},
}


def network_kwargs(config: str, size: str = "tiny", patch: int = 2, image_size: int = 8, channels: int = 1,
                   num_classes: int = 10, out_channels: int | None = None) -> dict[str, Any]:
    try:
        base = CONFIGS[config]
    except KeyError:
        raise ValueError(f"unknown DiT configuration {config!r}; available: {', '.join(CONFIGS)}") from None
    kw = {"image_size": image_size, "channels": channels, "patch": patch, "size": size,
          "num_classes": num_classes, **base}
    if out_channels is not None:
        kw["out_channels"] = out_channels
    return kw


def class_labels(n_per_class: int, num_classes: int = 10) -> Tensor:
    return torch.arange(num_classes).repeat_interleave(n_per_class)


@torch.no_grad()
def sample_images(model: FlowModel, labels: Tensor, *, cfg_scale: float | None = None, steps: int = 50,
                  solver: str = "heun", seed: int = 0, batch_size: int = 500) -> Tensor:
    """Class-conditional samples [n, 1, 8, 8] for ``labels`` [n], clamped to the pixel range."""
    x = model.sample(labels.shape[0], steps=steps, solver=solver, generator=make_generator(seed), cond=labels,
                     cfg_scale=cfg_scale, batch_size=batch_size)
    return x.clamp(-1, 1)


@torch.no_grad()
def heldout_loss(model: FlowModel, x: Tensor, y: Tensor, times: tuple[float, ...] = (0.25, 0.5, 0.75),
                 seed: int = 0) -> dict[str, float]:
    """Flow-matching loss on held-out images at fixed t, with fixed noise (comparable across models)."""
    model.eval()
    g = make_generator(seed)
    noise = torch.randn(x.shape, generator=g)
    out = {}
    for t in times:
        batch = {"x": x, "x0": noise, "t": torch.full((x.shape[0],), t), "cond": y}
        out[f"heldout_loss_t{t}"] = float(model.loss({k: v.to(model.device) for k, v in batch.items()}))
    return out


def classifier_reference(classifier_dir: str | os.PathLike | None = None) -> tuple[torch.nn.Module, Tensor]:
    """The digits classifier and its features of the training split [N, 128], the FD reference."""
    from flowdisco.domains.digits import load_digits_split
    from flowdisco.images.classifier import load_classifier

    clf, _ = load_classifier(classifier_dir)
    return clf, batched(clf.features, load_digits_split()[0])


def score_images(clf: torch.nn.Module, reference: Tensor, x: Tensor, labels: Tensor) -> tuple[dict[str, float], Tensor]:
    """classifier-FD against ``reference`` and class accuracy of images x [n, 1, 8, 8] generated for
    ``labels`` [n]; also returns their features [n, 128]."""
    feats = batched(clf.features, x)
    return {"classifier_fd": classifier_fd(feats, reference),
            "class_accuracy": class_accuracy(clf.head(feats), labels)}, feats


def evaluate_images(model: FlowModel, *, cfg_scale: float | None = None, n_per_class: int = 100, steps: int = 50,
                    solver: str = "heun", seed: int = 0, classifier_dir: str | os.PathLike | None = None,
                    samples: Tensor | None = None) -> dict[str, float]:
    """classifier-FD and KID against the digits training split, class accuracy, held-out FM loss."""
    from flowdisco.domains.digits import load_digits_split

    clf, ref = classifier_reference(classifier_dir)
    _, _, xte, yte = load_digits_split()
    labels = class_labels(n_per_class)
    x = samples if samples is not None else sample_images(model, labels, cfg_scale=cfg_scale, steps=steps,
                                                           solver=solver, seed=seed)
    stats, feats = score_images(clf, ref, x, labels)
    kid_mean, kid_std = kid(feats, ref, seed=seed)
    stats.update({"kid": kid_mean, "kid_std": kid_std, "n_samples": float(len(labels))})
    stats.update(heldout_loss(model, xte, yte, seed=seed))
    return stats


def block_mechanism(net: torch.nn.Module, probe_x: Tensor, probe_t: Tensor, probe_y: Tensor) -> dict[str, list[float]]:
    """Per-block output RMS on a fixed probe batch, and per-block weight norms (the MP mechanism)."""
    acts: list[float] = []
    hooks = [b.register_forward_hook(lambda _m, _i, o: acts.append(float(o.pow(2).mean().sqrt())))
             for b in net.blocks]
    was = net.training
    net.eval()
    dev = next(net.parameters()).device
    try:
        with torch.no_grad():
            net(probe_x.to(dev), probe_t.to(dev), cond=probe_y.to(dev))
    finally:
        for h in hooks:
            h.remove()
        net.train(was)
    norms = [float(torch.sqrt(sum((p.detach() ** 2).sum() for n, p in b.named_parameters() if "weight" in n)))
             for b in net.blocks]
    return {"activation_rms": acts, "weight_norm": norms}
