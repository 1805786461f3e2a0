"""Face-selective units: which hidden units of a grown network prefer faces.

Following Baek, Song, Jang, Kim and Paik (Nat Commun 2021, "Face detection in
untrained deep neural networks"), a unit is *face-selective* when its
responses to face images are significantly higher than its responses to the
images of every non-face category: for each non-face category, a two-sided
Wilcoxon rank-sum (Mann-Whitney) test at p < `alpha` (0.001 by default, one
test per category, no correction across units), with the mean response to
faces the higher. The face-selectivity index of a unit is

    FSI = (mean face response - mean non-face response) / (the two summed),

in [-1, 1] for ReLU units (0 for a unit silent on every image), with every
non-face image pooled. Responses of the face categories are pooled as faces.

The rank-sum test uses the normal approximation with the correction for ties
(ReLU units are often exactly 0) and a continuity correction, as
`scipy.stats.mannwhitneyu(method="asymptotic")`, computed for every unit of
every individual at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genome.phenotype import Phenotype

ALPHA = 0.001


def rank_sum(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Two-sided rank-sum test of a [..., n] against b [..., m], batched over the leading
    dimensions: (U statistic of a, p-value), each [...]. Ties get their mean rank."""
    n, m = a.shape[-1], b.shape[-1]
    if n < 1 or m < 1:
        raise ValueError(f"rank_sum needs samples on both sides, got {n} and {m}")
    both = torch.cat([a, b], dim=-1).to(torch.float64)
    flat = both.reshape(-1, n + m)
    ordered = flat.sort(dim=-1).values
    below = torch.searchsorted(ordered, flat, right=False)
    upto = torch.searchsorted(ordered, flat, right=True)
    ranks = (below + upto + 1).to(torch.float64) / 2  # mean rank of each tie group, from 1
    u = ranks[:, :n].sum(dim=-1) - n * (n + 1) / 2
    ties = (upto - below).to(torch.float64)  # the size of each value's tie group
    total = n + m
    # sum over tie groups of t^3 - t = sum over values of t^2 - 1
    correction = (ties * ties - 1).sum(dim=-1) / (total * (total - 1)) if total > 1 else 0.0
    var = n * m / 12 * ((total + 1) - correction)
    mean = n * m / 2
    dev = (u - mean).abs() - 0.5
    z = torch.where(var > 0, dev.clamp_min(0) / var.clamp_min(1e-300).sqrt(), 0.0)
    p = torch.where(var > 0, torch.erfc(z / math.sqrt(2)), 1.0).clamp(max=1.0)
    shape = both.shape[:-1]
    return u.reshape(shape), p.reshape(shape)


@dataclass(frozen=True)
class Selectivity:
    """Selectivity of every hidden unit for one face category; per hidden layer, [P, units]."""

    categories: tuple[str, ...]
    face: str
    non_faces: tuple[str, ...]
    alpha: float
    # Per hidden layer: the mean response to each category [P, U, C], the p-value against
    # each non-face category [P, U, C_non], the FSI [P, U], face-selective or not [P, U].
    means: list[Tensor]
    p_values: list[Tensor]
    fsi: list[Tensor]
    selective: list[Tensor]

    def share(self) -> Tensor:
        """The share [P] of face-selective units among all hidden units."""
        hits = sum(s.sum(dim=1) for s in self.selective)
        units = sum(s.shape[1] for s in self.selective)
        return hits.to(torch.float64) / units

    def counts(self) -> list[Tensor]:
        """Face-selective units [P] per hidden layer."""
        return [s.sum(dim=1) for s in self.selective]


def face_selectivity(
    phenotype: Phenotype,
    stimuli: dict[str, Tensor],
    face: str,
    non_faces: tuple[str, ...],
    alpha: float = ALPHA,
) -> Selectivity:
    """Test every hidden unit of every individual: `stimuli` is {category: images [n, H, W]},
    `face` names the face category and `non_faces` the categories it must beat."""
    return face_selectivities(phenotype, stimuli, (face,), non_faces, alpha)[face]


