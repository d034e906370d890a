"""digits: scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes), the image domain of the
MP-DiT and AGD experiments.

Pixels 0..16 are mapped to [−1, 1]; a design is a tensor [1, 8, 8]; labels condition the model,
with label dropout 0.1 for classifier-free guidance (index 10 is the null class). The split is
fixed: a seeded permutation keeps 1,497 images for training and 300 held out.

The verifier here is only a sanity check (finite pixels within [−1.5, 1.5]): image quality is
measured by the in-project classifier metrics (classifier-FD, KID, class accuracy), not by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowdisco.domains.base import Domain, shipped_model_path

N_HELD_OUT = 300
NUM_CLASSES = 10


def load_digits_split(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train [N, 1, 8, 8], y_train [N], x_test, y_test), pixels in [−1, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits domain needs scikit-learn: pip install 'flowdisco[images]'") from None
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    test, train = perm[:N_HELD_OUT], perm[N_HELD_OUT:]
    return x[train], y[train], x[test], y[test]


class Digits(Domain):
    name = "digits"
    shape = (1, 8, 8)
    kind = "image"
    num_classes = NUM_CLASSES
    label_dropout = 0.1
    kernel_lengthscale = 4.0
    coverage_threshold = 4.0

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.x_train, self.y_train, self.x_test, self.y_test = load_digits_split(seed)

    def training_data(self) -> Tensor:
        return self.x_train

    def training_conditions(self) -> Tensor:
        return self.y_train

    def decode(self, x: Tensor) -> list[Any]:
        return list(x.clamp(-1, 1).reshape(-1, 8, 8).numpy())

    def verify(self, designs: Sequence[Any]) -> Sequence[bool]:
        return [bool(np.isfinite(d).all() and np.abs(d).max() <= 1.5) for d in designs]

    def default_network(self) -> tuple[str, dict]:
        return "dit", {"image_size": 8, "channels": 1, "patch": 2, "kind": "mp", "size": "tiny",
                       "mods": ["scale", "shift", "gate"], "num_classes": NUM_CLASSES}

    def default_pretrain(self) -> dict:
        # lr 3e-2: the MP-AdaLN optimum of the learning-rate sweep in BENCHMARKS.md (MP-DiT section)
        return {"steps": 3000, "batch_size": 64, "lr": 3e-2, "ema_sigma_rel": 0.05}

    def pretrained_model_path(self) -> str | None:
        """The shipped MP-DiT (``flowdisco/assets/digits_model``: tiny MP-AdaLN, 3000 steps, lr 3e-2,
        seed 0), trained on the seed-0 split only."""
        return shipped_model_path("digits_model") if self.seed == 0 else None
