"""A per-pair MLP over all (pre, post) neuron pairs with a separable first layer.

Shared by the decoders that compute a weight per pair with a small network
(``gnet``, ``cppn``). The first layer is linear in the concatenated pair
features, so it splits into a projection of each presynaptic neuron (a) and of
each postsynaptic neuron (b): h1[post, pre] = act(a[pre] + b[post] (+ a pair
term)). Pairs are processed in blocks of postsynaptic neurons so that the
[p, block, n_pre, h] intermediate stays within `PAIR_BLOCK` elements.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Elements of the pairwise hidden activations processed at once (per block).
PAIR_BLOCK = 2**16

Activation = Callable[[torch.Tensor], torch.Tensor]


def project(codes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """codes [n, d] through per-individual weights [p, h, d] -> [p, n, h].

    A broadcast product summed over the small d axis: each output is one
    sequential sum, so the bits do not depend on the thread count (an einsum's
    GEMM kernel may split its work, and its rounding, by threads), and a genome
    scores the same in a Ray actor as in the main process.
    """
    return (codes[None, :, None, :] * weights[:, None, :, :]).sum(-1)


def pairs_mlp(
    a: torch.Tensor,
    b: torch.Tensor,
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    out: torch.Tensor,
    act: Activation = torch.relu,
    pair_term: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Weights [p, n_post, n_pre] of a batched per-pair MLP.

    a: [p, n_pre, h] presynaptic projections; b: [p, n_post, h] postsynaptic
    projections plus the first bias; layers: (weight^T [p, h_in, h_out], bias
    [p, 1, h_out]) of the further hidden layers; out: [p, h_last, 1]; pair_term:
    (values [n_post, n_pre], weights [p, h]) added to the first layer.
    """
    p, n_pre, h = a.shape
    n_post = b.shape[1]
    relu = act is torch.relu
    track = torch.is_grad_enabled() and any(
        t.requires_grad for t in (a, b, out, *[x for layer in layers for x in layer])
    )
    # Under autograd every block is kept for the backward pass anyway, so blocks
    # are larger (fewer, bigger products); without it they stay cache-sized.
    budget = PAIR_BLOCK * 16 if track else PAIR_BLOCK
    post_block = max(1, min(n_post, budget // (p * n_pre * h)))
    # Under autograd the blocks are concatenated once: writing each into a shared
    # matrix would make the backward pass copy the whole gradient once per block.
    w = None if track else torch.empty(p, n_post, n_pre, dtype=a.dtype, device=a.device)
    blocks = []
    for s in range(0, n_post, post_block):
        e = min(n_post, s + post_block)
        x = torch.add(b[:, s:e, None, :], a[:, None])
        if pair_term is not None:
            values, coef = pair_term
            x += values[None, s:e, :, None] * coef[:, None, None, :]
        x = (x.relu_() if relu else act(x)).view(p, -1, h)
        for wt, bias in layers:
            x = torch.bmm(x, wt).add_(bias)
            x = x.relu_() if relu else act(x)
        if w is None:
            blocks.append(torch.bmm(x, out).view(p, e - s, n_pre))
        else:
            torch.bmm(x, out, out=w[:, s:e].view(p, -1, 1))
    return torch.cat(blocks, dim=1) if w is None else w
