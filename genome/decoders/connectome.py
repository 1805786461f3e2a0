"""Connectome model: W = X_post O X_pre^T with gene expression generated from codes.

Barabási and Barabási, "A genetic model of the connectome", Neuron 2020, and
the genetic connectome model (GEM) of Nat Commun 2023: each neuron expresses
`genes` genes, X [n, genes], and an operator O [genes, genes] per connection
type says which expressed genes pair up to make a synapse. Here each sheet's
expression is generated from its neurons' identity codes by one map per sheet,
X = sigmoid(codes E^T + e0), shared by the sheet's roles as pre and post (a
neuron has one expression profile). Decoding is three matrix products per
layer; biases are linear in the postsynaptic expression.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from genome.decoders.base import Block, Decoder, check_code
from genome.decoders.pairs import project
from genome.layout import Layout


class Connectome(Decoder):
    name = "connectome"
    defaults: ClassVar[dict[str, Any]] = {"genes": 8, "code": "binary"}

    def _validate(self, s: dict[str, Any]) -> dict[str, Any]:
        g = s["genes"]
        if not (isinstance(g, int) and not isinstance(g, bool) and g >= 1):
            raise ValueError(f"{self.name}: genes must be an int >= 1, got {g!r}")
        s["code"] = check_code(self.name, s["code"])
        return s

    @classmethod
    def _with_width(cls, width: int) -> dict[str, Any]:
        return {"genes": width}

    def _blocks(self, layout: Layout) -> list[Block]:
        g = self.settings["genes"]
        blocks = []
        for s, sheet in enumerate(layout.sheets):
            d = sheet.code_dim(self.settings["code"])
            blocks += [
                Block(f"s{s}.expr", (g, d), (1.0 / max(d, 1)) ** 0.5),
                Block(f"s{s}.expr0", (g,), 0.5),
            ]
        for k in range(layout.n_layers):
            blocks += [
                Block(f"l{k}.op", (g, g), (1.0 / g) ** 0.5),
                Block(f"l{k}.bias", (g,), 0.1),
                Block(f"l{k}.bias0", (1,), 0.1),
            ]
        return blocks

    def _raw(
        self, genes: dict[str, torch.Tensor], layout: Layout
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        some = next(iter(genes.values()))
        key = ("codes", layout, some.device, some.dtype)
        codes = self.cached(
            key,
            lambda: [c.to(some.device, some.dtype) for c in layout.codes(self.settings["code"])],
        )
        x = [
            torch.sigmoid(project(c, genes[f"s{s}.expr"]) + genes[f"s{s}.expr0"][:, None])
            for s, c in enumerate(codes)
        ]
        weights, biases = [], []
        for k in range(layout.n_layers):
            post_op = torch.bmm(x[k + 1], genes[f"l{k}.op"])  # [p, n_post, g]
            weights.append(torch.bmm(post_op, x[k].transpose(1, 2)))
            biases.append((x[k + 1] * genes[f"l{k}.bias"][:, None]).sum(-1) + genes[f"l{k}.bias0"])
        return weights, biases

    def decode_flops(self, layout: Layout | None = None) -> int:
        layout = layout or self.layout
        g = self.settings["genes"]
        code = self.settings["code"]
        total = sum(2 * s.size * g * (s.code_dim(code) + 1) for s in layout.sheets)
        for n_out, n_in in layout.layer_shapes():
            total += 2 * n_out * g * g + 2 * n_out * n_in * g + 2 * n_out * g
        return total
