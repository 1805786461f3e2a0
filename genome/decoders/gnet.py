"""g-network: a small MLP per connection type maps (pre code ++ post code) to a weight.

Shuvaev, Lachi, Koulakov, Zador, "Encoding innate ability through a genomic
bottleneck", PNAS 2024. Each pair of consecutive sheets (a connection type)
has its own MLP; its input is the identity code of the presynaptic neuron
concatenated with that of the postsynaptic neuron, its output the weight.

The first layer is separable: W1 [pre ++ post] = W1_pre pre + W1_post post, so
each neuron's code is projected once ([n, h]) and pairs are formed by a
broadcast add. Pairs are processed in blocks of postsynaptic neurons so the
[p, block, n_pre, h] intermediate stays small; on the CPU without autograd, the
fused kernel of `genome.native` does the pairs, and the scaling, in registers
instead, each layer in one call that reads its genes (projections included)
straight from the genomes. Biases are a linear function of the postsynaptic
code (code_dim + 1 genes per layer).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from genome import native
from genome.blocks import GenomeBlocks
from genome.decoders.base import Block, Decoder, check_code, check_widths
from genome.decoders.pairs import PAIR_BLOCK, pairs_mlp, project
from genome.layout import Layout


class GNet(Decoder):
    name = "gnet"
    defaults: ClassVar[dict[str, Any]] = {"hidden": [16, 16], "code": "binary"}

    def _validate(self, s: dict[str, Any]) -> dict[str, Any]:
        s["hidden"] = check_widths(self.name, "hidden", s["hidden"])
        s["code"] = check_code(self.name, s["code"])
        return s

    @classmethod
    def _with_width(cls, width: int) -> dict[str, Any]:
        return {"hidden": [width, width]}

    def _dims(self, layout: Layout) -> list[int]:
        return [s.code_dim(self.settings["code"]) for s in layout.sheets]

    def _blocks(self, layout: Layout) -> list[Block]:
        h = self.settings["hidden"]
        d = self._dims(layout)
        blocks = []
        for k in range(layout.n_layers):
            d_in = d[k] + d[k + 1]
            std = (1.0 / max(d_in, 1)) ** 0.5
            blocks += [
                Block(f"l{k}.pre", (h[0], d[k]), std),
                Block(f"l{k}.post", (h[0], d[k + 1]), std),
                Block(f"l{k}.b1", (h[0],), 0.1),
            ]
            for j in range(1, len(h)):
                blocks += [
                    Block(f"l{k}.w{j + 1}", (h[j], h[j - 1]), (2.0 / h[j - 1]) ** 0.5),
                    Block(f"l{k}.b{j + 1}", (h[j],), 0.1),
                ]
            blocks += [
                Block(f"l{k}.out", (h[-1],), (1.0 / h[-1]) ** 0.5),
                Block(f"l{k}.bias", (d[k + 1],), 0.1),
                Block(f"l{k}.bias0", (1,), 0.1),
            ]
        return blocks

    def _bytes_per_individual(self, layout: Layout) -> int:
        h = max(self.settings["hidden"])
        pair = min(PAIR_BLOCK, max(layout.sizes) * max(layout.sizes) * h)
        return 4 * (layout.n_params + 2 * pair)

    def _codes(self, layout: Layout, like: torch.Tensor) -> list[torch.Tensor]:
        key = ("codes", layout, like.device, like.dtype)
        return self.cached(
            key,
            lambda: [c.to(like.device, like.dtype) for c in layout.codes(self.settings["code"])],
        )

    def _raw(
        self, genes: dict[str, torch.Tensor], layout: Layout
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n_hidden = len(self.settings["hidden"])
        weights = []
        for k, (a, b) in enumerate(self._projections(genes, layout)):
            layers = [
                (genes[f"l{k}.w{j + 1}"].transpose(1, 2), genes[f"l{k}.b{j + 1}"][:, None])
                for j in range(1, n_hidden)
            ]
            out = genes[f"l{k}.out"][:, :, None]  # [p, h, 1]
            weights.append(pairs_mlp(a, b, layers, out))
        return weights, self._biases(genes, layout)

    def _native_codes(self, layout: Layout, like: torch.Tensor) -> list[torch.Tensor]:
        return self.cached(
            ("native codes", layout, like.device, like.dtype),
            lambda: [native.codes_layout(c) for c in self._codes(layout, like)],
        )

    def _gene_offsets(self, spec: GenomeBlocks, layout: Layout) -> list[tuple[int, int, int, int]]:
        """Per layer, where `native.gnet_layer` reads its genes: pre, post, b1, and the MLP's
        parameters, which `_blocks` lays out consecutively (w2, b2, ..., out)."""

        def make() -> list[tuple[int, int, int, int]]:
            first = "w2" if len(self.settings["hidden"]) > 1 else "out"
            names = ("pre", "post", "b1", first)
            return [
                tuple(spec.offsets[f"l{k}.{name}"][0] for name in names)
                for k in range(layout.n_layers)
            ]

        return self.cached(("gene offsets", layout), make)

    def _decode_chunks(
        self,
        population: torch.Tensor,
        spec: GenomeBlocks,
        layout: Layout,
        weights: list[torch.Tensor],
        biases: list[torch.Tensor],
        chunk_size: int,
    ) -> None:
        h = tuple(self.settings["hidden"])
        if not native.applies(population, widths=h):
            super()._decode_chunks(population, spec, layout, weights, biases, chunk_size)
            return
        # Each layer in one native call for as many whole chunks as fit in the decode's
        # memory (its scratch grows with the rows); it works row by row, so a row's
        # weights do not depend on the rows beside it. The layer gains' multipliers and
        # the biases are computed in torch, chunk by chunk, from views of each chunk as
        # `_decode_into` takes them: torch may pick a code path by size, so they keep
        # the bits of a decode of that chunk alone.
        offsets = self._gene_offsets(spec, layout)
        codes = self._native_codes(layout, population)
        d, at = self._dims(layout), spec.offsets
        p = population.shape[0]
        span = max(1, self.chunk_size(layout) // chunk_size) * chunk_size

        def genes(chunk: torch.Tensor, name: str, *shape: int) -> torch.Tensor:
            start, stop = at[name]
            return chunk[:, start:stop].reshape(chunk.shape[0], *shape)

        for first in range(0, p, span):
            rows = population[first : first + span]
            chunks = [
                (a, min(a + chunk_size, rows.shape[0])) for a in range(0, rows.shape[0], chunk_size)
            ]
            genomes = rows.contiguous()
            for k, w in enumerate(weights):
                out = w[first : first + rows.shape[0]]
                fan_in = out.shape[2]
                mult = None
                if self.standardize:
                    parts = [
                        self.multiplier(fan_in, genes(rows[a:b], f"l{k}.gain", 1))
                        for a, b in chunks
                    ]
                    mult = parts[0] if len(parts) == 1 else torch.cat(parts)
                native.gnet_layer(genomes, offsets[k], codes[k], codes[k + 1], h, out, mult)
                if mult is None:
                    out.mul_(math.sqrt(2.0 / fan_in))
            for a, b in chunks:
                chunk = rows[a:b]
                layers = range(layout.n_layers)
                genes_b = {f"l{k}.bias": genes(chunk, f"l{k}.bias", d[k + 1]) for k in layers}
                genes_b.update({f"l{k}.bias0": genes(chunk, f"l{k}.bias0", 1) for k in layers})
                for k, v in enumerate(self._biases(genes_b, layout)):
                    biases[k][first + a : first + b] = v

    def _projections(
        self, genes: dict[str, torch.Tensor], layout: Layout
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer: presynaptic projections a [p, n_pre, h] and postsynaptic b [p, n_post, h]."""
        codes = self._codes(layout, next(iter(genes.values())))
        return [
            (
                project(codes[k], genes[f"l{k}.pre"]),
                project(codes[k + 1], genes[f"l{k}.post"]) + genes[f"l{k}.b1"][:, None],
            )
            for k in range(layout.n_layers)
        ]

    def _biases(self, genes: dict[str, torch.Tensor], layout: Layout) -> list[torch.Tensor]:
        codes = self._codes(layout, next(iter(genes.values())))
        return [
            project(codes[k + 1], genes[f"l{k}.bias"][:, None])[..., 0] + genes[f"l{k}.bias0"]
            for k in range(layout.n_layers)
        ]

    def decode_flops(self, layout: Layout | None = None) -> int:
        layout = layout or self.layout
        h = self.settings["hidden"]
        d = self._dims(layout)
        total = 0
        for k, (n_out, n_in) in enumerate(layout.layer_shapes()):
            pairs = n_out * n_in
            total += 2 * h[0] * (n_in * d[k] + n_out * d[k + 1])  # projections
            total += pairs * 2 * h[0]  # broadcast add + activation
            for j in range(1, len(h)):
                total += pairs * (2 * h[j - 1] * h[j] + 2 * h[j])  # matmul, bias, activation
            total += pairs * 2 * h[-1]  # output
            total += n_out * 2 * d[k + 1]  # biases
        return total
