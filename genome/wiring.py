"""Wiring cost: how much wire a grown network spends, batched over the population.

Neurons have positions in space (`Layout.positions`), so every connection has
a length. The cost is the distance-weighted sum of absolute weights,
sum_l sum_ij |W_l[i, j]| * d_l[i, j], the distance-only regulariser of
spatially embedded RNNs (seRNN: Achterberg, Akarca, Strouse, Duncan and
Astle, "Spatially embedded recurrent neural networks reveal widespread links
between structural and functional neuroscience findings", Nat Mach Intell
2023), here for a layered feed-forward body. Selecting for a low cost grows
local, modular wiring, as seRNN's regulariser does with gradients.
"""

from __future__ import annotations

import functools
import math

import torch

from genome.layout import Layout
from genome.phenotype import Phenotype


@functools.lru_cache(maxsize=32)
def _distances(layout: Layout, device: torch.device, dtype: torch.dtype) -> tuple:
    # Computed in float64 on the CPU so that every device and dtype sees the
    # same rounded distances; a layout constant, so it is cached.
    pos = layout.positions(torch.float64)
    return tuple(
        torch.cdist(pos[k + 1], pos[k]).to(device=device, dtype=dtype)
        for k in range(layout.n_layers)
    )


def distances(
    layout: Layout,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Euclidean distance [out, in] between every post and pre neuron of each layer.

    The tensors are cached and shared between calls: treat them as read-only.
    """
    device = torch.device(device if device is not None else "cpu")
    return list(_distances(layout, device, dtype or torch.float32))


def wiring_cost(phenotype: Phenotype, *, scale_free: bool = False) -> torch.Tensor:
    """Wiring cost [P]: sum over layers of sum |w| * distance, for every individual.

    With `scale_free`, each unit's incoming weights are first rescaled to the
    He scale (root mean square sqrt(2 / fan_in)), so the cost measures where
    the wires go and how concentrated they are, not how strong they are
    overall: a decoder's gain genes can shrink the plain cost many times over
    without changing the wiring, and selection would find that first.
    """
    d = distances(phenotype.layout, phenotype.device, phenotype.dtype)
    total = torch.zeros(phenotype.population_size, device=phenotype.device, dtype=phenotype.dtype)
    for w, dist in zip(phenotype.weights, d, strict=True):
        a = w.abs()
        if scale_free:
            rms = w.square().mean(dim=2, keepdim=True).sqrt()
            a = a * (math.sqrt(2.0 / w.shape[2]) / rms.clamp_min(torch.finfo(w.dtype).tiny))
        # |w| contracted with d in one call: [P, out, in] x [out, in] -> [P].
        total += torch.einsum("poi,oi->p", a, dist)
    return total
