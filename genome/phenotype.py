"""The grown networks of a whole population, evaluated in one batched call.

A `Phenotype` holds the weights [P, out, in] and biases [P, out] of every
layer for P individuals of one layout. Hidden layers use ReLU, the output is
linear (logits). `module(i)` exports individual i as a plain `torch.nn.Module`
with the same outputs, for use outside innate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genome.layout import Layout


@dataclass
class Phenotype:
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    layout: Layout

    def __post_init__(self) -> None:
        shapes = self.layout.layer_shapes()
        if len(self.weights) != len(shapes) or len(self.biases) != len(shapes):
            raise ValueError(
                f"phenotype needs {len(shapes)} weight and bias tensors for layout "
                f"{self.layout.describe()}, got {len(self.weights)} and {len(self.biases)}"
            )
        p = self.weights[0].shape[0]
        for k, ((o, i), w, b) in enumerate(zip(shapes, self.weights, self.biases, strict=True)):
            if tuple(w.shape) != (p, o, i) or tuple(b.shape) != (p, o):
                raise ValueError(
                    f"layer {k}: expected weights [{p}, {o}, {i}] and biases [{p}, {o}], "
                    f"got {list(w.shape)} and {list(b.shape)}"
                )

    @property
    def population_size(self) -> int:
        return self.weights[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    def _flatten_input(self, x: torch.Tensor) -> torch.Tensor:
        n_in = self.layout.sizes[0]
        if x.ndim == 2 and x.shape[1] == n_in:
            return x
        # [P, B, in] before [B, *image]: a 1-row input sheet makes both shapes match.
        if x.ndim == 3 and x.shape[0] == self.population_size and x.shape[2] == n_in:
            return x
        if x.ndim == 3 and tuple(x.shape[1:]) == self.layout.input_shape:
            return x.reshape(x.shape[0], n_in)
        raise ValueError(
            f"input must be [B, {n_in}], [B, *{self.layout.input_shape}] (shared by the "
            f"population) or [{self.population_size}, B, {n_in}], got {list(x.shape)}"
        )

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output [P, B, n]: the hidden ReLU activations, then the logits."""
        h = self._flatten_input(x).to(self.dtype)
        out = []
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if h.ndim == 2:
                # One GEMM for the whole population, biases added in it:
                # [B, in] @ [in, P*out] + [P*out], then viewed as [P, B, out].
                p, o, i = w.shape
                y = torch.addmm(b.reshape(1, p * o), h, w.reshape(p * o, i).T)
                y = (y if k == last else y.relu_()).view(h.shape[0], p, o).transpose(0, 1)
            else:
                y = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
                y = y if k == last else y.relu_()
            h = y
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs [P, B, out] for inputs shared by the population or one batch each."""
        return self.activations(x)[-1]

    __call__ = forward

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Hidden activations [P, B, n] of every hidden layer (for inspection and few-shot)."""
        return self.activations(x)[:-1]

    def select(self, index: torch.Tensor | list[int] | slice) -> Phenotype:
        """The phenotypes of a subset of the population."""
        return Phenotype(
            [w[index] for w in self.weights], [b[index] for b in self.biases], self.layout
        )

    def module(self, i: int) -> nn.Sequential:
        """Individual i as a plain `nn.Sequential` (Flatten, Linear, ReLU, ..., Linear)."""
        if not -self.population_size <= i < self.population_size:
            raise IndexError(f"individual {i} out of range for population {self.population_size}")
        layers: list[nn.Module] = [nn.Flatten()]
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            lin = nn.Linear(w.shape[2], w.shape[1], dtype=w.dtype, device=w.device)
            with torch.no_grad():
                lin.weight.copy_(w[i])
                lin.bias.copy_(b[i])
            layers.append(lin)
            if k != last:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def forward_flops(self, batch: int) -> int:
        """Floating-point operations of `forward` on a batch, for the whole population."""
        per = sum(2 * o * i + 2 * o for o, i in self.layout.layer_shapes())
        return per * batch * self.population_size
