"""Plots as PNG files (matplotlib, Agg backend, imported only when a plot is drawn)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """matplotlib's subplots on the Agg backend (no display needed)."""
    return _plt().subplots(*args, **kwargs)


def save_figure(fig: Any, path: str | Path) -> None:
    """Lay out, write as PNG (creating the folder) and free the figure."""
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _plt().close(fig)


def plot_toy_frame(path: str | Path, domain: Any, samples: Tensor | None = None, valid: np.ndarray | None = None,
                   density: Tensor | None = None, title: str = "", ax: Any = None) -> None:
    """Ω* in grey, the generable set {p_θ ≥ τ} as a filled contour, samples as dots (valid blue,
    invalid red). Writes ``path`` unless an ``ax`` is given."""
    from flowdisco.domains.toy2d import BOX, GRID

    plt = _plt()
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    lo, hi = BOX
    extent = (lo, hi, lo, hi)
    ax.imshow(domain._grid_valid.reshape(GRID, GRID).numpy(), origin="lower", extent=extent,
              cmap="Greys", vmin=0, vmax=3, interpolation="nearest")
    if density is not None:
        gen = (density.numpy() >= domain.density_threshold).astype(float)
        ax.contourf(np.linspace(lo, hi, GRID), np.linspace(lo, hi, GRID), gen, levels=[0.5, 1.5],
                    colors=["#f4a261"], alpha=0.55)
    if samples is not None:
        s = samples.numpy()
        v = np.ones(len(s), dtype=bool) if valid is None else valid
        ax.scatter(s[v, 0], s[v, 1], s=3, c="#1d3557", label="valid")
        if (~v).any():
            ax.scatter(s[~v, 0], s[~v, 1], s=3, c="#e63946", label="invalid")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if own:
        save_figure(fig, path)


def plot_curves(path: str | Path, x: Sequence[float], series: dict[str, Sequence[float]], *, xlabel: str,
                ylabel: str, title: str = "", spreads: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                logy: bool = False) -> None:
    """Line plot of named series over x, with optional shaded (low, high) bands."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=110)
    for name, ys in series.items():
        ax.plot(x[: len(ys)], ys, label=name)
        if spreads and name in spreads:
            lo, hi = spreads[name]
            ax.fill_between(x[: len(lo)], lo, hi, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def image_grid(path: str | Path, images: Tensor, nrow: int = 10, title: str = "",
               row_labels: Sequence[str] = ()) -> None:
    """Images [N, 1, H, W] in [−1, 1] as a grid PNG, ``nrow`` per row."""
    n = images.shape[0]
    rows = (n + nrow - 1) // nrow
    fig, axes = subplots(rows, nrow, figsize=(nrow * 0.6, rows * 0.6 + (0.3 if title else 0)), dpi=110,
                         squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i, 0].numpy(), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
    for r, label in enumerate(row_labels):
        axes[r, 0].set_title(label, fontsize=6, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def molecule_grid(path: str | Path, smiles: Sequence[str], legends: Sequence[str] = (), per_row: int = 6,
                  size: int = 220) -> None:
    """A PNG grid of 2-D drawings of molecules (RDKit), with optional legends."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    from flowdisco.io import atomic_write_bytes

    mols = [Chem.MolFromSmiles(s) for s in smiles]
    keep = [i for i, m in enumerate(mols) if m is not None]
    png = Draw.MolsToGridImage([mols[i] for i in keep], molsPerRow=per_row, subImgSize=(size, size),
                               legends=[legends[i] for i in keep] if legends else None, returnPNG=True)
    atomic_write_bytes(path, png)
