"""Pictures of one grown network: weight matrices, receptive fields, wiring in space.

Drawn with matplotlib's object-oriented API on the Agg canvas (no display,
no pyplot state), written atomically as PNG. Receptive fields are drawn on
the input sheet as in the g-network paper's figures of innate filters
(Shuvaev, Lachi, Koulakov and Zador, PNAS 2024); the wiring plot shows the
strongest connections in space, the quantity seRNN's cost penalises
(Achterberg et al., Nat Mach Intell 2023).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import matplotlib
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genome.files import write_atomic
from genome.graph import strongest_edges
from genome.phenotype import Phenotype
from genome.selectivity import Selectivity, ranked_units, top_images

CMAP = "RdBu_r"


def _individual(phenotype: Phenotype, i: int) -> int:
    p = phenotype.population_size
    if not (isinstance(i, int) and -p <= i < p):
        raise IndexError(f"individual {i!r} out of range for population {p}")
    return i % p


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    # Figures made without pyplot are not registered anywhere; clearing drops
    # their artists now rather than at garbage collection.
    fig.clear()
    return write_atomic(path, buf.getvalue())


def _limit(w: torch.Tensor) -> float:
    m = float(w.abs().max()) if w.numel() else 0.0
    return m if m > 0 else 1.0


def plot_weights(phenotype: Phenotype, i: int, path: str | os.PathLike) -> Path:
    """Every layer's weight matrix [out, in] of individual i, centred at 0."""
    i = _individual(phenotype, i)
    n = phenotype.layout.n_layers
    fig = Figure(figsize=(4.5 * n, 4))
    for k, w in enumerate(phenotype.weights):
        wk = w[i].detach().float().cpu()
        ax = fig.add_subplot(1, n, k + 1)
        lim = _limit(wk)
        im = ax.imshow(wk.numpy(), cmap=CMAP, vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(f"layer {k}: {wk.shape[0]} x {wk.shape[1]}")
        ax.set_xlabel("pre")
        ax.set_ylabel("post")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return _save(fig, path)


def plot_receptive_fields(
    phenotype: Phenotype, i: int, path: str | os.PathLike, max_units: int = 64
) -> Path:
    """The incoming weights of the first hidden layer's units, drawn on the input sheet."""
    i = _individual(phenotype, i)
    if max_units < 1:
        raise ValueError(f"max_units must be >= 1, got {max_units}")
    rows, cols = phenotype.layout.input_shape
    w = phenotype.weights[0][i].detach().float().cpu()
    units = min(max_units, w.shape[0])
    grid = math.ceil(math.sqrt(units))
    # One mosaic image with NaN gutters, each field scaled to its own peak:
    # a single imshow is ~20x faster than a subplot per unit.
    fields = w[:units].reshape(units, rows, cols)
    fields = fields / fields.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    tiles = torch.full((grid * grid, rows + 1, cols + 1), float("nan"))
    tiles[:units, :rows, :cols] = fields
    mosaic = tiles.reshape(grid, grid, rows + 1, cols + 1).permute(0, 2, 1, 3)
    mosaic = mosaic.reshape(grid * (rows + 1), grid * (cols + 1))[:-1, :-1]
    side = max(3.0, min(12.0, 0.12 * grid * max(rows, cols)))
    fig = Figure(figsize=(side, side))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="white")
    ax.imshow(mosaic.numpy(), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(
        f"receptive fields of layer 1 ({units} of {w.shape[0]} units, row-major; "
        "each scaled to its peak)",
        fontsize=8,
    )
    return _save(fig, path)


def plot_wiring(phenotype: Phenotype, i: int, path: str | os.PathLike, keep: float = 0.05) -> Path:
    """The network in space: neurons at their positions, the strongest edges as lines."""
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    i = _individual(phenotype, i)
    layout = phenotype.layout
    positions = layout.positions(torch.float64)
    fig = Figure(figsize=(7, 7))
    ax = fig.add_subplot(projection="3d")
    edges = strongest_edges(phenotype, i, keep)
    peak = max(float(w.abs().max()) for _, _, w in edges) or 1.0
    for k, (post, pre, w) in enumerate(edges):
        seg = torch.stack([positions[k][pre], positions[k + 1][post]], dim=1)
        alpha = (w.abs().double() / peak).clamp(0.05, 1.0)
        colour = torch.where(
            w[:, None] >= 0, torch.tensor([0.8, 0.1, 0.1]), torch.tensor([0.1, 0.2, 0.8])
        )
        rgba = torch.cat([colour.double(), alpha[:, None]], dim=1)
        ax.add_collection3d(Line3DCollection(seg.numpy(), colors=rgba.numpy(), linewidths=0.5))
    for s, pos in enumerate(positions):
        ax.scatter(*pos.T.numpy(), s=4 if pos.shape[0] > 100 else 12, label=f"layer {s}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.set_title(f"strongest {keep:.0%} of connections (red +, blue -)")
    ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)


def plot_face_units(
    phenotype: Phenotype,
    i: int,
    sel: Selectivity,
    stimuli: dict[str, torch.Tensor],
    path: str | os.PathLike,
    top: int = 8,
    k: int = 16,
) -> Path:
    """The first hidden layer's most face-selective units of individual i, one row each:
    its receptive field, the mean of the k stimuli that drive it most, and four of them.

    Units are sorted by the test (selective first) and then by face-selectivity
    index, so the rows read from the most face-like preference down; the mean
    of the top-driving images shows what a field of bit stripes responds to.
    """
    i = _individual(phenotype, i)
    if top < 1 or k < 1:
        raise ValueError(f"top and k must be >= 1, got {top} and {k}")
    units = [u for layer, u in ranked_units(sel, i) if layer == 0][:top]
    images = torch.cat(list(stimuli.values())).to(phenotype.device)
    names = [c for c, x in stimuli.items() for _ in range(len(x))]
    best = top_images(phenotype, images, 0, torch.tensor(units), i, k).cpu()
    images = images.float().cpu()
    rows, cols = phenotype.layout.input_shape
    w = phenotype.weights[0][i].detach().float().cpu()
    shown = min(4, best.shape[1])
    fig = Figure(figsize=(1.4 * (2 + shown), 1.5 * len(units)))
    for r, unit in enumerate(units):
        field = w[unit].reshape(rows, cols)
        panels = [
            (field, CMAP, _limit(field), f"unit {unit}: FSI {float(sel.fsi[0][i, unit]):+.2f}")
        ]
        mean = images[best[r]].mean(dim=0)
        panels.append((mean, "gray", None, f"mean of top {best.shape[1]}"))
        panels += [(images[j], "gray", None, names[j]) for j in best[r, :shown].tolist()]
        for c, (img, cmap, lim, title) in enumerate(panels):
            ax = fig.add_subplot(len(units), len(panels), r * len(panels) + c + 1)
            kw = {"vmin": -lim, "vmax": lim} if lim is not None else {}
            ax.imshow(img.numpy(), cmap=cmap, interpolation="nearest", **kw)
            ax.set_title(
                title + (" *" if c == 0 and bool(sel.selective[0][i, unit]) else ""), fontsize=7
            )
            ax.set_axis_off()
    fig.suptitle(
        f"layer 1, most face-selective first (* passes the test for {sel.face!r})", fontsize=8
    )
    fig.tight_layout()
    return _save(fig, path)
