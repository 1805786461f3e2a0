"""Decoding a population chunk by chunk into buffers that are reused.

Fresh memory for every chunk costs page faults: a chunk of 784-800-10
networks is 40 MB. Scores never keep a phenotype, so one workspace serves
every chunk of the same size, dtype and device; a differentiable score gets
its own memory. A lone genome whose bytes are those last decoded into its
workspace, under the same kernel mode (the native and torch paths differ in
the last bits), is not decoded again: the reigning champion is scored again
on every generation's batch (evo/driver.py), and its phenotype stays what it
was. Objectives read a phenotype and never change it (evo/objectives/base.py).
"""

from __future__ import annotations

from functools import partial

import torch

from genome import native
from genome.decoders.base import Decoder
from genome.phenotype import Phenotype

# Workspaces kept at once: the chunks, the champion's re-score, a loop of one.
KEPT = 4


class Workspaces:
    """The phenotype buffers of a decoder's chunks, by (size, dtype, device)."""

    def __init__(self, decoder: Decoder):
        self.decoder = decoder
        # Per key: the buffers, and the kernel mode and bytes of the lone genome last
        # decoded into them (None: a chunk of several, or one being overwritten).
        self._held: dict[tuple, list] = {}

    def decode(self, part: torch.Tensor) -> Phenotype:
        """The phenotype of a chunk [n, D], in its workspace (fresh memory under autograd)."""
        if torch.is_grad_enabled() and part.requires_grad:
            return self.decoder.decode(part)
        key = (part.shape[0], part.dtype, part.device)
        if key not in self._held:
            if len(self._held) >= KEPT:
                self._held.clear()
            self._held[key] = [self._new(key), None]
        held = self._held[key]
        lone = None
        if part.shape[0] == 1:
            lone = (native.mode(), part.detach().contiguous().view(torch.uint8))
            last = held[1]
            if last is not None and last[0] == lone[0] and torch.equal(last[1], lone[1]):
                return held[0]
        held[1] = None
        phenotype = self.decoder.decode(part, out=held[0])
        if lone is not None:
            held[1] = (lone[0], lone[1].clone())
        return phenotype

    def _new(self, key: tuple) -> Phenotype:
        size, dtype, device = key
        shapes = self.decoder.layout.layer_shapes()
        new = partial(torch.empty, dtype=dtype, device=device)
        return Phenotype(
            [new(size, o, i) for o, i in shapes],
            [new(size, o) for o, _ in shapes],
            self.decoder.layout,
        )