def face_selectivities(
    phenotype: Phenotype,
    stimuli: dict[str, Tensor],
    faces: tuple[str, ...],
    non_faces: tuple[str, ...],
    alpha: float = ALPHA,
) -> dict[str, Selectivity]:
    """`face_selectivity` for each face category in `faces`, from one forward pass."""
    categories = tuple(stimuli)
    unknown = [c for c in (*faces, *non_faces) if c not in stimuli]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; valid: {', '.join(categories)}")
    if not non_faces or set(faces) & set(non_faces):
        raise ValueError(
            f"non-face categories must be given and exclude {', '.join(map(repr, faces))}"
        )
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    sizes = {c: len(stimuli[c]) for c in categories}
    if min(sizes.values()) < 2:
        raise ValueError(f"every category needs at least 2 images, got {sizes}")
    images = torch.cat([stimuli[c] for c in categories]).to(phenotype.device)
    bounds = torch.tensor([0, *sizes.values()]).cumsum(0).tolist()
    parts = {c: slice(bounds[k], bounds[k + 1]) for k, c in enumerate(categories)}
    layers = {f: ([], [], [], []) for f in faces}  # means, p-values, FSI, selective
    with torch.no_grad():
        for h in phenotype.hidden(images):  # [P, B, U]
            r = h.transpose(1, 2).to(torch.float64)  # [P, U, B]
            mean = torch.stack([r[..., parts[c]].mean(dim=-1) for c in categories], dim=-1)
            pooled = torch.cat([r[..., parts[c]] for c in non_faces], dim=-1).mean(dim=-1)
            for face in faces:
                p = torch.stack(
                    [rank_sum(r[..., parts[face]], r[..., parts[c]])[1] for c in non_faces], dim=-1
                )
                face_mean = mean[..., categories.index(face)]
                above = torch.stack(
                    [face_mean > mean[..., categories.index(c)] for c in non_faces], dim=-1
                )
                total = face_mean + pooled
                fsi = torch.where(total > 0, (face_mean - pooled) / total.clamp_min(1e-300), 0.0)
                for out, value in zip(
                    layers[face], (mean, p, fsi, ((p < alpha) & above).all(dim=-1)), strict=True
                ):
                    out.append(value)
    return {f: Selectivity(categories, f, tuple(non_faces), alpha, *layers[f]) for f in faces}


def top_images(
    phenotype: Phenotype, images: Tensor, layer: int, units: Tensor, i: int, k: int
) -> Tensor:
    """Indices [len(units), k] of the k images of `images` [B, H, W] that drive each of the
    given units of hidden layer `layer` of individual i most."""
    with torch.no_grad():
        h = phenotype.select([i]).hidden(images)[layer][0]  # [B, U]
    return h[:, units].topk(min(k, len(images)), dim=0).indices.T


def ranked_units(sel: Selectivity, i: int) -> list[tuple[int, int]]:
    """(layer, unit) of every hidden unit of individual i, the most face-selective first
    (selective units before the others, then by FSI)."""
    keys = []
    for layer, (fsi, hit) in enumerate(zip(sel.fsi, sel.selective, strict=True)):
        for unit in range(fsi.shape[1]):
            keys.append((not bool(hit[i, unit]), -float(fsi[i, unit]), layer, unit))
    return [(layer, unit) for _, _, layer, unit in sorted(keys)]


def selectivity_report(sel: Selectivity, i: int, top: int | None = None) -> dict[str, Any]:
    """Plain values for printing or JSON: the test, counts per layer, and the units of
    individual i, most selective first (`top` of them; None: all)."""
    units = ranked_units(sel, i)
    rows = []
    for layer, unit in units if top is None else units[:top]:
        rows.append(
            {
                "layer": layer + 1,
                "unit": unit,
                "fsi": float(sel.fsi[layer][i, unit]),
                "selective": bool(sel.selective[layer][i, unit]),
                "mean": dict(zip(sel.categories, sel.means[layer][i, unit].tolist(), strict=True)),
                "p": dict(zip(sel.non_faces, sel.p_values[layer][i, unit].tolist(), strict=True)),
            }
        )
    return {
        "face": sel.face,
        "non_faces": list(sel.non_faces),
        "alpha": sel.alpha,
        "selective_per_layer": [int(c[i]) for c in sel.counts()],
        "units_per_layer": [int(s.shape[1]) for s in sel.selective],
        "share": float(sel.share()[i]),
        "units": rows,
    }
