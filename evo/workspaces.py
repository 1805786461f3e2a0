"""Decoding a population chunk by chunk into buffers that are reused.

Fresh memory for every chunk costs page faults: a chunk of 784-800-10
networks is 40 MB. Scores never keep a phenotype, so one workspace serves
every chunk of the same size, dtype and device; a differentiable score gets
its own memory. A lone genome whose bytes are those last decoded into its
workspace, under the same kernel mode (the native and torch paths differ in
the last bits), is not decoded again: the reigning champion is scored again
on every generation's batch (evo/driver.py), and its phenotype stays what it
was. Objectives read a phenotype and never change it (evo/objectives/base.py).
A population whose phenotypes fit in `AHEAD_MEMORY` is decoded in one pass
into one workspace (`decode_ahead`), in the bits of its chunks decoded one by
one, so that a decoder's costs per call are paid once a generation.
"""

from __future__ import annotations

from functools import partial

import torch

from genome import native
from genome.decoders.base import Decoder
from genome.phenotype import Phenotype

# Workspaces kept at once: the chunks, the champion's re-score, a loop of one.
KEPT = 4
# Bytes of phenotypes a population may hold at once: one that fits is decoded
# in one pass (chunk by chunk, in the same bits) before its chunks' forward
# passes, and the decoder's per-call costs are paid once a generation, not per chunk.
AHEAD_MEMORY = 32 * 2**20


def chunk(population: torch.Tensor, start: int, step: int) -> torch.Tensor:
    """Rows [start, start + step) as an exact chunk: `step` rows (the last chunk padded
    with copies of its first) in contiguous memory aligned to 64 bytes, copied where the
    rows are not already."""
    part = population[start : start + step]
    n = part.shape[0]
    if n == step and part.is_contiguous() and part.data_ptr() % 64 == 0:
        return part
    out = torch.empty(step, part.shape[1], dtype=part.dtype, device=part.device)
    out[:n] = part
    out[n:] = part[:1]
    return out


class Workspaces:
    """The phenotype buffers of a decoder's chunks, by (size, dtype, device)."""

    def __init__(self, decoder: Decoder):
        self.decoder = decoder
        # Per key: the buffers, and the kernel mode and bytes of the lone genome last
        # decoded into them (None: a chunk of several, or one being overwritten).
        self._held: dict[tuple, list] = {}
        self._ahead: Phenotype | None = None  # `decode_ahead`'s buffer

    def decode(self, part: torch.Tensor, chunk_size: int | None = None) -> Phenotype:
        """The phenotype of a chunk [n, D], in its workspace (fresh memory under autograd);
        `chunk_size` as `Decoder.decode` takes it."""
        if torch.is_grad_enabled() and part.requires_grad:
            return self.decoder.decode(part, chunk_size=chunk_size)
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
        phenotype = self.decoder.decode(part, chunk_size=chunk_size, out=held[0])
        if lone is not None:
            held[1] = (lone[0], lone[1].clone())
        return phenotype

    def decode_ahead(self, population: torch.Tensor, step: int) -> Phenotype | None:
        """The phenotypes of every exact chunk (`chunk`) of `population` in one buffer, or
        None where they would not fit in `AHEAD_MEMORY` (with the genomes, where they must
        be copied), the decoder would split a chunk, or a chunk would not start at 64 bytes.

        The decoder runs over all the chunks at once, chunk by chunk (`Decoder.decode`
        with `chunk_size`), so every weight has the bits of a decode of its chunk
        alone. The buffer is one for every population size (grown to the largest,
        within `AHEAD_MEMORY`), apart from the chunks' workspaces: a Pareto front
        scored at a new size every generation neither allocates afresh nor crowds
        out the champion's.
        """
        if torch.is_grad_enabled() and population.requires_grad:
            return None  # chunk by chunk, each into fresh memory, as `decode` does
        p, genes = population.shape
        padded = -(-p // step) * step
        item = population.element_size()
        copy = padded != p or not (population.is_contiguous() and population.data_ptr() % 64 == 0)
        layout = self.decoder.layout
        size = padded * (layout.n_params + (genes if copy else 0)) * item
        if size > AHEAD_MEMORY or self.decoder.chunk_size() < step:
            return None
        # Each chunk of the genomes, the weights and the biases starts where its own
        # workspace would: at a multiple of 64 bytes.
        rows = [genes, *(o * i for o, i in layout.layer_shapes()), *layout.sizes[1:]]
        if any(step * n * item % 64 for n in rows):
            return None
        whole = population
        if copy:  # fresh memory starts at 64 bytes, as `chunk`'s copies do
            whole = torch.cat([chunk(population, a, step) for a in range(0, p, step)])
        held, kind = self._ahead, (population.dtype, population.device)
        if held is None or held.population_size < padded or (held.dtype, held.device) != kind:
            held = self._ahead = self._new((padded, *kind))
        out = Phenotype(
            [w[:padded] for w in held.weights], [b[:padded] for b in held.biases], layout
        )
        return self.decoder.decode(whole, chunk_size=step, out=out)

    def _new(self, key: tuple) -> Phenotype:
        size, dtype, device = key
        shapes = self.decoder.layout.layer_shapes()
        new = partial(torch.empty, dtype=dtype, device=device)
        return Phenotype(
            [new(size, o, i) for o, i in shapes],
            [new(size, o) for o, _ in shapes],
            self.decoder.layout,
        )
