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


def save_figure(fig: Any, path: str | Path, tight: bool = True) -> None:
    """Lay out (unless ``tight`` is False), write as PNG (creating the folder) and free the figure."""
    if tight:
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


def sequence_list(path: str | Path, seqs: Sequence[str], legends: Sequence[str] = (), wrap: int = 60) -> None:
    """A PNG listing sequences in a monospaced font (wrapped at ``wrap`` letters), residues coloured
    by class (hydrophobic, positive, negative, polar, special), with optional legends."""
    plt = _plt()
    colours = {**dict.fromkeys("AILMFVW", "#1b7837"), **dict.fromkeys("KRH", "#2166ac"),
               **dict.fromkeys("DE", "#b2182b"), **dict.fromkeys("STNQYC", "#7b3294"),
               **dict.fromkeys("GP", "#e08214")}
    lines: list[tuple[str, str]] = []
    for i, s in enumerate(seqs):
        tag = legends[i] if i < len(legends) else f"#{i + 1}"
        chunks = [s[j:j + wrap] for j in range(0, max(len(s), 1), wrap)]
        for k, chunk in enumerate(chunks):
            lines.append((f"{tag} ({len(s)} aa)" if k == 0 else "", chunk))
    height = 0.6 + 0.24 * max(len(lines), 1)
    fig = plt.figure(figsize=(0.11 * wrap + 2.6, height))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_axis_off()
    step = 1.0 / (len(lines) + 1)
    char_w = 0.11 / (0.11 * wrap + 2.6)
    x0 = 2.5 / (0.11 * wrap + 2.6)
    for r, (tag, chunk) in enumerate(lines):
        y = 1 - (r + 1) * step
        ax.text(0.01, y, tag, fontsize=8, va="center", family="monospace", color="#444444")
        for j, c in enumerate(chunk):
            ax.text(x0 + j * char_w, y, c, fontsize=9, va="center", family="monospace",
                    color=colours.get(c, "black"))
    save_figure(fig, path, tight=False)
