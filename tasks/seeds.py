"""Seeds as pure functions of integers, and generators from named streams.

Every random draw in innate comes from an explicit `torch.Generator` seeded by
`derive_seed(seed, stream, ...)`: the parts (a run's seed, a stream number, a
generation, an episode index) go through numpy's `SeedSequence`, so streams
never overlap and a draw is the same in every process and on every machine.
"""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of integers (seed, generation, stream...)."""
    state = np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def seeded(*parts: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator on `device` seeded by `derive_seed(*parts)`."""
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))
