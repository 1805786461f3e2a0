"""CPPN: weights from neuron coordinates through a network of mixed activations.

Compositional pattern-producing network as in HyperNEAT (Stanley, D'Ambrosio
and Gauci, Artificial Life 2009). One small network, shared by every layer,
maps the positions of the presynaptic and postsynaptic neurons and their
distance, (x1, y1, z1, x2, y2, z2, d), to a weight. Hidden units use a mix of
periodic, symmetric and saturating functions (sin, gaussian, tanh, abs) so that
the weight pattern can repeat, mirror and vary smoothly over space. The network
reads only coordinates, so one genome decodes at any resolution.

A second output channel gives each neuron's bias, queried as in HyperNEAT at
the pair (centre of the sheet below, neuron).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from genome.decoders.base import Block, Decoder, check_widths
from genome.decoders.pairs import PAIR_BLOCK, pairs_mlp, project
from genome.layout import Layout

ACTIVATIONS = {
    "sin": torch.sin,
    "gauss": lambda x: torch.exp(-x * x),
    "tanh": torch.tanh,
    "abs": torch.abs,
    "relu": torch.relu,
    "identity": lambda x: x,
}


class CPPN(Decoder):
    name = "cppn"
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": [16, 16],
        "activations": ["sin", "gauss", "tanh", "abs"],
    }

    def _validate(self, s: dict[str, Any]) -> dict[str, Any]:
        s["hidden"] = check_widths(self.name, "hidden", s["hidden"])
        acts = s["activations"]
        if not (
            isinstance(acts, list | tuple)
            and acts
            and all(isinstance(a, str) and a in ACTIVATIONS for a in acts)
        ):
            raise ValueError(
                f"{self.name}: activations must be a non-empty list of {sorted(ACTIVATIONS)}, "
                f"got {acts!r}"
            )
        s["activations"] = list(acts)
        return s

    @classmethod
    def _with_width(cls, width: int) -> dict[str, Any]:
        return {"hidden": [width, width]}

    def check_layout(self, layout: Layout) -> None:
        if layout.n_layers != self.layout.n_layers:
            raise ValueError(
                f"cppn genome for {self.layout.n_layers} weight layers cannot decode layout "
                f"{layout.describe()} with {layout.n_layers}"
            )

    def _blocks(self, layout: Layout) -> list[Block]:
        h = self.settings["hidden"]
        blocks = [
            Block("pre", (h[0], 3), 1.0),
            Block("post", (h[0], 3), 1.0),
            Block("dist", (h[0],), 1.0),
            Block("b1", (h[0],), 0.5),
        ]
        for j in range(1, len(h)):
            blocks += [
                Block(f"w{j + 1}", (h[j], h[j - 1]), (1.0 / h[j - 1]) ** 0.5),
                Block(f"b{j + 1}", (h[j],), 0.5),
            ]
        return [*blocks, Block("out", (h[-1], 2), (1.0 / h[-1]) ** 0.5)]

    def _bytes_per_individual(self, layout: Layout) -> int:
        h = max(self.settings["hidden"])
        pair = min(PAIR_BLOCK, max(layout.sizes) * max(layout.sizes) * h)
        return 4 * (layout.n_params + 3 * pair)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden units split into equal contiguous groups, one per activation, in order."""
        names = self.settings["activations"]
        h = x.shape[-1]
        bounds = [round(h * k / len(names)) for k in range(len(names) + 1)]
        parts = [
            ACTIVATIONS[n](x[..., s:e])
            for n, s, e in zip(names, bounds[:-1], bounds[1:], strict=True)
            if e > s
        ]
        return torch.cat(parts, dim=-1)

    def _geometry(self, layout: Layout, like: torch.Tensor) -> tuple[list, list, list]:
        def make():
            pos = [p.to(like.device, like.dtype) for p in layout.positions(torch.float64)]
            dist = [torch.cdist(pos[k + 1], pos[k]) for k in range(layout.n_layers)]
            centre = [
                torch.tensor([[0.0, 0.0, s.z]], dtype=like.dtype, device=like.device)
                for s in layout.sheets
            ]
            return pos, dist, centre

        return self.cached(("geometry", layout, like.device, like.dtype), make)

    def _mlp(self, genes, pre_pos, post_pos, dist, channel: int) -> torch.Tensor:
        h = self.settings["hidden"]
        a = project(pre_pos, genes["pre"])
        b = project(post_pos, genes["post"]) + genes["b1"][:, None]
        layers = [
            (genes[f"w{j + 1}"].transpose(1, 2), genes[f"b{j + 1}"][:, None])
            for j in range(1, len(h))
        ]
        out = genes["out"][:, :, channel : channel + 1]
        return pairs_mlp(a, b, layers, out, act=self._act, pair_term=(dist, genes["dist"]))

    def _raw(
        self, genes: dict[str, torch.Tensor], layout: Layout
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pos, dist, centre = self._geometry(layout, genes["out"])
        weights, biases = [], []
        for k in range(layout.n_layers):
            weights.append(self._mlp(genes, pos[k], pos[k + 1], dist[k], 0))
            d = torch.cdist(pos[k + 1], centre[k])
            biases.append(self._mlp(genes, centre[k], pos[k + 1], d, 1)[:, :, 0])
        return weights, biases

    def decode_flops(self, layout: Layout | None = None) -> int:
        layout = layout or self.layout
        h = self.settings["hidden"]
        total = 0
        for n_out, n_in in layout.layer_shapes():
            pairs = n_out * n_in + n_out  # weights, then biases
            total += 2 * 3 * h[0] * (n_in + 2 * n_out)
            total += pairs * 4 * h[0]  # add, distance term, activation
            for j in range(1, len(h)):
                total += pairs * (2 * h[j - 1] * h[j] + 2 * h[j])
            total += pairs * 2 * h[-1]
        return total
