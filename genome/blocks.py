"""Named blocks of a flat genome.

A decoder's genome is one flat vector per individual; a `GenomeBlocks` names its
blocks (``"l0.pre"`` of shape [16, 10], ...) so that a population [P, D] can
be viewed block by block without copies, and initialised block by block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Block:
    """A named slice of the genome with a shape and an initial scale.

    ``init_std`` is the standard deviation of the initial values around
    ``init_mean``; 0 makes the block start at ``init_mean`` exactly.
    """

    name: str
    shape: tuple[int, ...]
    init_std: float = 1.0
    init_mean: float = 0.0

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class GenomeBlocks:
    """An ordered list of blocks that together make up a genome of `length` genes."""

    def __init__(self, blocks: list[Block]):
        names = [b.name for b in blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate block names in a genome: {names}")
        self.blocks = tuple(blocks)
        self.offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for b in blocks:
            self.offsets[b.name] = (start, start + b.size)
            start += b.size
        self.length = start

    def split(self, population: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views [P, *shape] of every block of a population [P, length]."""
        if population.ndim != 2 or population.shape[1] != self.length:
            raise ValueError(
                f"population must have shape [P, {self.length}], got {list(population.shape)}"
            )
        p = population.shape[0]
        return {
            b.name: population[:, s:e].reshape(p, *b.shape)
            for b, (s, e) in zip(self.blocks, self.offsets.values(), strict=True)
        }

    def init(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """n random genomes [n, length]: each block ~ Normal(init_mean, init_std)."""
        out = torch.empty(n, self.length, dtype=dtype)
        for b in self.blocks:
            s, e = self.offsets[b.name]
            noise = torch.randn(n, e - s, generator=generator, dtype=dtype)
            out[:, s:e] = b.init_mean + b.init_std * noise
        return out.to(device)

    def std(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The initial standard deviation of every gene [length] (a per-gene search scale)."""
        return torch.cat(
            [torch.full((b.size,), float(b.init_std), dtype=dtype) for b in self.blocks]
        )
