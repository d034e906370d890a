"""Tree ensembles stored as plain arrays: a scikit-learn random forest saved without pickle.

A fitted ``RandomForestClassifier`` (binary) is exported to five flat arrays over all nodes of all
trees (left child, right child, split feature, threshold, P(class 1) at the node) plus each tree's
root offset, written as safetensors. :class:`Forest` evaluates them in NumPy and reproduces
scikit-learn's ``predict_proba(x)[:, 1]`` (the mean over trees of the leaf's class-1 fraction).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from flowdisco.io import load_tensors, save_tensors


class Forest:
    """left/right [M] (−1 at leaves), feature [M], threshold [M], p1 [M], roots [T] (node offsets)."""

    def __init__(self, left: np.ndarray, right: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                 p1: np.ndarray, roots: np.ndarray) -> None:
        self.left, self.right = left.astype(np.int64), right.astype(np.int64)
        self.feature, self.threshold = feature.astype(np.int64), threshold.astype(np.float64)
        self.p1, self.roots = p1.astype(np.float64), roots.astype(np.int64)

    @classmethod
    def from_sklearn(cls, model: Any) -> Forest:
        """Export a fitted binary scikit-learn forest (RandomForestClassifier / ExtraTreesClassifier)."""
        if list(getattr(model, "classes_", [])) != [0, 1]:
            raise ValueError("only binary forests with classes [0, 1] can be exported")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("left", "right", "feature", "threshold", "p1")}
        roots, offset = [], 0
        for est in model.estimators_:
            t = est.tree_
            leaf = t.children_left < 0
            roots.append(offset)
            parts["left"].append(np.where(leaf, -1, t.children_left + offset))
            parts["right"].append(np.where(leaf, -1, t.children_right + offset))
            parts["feature"].append(np.where(leaf, 0, t.feature))
            parts["threshold"].append(t.threshold)
            v = t.value[:, 0, :].astype(np.float64)
            parts["p1"].append(v[:, 1] / v.sum(1).clip(min=1e-300))
            offset += t.node_count
        return cls(*(np.concatenate(parts[k]) for k in ("left", "right", "feature", "threshold", "p1")),
                   roots=np.asarray(roots))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) [n] for features x [n, d] (float64 comparisons, as scikit-learn's float32 split
        thresholds are compared against float32 features)."""
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        n = x.shape[0]
        rows = np.arange(n)
        total = np.zeros(n)
        for root in self.roots:
            node = np.full(n, root, dtype=np.int64)
            while True:
                inner = self.left[node] >= 0
                if not inner.any():
                    break
                go_left = x[rows, self.feature[node]] <= self.threshold[node]
                nxt = np.where(go_left, self.left[node], self.right[node])
                node = np.where(inner, nxt, node)
            total += self.p1[node]
        return total / len(self.roots)

    def save(self, path: str | os.PathLike) -> str:
        # compact dtypes; thresholds stay float64 (exact midpoints of float32 feature values)
        dtypes = {"left": np.int32, "right": np.int32, "feature": np.int32, "threshold": np.float64,
                  "p1": np.float32, "roots": np.int64}
        return save_tensors(path, {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k).astype(dt)))
                                   for k, dt in dtypes.items()})

    @classmethod
    def load(cls, path: str | os.PathLike, expected_sha256: str | None = None) -> Forest:
        t = load_tensors(path, expected_sha256)
        return cls(*(t[k].numpy() for k in ("left", "right", "feature", "threshold", "p1", "roots")))

    @property
    def n_nodes(self) -> int:
        return int(self.left.size)
