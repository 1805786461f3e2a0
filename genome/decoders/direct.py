"""Direct encoding: one gene per weight and per bias, no compression.

The baseline every compressed decoder is measured against: the genome is the
network. Genes are scaled by the He gain sqrt(2 / fan_in), so a genome drawn
from a standard normal is a He-initialised network (He et al., ICCV 2015).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from genome.decoders.base import Block, Decoder
from genome.layout import Layout


class Direct(Decoder):
    name = "direct"
    defaults: ClassVar[dict[str, Any]] = {}
    default_standardize = False

    def _blocks(self, layout: Layout) -> list[Block]:
        blocks = []
        for k, (o, i) in enumerate(layout.layer_shapes()):
            blocks += [Block(f"l{k}.w", (o, i), 1.0), Block(f"l{k}.b", (o,), 0.0)]
        return blocks

    def check_layout(self, layout: Layout) -> None:
        if layout.sizes != self.layout.sizes:
            raise ValueError(
                f"direct genome for layout {self.layout.describe()} cannot decode layout "
                f"{layout.describe()}: one gene per weight fixes the layout"
            )

    def _raw(
        self, genes: dict[str, torch.Tensor], layout: Layout
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = layout.n_layers
        return [genes[f"l{k}.w"] for k in range(n)], [genes[f"l{k}.b"] for k in range(n)]

    def decode_flops(self, layout: Layout | None = None) -> int:
        return 0
