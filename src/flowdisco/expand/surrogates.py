"""Surrogate uncertainty σ_t over φ-features of every generated design (valid and invalid).

- :class:`GPSurrogate`: exact Gaussian process, zero mean, RBF kernel; σ² is the posterior variance,
  which depends on where designs were generated, not on their labels (pure novelty).
  Its cost is kept from growing cubically with the buffer: it conditions on a *representative
  subset* (greedy sphere exclusion at radius ``subset_radius``, default ℓ/8: a dropped point lies
  that close to a kept one and would barely lower the variance; measured on 3000 points, the
  variance rises by at most 0.08, by 0.0006 on average), capped at ``max_points`` (evenly
  thinned beyond). ``subset_radius=0`` gives the exact GP on the whole buffer.
  Its posterior mean μ (on standardised validity labels) is kept too, for a validity-aware reward
  ``σ + mean_weight·μ``; on the subset only the kept points' labels count.
- :class:`EnsembleSurrogate`: 5 MLPs (width 100, dropout 0.1) trained from scratch on 90 %
  bootstraps of the standardised validity labels, early-stopped on the held-out 10 %;
  σ = standard deviation of their predictions.

Both give ``uncertainty(features) -> [M]`` differentiable in the features (gradient guidance).
"""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor, nn

from flowdisco.seeding import derive_seed, seeded

log = logging.getLogger("flowdisco")


