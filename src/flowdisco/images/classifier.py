"""The digits evaluation classifier: a small CNN trained by flowdisco on the digits training split.

Its penultimate features (128-d) define the image metrics — classifier-FD (Fréchet distance), KID —
and its predictions the class accuracy of conditional samples. It is an in-project proxy, not
Inception: numbers are comparable within flowdisco, not with published FIDs.

The shipped classifier lives in ``flowdisco/assets/digits_classifier`` (safetensors + JSON, with its
held-out accuracy); ``flowdisco dit classifier`` retrains it.
"""

from __future__ import annotations

import os
import time
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowdisco.io import CheckpointError, atomic_write_json, load_tensors, read_json, save_tensors
from flowdisco.seeding import seeded

FEATURE_DIM = 128


class DigitsCNN(nn.Module):
    """[B, 1, 8, 8] in [−1, 1] → logits [B, 10]; ``features`` gives the 128-d penultimate layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                                  nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(64 * 4 * 4, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: Tensor) -> Tensor:
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _shift(x: Tensor, g: torch.Generator) -> Tensor:
    """Random translations by up to one pixel (augmentation), padding with the background −1."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()
    return padded[:, :, dy:dy + 8, dx:dx + 8]


def train_classifier(seed: int = 0, epochs: int = 60, batch_size: int = 64, lr: float = 2e-3,
                     progress: bool = False) -> tuple[DigitsCNN, dict]:
    """Train on the digits training split; returns (model, info with held-out accuracy)."""
    from flowdisco.domains.digits import load_digits_split

    xtr, ytr, xte, yte = load_digits_split()
    g = torch.Generator().manual_seed(seed)
    with seeded(seed):
        net = DigitsCNN()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    t0 = time.perf_counter()
    steps = epochs * ((len(ytr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(net(_shift(xtr[idx], g)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if progress and (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}", flush=True)
    net.eval()
    with torch.no_grad():
        acc = float((net(xte).argmax(1) == yte).float().mean())
        train_acc = float((net(xtr).argmax(1) == ytr).float().mean())
    info = {"held_out_accuracy": acc, "train_accuracy": train_acc, "held_out_images": len(yte),
            "epochs": epochs, "seed": seed, "seconds": time.perf_counter() - t0,
            "parameters": sum(p.numel() for p in net.parameters())}
    return net, info


def save_classifier(net: DigitsCNN, info: dict, directory: str | os.PathLike) -> None:
    d = Path(directory)
    digest = save_tensors(d / "classifier.safetensors", net.state_dict())
    atomic_write_json(d / "classifier.json", {**info, "sha256": digest, "architecture": "DigitsCNN"})


def shipped_classifier_dir() -> Path:
    return Path(str(resources.files("flowdisco") / "assets" / "digits_classifier"))


def load_classifier(directory: str | os.PathLike | None = None) -> tuple[DigitsCNN, dict]:
    """The shipped classifier (or one saved in ``directory``), in eval mode, with its info."""
    d = Path(directory) if directory is not None else shipped_classifier_dir()
    info = read_json(d / "classifier.json", what="classifier config")
    net = DigitsCNN()
    try:
        net.load_state_dict(load_tensors(d / "classifier.safetensors", expected_sha256=info.get("sha256")))
    except RuntimeError as e:
        raise CheckpointError(f"classifier weights in {d} do not fit DigitsCNN: {e}") from None
    return net.eval().requires_grad_(False), info