class Surrogate:
    name = "base"
    fit_seconds: float = 0.0

    def fit(self, features: Tensor, labels: Tensor, seed: int = 0) -> Surrogate:
        raise NotImplementedError

    def uncertainty(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def mean(self, features: Tensor) -> Tensor:
        return torch.zeros(features.shape[0], dtype=features.dtype, device=features.device)

    def reward(self, features: Tensor, mean_weight: float = 0.0, dtype: torch.dtype | None = None) -> Tensor:
        """ActFlow's exploration reward r = σ + mean_weight·μ [M] at features [M, d], differentiable in them;
        σ and μ are cast to ``dtype`` (if given) before they are added. The one definition of r for
        guidance, the tilt and selection."""
        r = self.uncertainty(features)
        r = r if dtype is None else r.to(dtype)
        if mean_weight:
            mu = self.mean(features)
            r = r + mean_weight * (mu if dtype is None else mu.to(dtype))
        return r


def greedy_subset(x: Tensor, radius: float, max_points: int | None = None, block: int = 64) -> Tensor:
    """Indices of a sphere-exclusion subset of x [N, d] (in order; each kept point is farther than
    ``radius`` from all earlier kept ones), at most ``max_points``.

    The result is that of visiting the points one by one. The work is batched: each ``block`` of
    candidates is first compared with every point kept before it in one step, and only the
    survivors are then settled one by one against the points kept within the block.
    """
    if radius <= 0:
        idx = torch.arange(x.shape[0])
    else:
        r2 = radius * radius
        centres = torch.empty_like(x)  # kept points fill it from the front, so it never has to grow
        n_kept, keep = 0, []
        for start in range(0, x.shape[0], block):
            xb = x[start:start + block]
            alive = (_min_sq_distance(xb, centres[:n_kept]) > r2).nonzero().flatten().tolist()
            block_start = n_kept
            for j in alive:
                # against at most `block` points: plain differences beat a matrix product here
                if n_kept > block_start and bool(((centres[block_start:n_kept] - xb[j]) ** 2).sum(1).min() <= r2):
                    continue
                centres[n_kept] = xb[j]
                n_kept += 1
                keep.append(start + j)
        idx = torch.tensor(keep, dtype=torch.long)
    if max_points is not None and idx.numel() > max_points:
        # evenly thinned, so old and new regions both stay represented
        idx = idx[torch.linspace(0, idx.numel() - 1, max_points).round().long()]
    return idx


def _min_sq_distance(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distance from each row of a [M, d] to its nearest row of b [n, d]: [M] (inf if n = 0)."""
    if b.shape[0] == 0:
        return torch.full((a.shape[0],), float("inf"), dtype=a.dtype)
    return squared_distances(a, b).min(1).values


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """‖a_i − b_j‖² [M, n] for a [M, d], b [n, d], as ‖a‖² + ‖b‖² − 2a·bᵀ: one matrix product, no [M, n, d]
    temporary (at 4,096 points of width 128 that temporary is 17 GB in float64). Clamped at 0, since
    rounding can take a zero distance a hair below it."""
    return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T).clamp_min(0.0)


class GPSurrogate(Surrogate):
    name = "gp"

    def __init__(self, lengthscale: float = 0.1, noise: float = 1e-4, subset_radius: float | None = None,
                 max_points: int = 4096) -> None:
        if lengthscale <= 0:
            raise ValueError(f"GP lengthscale must be > 0, got {lengthscale}")
        self.lengthscale = float(lengthscale)
        self.noise = float(noise)
        self.subset_radius = lengthscale / 8 if subset_radius is None else float(subset_radius)
        self.max_points = int(max_points)
        self.points: Tensor | None = None
        self.chol: Tensor | None = None
        self.weights: Tensor | None = None  # (K + noise·I)⁻¹ y over the conditioning points [n]

    def kernel(self, a: Tensor, b: Tensor) -> Tensor:
        """RBF kernel [M, n] between a [M, d] and b [n, d]."""
        return torch.exp(-squared_distances(a, b) / (2 * self.lengthscale**2))

    def fit(self, features: Tensor, labels: Tensor | None = None, seed: int = 0) -> GPSurrogate:
        t0 = time.perf_counter()
        x = features.detach().double().cpu()
        idx = greedy_subset(x, self.subset_radius, self.max_points) if x.shape[0] else torch.arange(0)
        self.points = x[idx]
        k = self.kernel(self.points, self.points)
        k.diagonal().add_(self.noise)
        self.chol = torch.linalg.cholesky(k)
        self.weights = None
        if labels is not None and labels.numel() == x.shape[0] and x.shape[0]:
            y = labels.detach().double().cpu()
            std = y.std() if y.numel() > 1 else torch.tensor(0.0, dtype=torch.float64)
            y = (y - y.mean()) / (std if float(std) > 0 else 1.0)  # standardised, as the ensemble's targets
            self.weights = torch.cholesky_solve(y[idx, None], self.chol).squeeze(1)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def variance(self, features: Tensor) -> Tensor:
        """Posterior variance [M] at features [M, d] (prior variance 1)."""
        if self.points is None or self.points.shape[0] == 0:
            return torch.ones(features.shape[0], dtype=features.dtype, device=features.device)
        f = features.double()
        ks = self.kernel(f, self.points.to(f.device))  # [M, n]
        v = torch.linalg.solve_triangular(self.chol.to(f.device), ks.T, upper=False)  # [n, M]
        return (1.0 - (v * v).sum(0)).clamp_min(0.0).to(features.dtype)

    def uncertainty(self, features: Tensor) -> Tensor:
        return self.variance(features).clamp_min(1e-12).sqrt()

    def mean(self, features: Tensor) -> Tensor:
        """Posterior mean [M] of the standardised labels at features [M, d] (0 without labels)."""
        if self.weights is None or self.points is None or self.points.shape[0] == 0:
            return super().mean(features)
        f = features.double()
        ks = self.kernel(f, self.points.to(f.device))  # [M, n]
        return (ks @ self.weights.to(f.device)).to(features.dtype)


class _Member(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).squeeze(-1)


class EnsembleSurrogate(Surrogate):
    name = "ensemble"

    def __init__(self, n_members: int = 5, hidden: int = 100, dropout: float = 0.1, lr: float = 1e-3,
                 max_steps: int = 1000, patience: int = 30, bootstrap: float = 0.9) -> None:
        if n_members < 2:
            raise ValueError("an ensemble needs at least 2 members for a standard deviation")
        self.n_members, self.hidden, self.dropout = n_members, hidden, dropout
        self.lr, self.max_steps, self.patience, self.bootstrap = lr, max_steps, patience, bootstrap
        self.members: list[_Member] = []
        self.steps_trained: list[int] = []

    def fit(self, features: Tensor, labels: Tensor, seed: int = 0) -> EnsembleSurrogate:
        t0 = time.perf_counter()
        # fitted where the features live: on a GPU run the CPU fit dominated each round at W = 4,096
        x = features.detach().float()
        y = labels.detach().float().to(x.device)
        std = y.std() if y.numel() > 1 else torch.tensor(0.0)
        y = (y - y.mean()) / (std if float(std) > 0 else 1.0)
        self.members, self.steps_trained = [], []
        n = x.shape[0]
        for m in range(self.n_members):
            with seeded(derive_seed(seed, "member", m)):
                perm = torch.randperm(n)
                n_train = max(1, round(self.bootstrap * n))
                tr, va = perm[:n_train], perm[n_train:]
                x_tr, y_tr, x_va, y_va = x[tr], y[tr], x[va], y[va]
                net = _Member(x.shape[1], self.hidden, self.dropout).to(x.device)
                opt = torch.optim.Adam(net.parameters(), lr=self.lr)
                best, best_state, since, step = float("inf"), None, 0, 0
                for step in range(1, self.max_steps + 1):  # noqa: B007 (step kept after the loop)
                    net.train()
                    opt.zero_grad()
                    loss = ((net(x_tr) - y_tr) ** 2).mean()
                    loss.backward()
                    opt.step()
                    if va.numel() == 0:
                        continue
                    net.eval()
                    with torch.no_grad():
                        val = float(((net(x_va) - y_va) ** 2).mean())
                    if val < best - 1e-6:
                        best, since = val, 0
                        best_state = {k: v.clone() for k, v in net.state_dict().items()}
                    else:
                        since += 1
                        if since >= self.patience:
                            break
                if best_state is not None:
                    net.load_state_dict(best_state)
            net.eval().requires_grad_(False)
            self.members.append(net)
            self.steps_trained.append(step)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _predictions(self, features: Tensor) -> Tensor:
        f = features.float()
        return torch.stack([m.to(f.device)(f) for m in self.members])  # [n_members, M]

    def uncertainty(self, features: Tensor) -> Tensor:
        return self._predictions(features).std(0, unbiased=False).to(features.dtype)

    def mean(self, features: Tensor) -> Tensor:
        return self._predictions(features).mean(0).to(features.dtype)


SURROGATES = {"gp": GPSurrogate, "ensemble": EnsembleSurrogate}


def make_surrogate(name: str, **kwargs: object) -> Surrogate:
    try:
        cls = SURROGATES[name]
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; available: {', '.join(SURROGATES)}") from None
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad options for surrogate {name!r}: {e}") from None
