"""The decoder contract: a flat genome in, the weights of a network out.

`Decoder.decode(population [P, D]) -> Phenotype` is the public method; a
subclass writes the private hooks `_blocks` (the named genome blocks for a
layout) and `_raw` (raw weights and biases for a chunk of the population).
The base class owns what every decoder shares:

- chunking over the population so that decoding stays within a memory budget;
- scaling, so that the born network is well behaved whatever the genome: each
  unit's incoming raw weights are standardised (zero mean, unit variance over
  its inputs), then multiplied by the He gain sqrt(2 / fan_in) and by a gain exp(g_l)
  softly bounded to [e^-3, e^3], where g_l is one gene per layer. Without this a compressed decoder whose raw
  output drifts in scale grows networks that are dead or saturated;
- the genome length and the compression ratio (p-network parameters divided
  by genome length) for any layout;
- caching of layout constants (codes, positions) per layout, device and dtype.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from genome import native
from genome.blocks import Block, GenomeBlocks
from genome.layout import CODES, Layout
from genome.phenotype import Phenotype

# Bytes of working memory a decode may use at once; chunks of the population
# (and, inside a decoder, of the neuron pairs) are sized to fit.
DECODE_MEMORY = 256 * 2**20
# The widest decoder `for_compression` considers.
MAX_WIDTH = 4096
_REL_EPS = native.REL_EPS
# Bound on |log gain|, so that no genome grows a network of exploding scale.
_LOG_GAIN_BOUND = 3.0


class Decoder(ABC):
    """Maps genomes to phenotypes for a layout. Subclasses set `name`."""

    name: ClassVar[str]
    # Settings accepted by the constructor, with their defaults (JSON values).
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, layout: Layout, **settings: Any):
        unknown = sorted(set(settings) - set(self.defaults) - {"standardize"})
        if unknown:
            valid = ", ".join(sorted({*self.defaults, "standardize"}))
            raise ValueError(f"{self.name}: unknown setting(s) {unknown}; valid settings: {valid}")
        merged = {**self.defaults, "standardize": self.default_standardize, **settings}
        if not isinstance(merged["standardize"], bool):
            raise ValueError(f"{self.name}: standardize must be true or false")
        self.layout = layout
        self.settings: dict[str, Any] = self._validate(merged)
        self.standardize: bool = self.settings["standardize"]
        self._cache: dict[tuple, Any] = {}

    default_standardize: ClassVar[bool] = True

    # --- hooks --------------------------------------------------------------
    def _validate(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Check and normalise settings (lists for tuples); raise ValueError naming the fault."""
        return settings

    def check_layout(self, layout: Layout) -> None:
        """Raise ValueError if this decoder cannot decode `layout` (e.g. code sizes differ)."""
        spec = self.blocks(layout)
        own = self.blocks(self.layout)
        if [(b.name, b.shape) for b in spec.blocks] != [(b.name, b.shape) for b in own.blocks]:
            raise ValueError(
                f"{self.name} decoder built for layout {self.layout.describe()} cannot decode "
                f"layout {layout.describe()}: its genome blocks differ"
            )

    @abstractmethod
    def _blocks(self, layout: Layout) -> list[Block]:
        """The decoder's own genome blocks for `layout` (gains are added by the base)."""

    @abstractmethod
    def _raw(
        self, genes: dict[str, torch.Tensor], layout: Layout
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Raw weights [p, out, in] and biases [p, out] of every layer for a chunk of p."""

    @abstractmethod
    def decode_flops(self, layout: Layout | None = None) -> int:
        """Floating-point operations to decode one individual (before scaling)."""

    def _bytes_per_individual(self, layout: Layout) -> int:
        """Peak working memory of decoding one individual; override when larger."""
        return 3 * 4 * layout.n_params

    @classmethod
    def _with_width(cls, width: int) -> dict[str, Any]:
        """Settings that set the decoder's capacity to `width` (for `for_compression`)."""
        raise NotImplementedError

    # --- public -------------------------------------------------------------
    def blocks(self, layout: Layout | None = None) -> GenomeBlocks:
        layout = layout or self.layout
        key = ("blocks", layout)
        if key not in self._cache:
            blocks = self._blocks(layout)
            if self.standardize:
                blocks += [Block(f"l{k}.gain", (1,), 0.1) for k in range(layout.n_layers)]
            self._cache[key] = GenomeBlocks(blocks)
        return self._cache[key]

    def genome_length(self, layout: Layout | None = None) -> int:
        return self.blocks(layout).length

    def compression(self, layout: Layout | None = None) -> float:
        """p-network parameters per gene (1.0 for one gene per parameter)."""
        layout = layout or self.layout
        return layout.n_params / self.genome_length(layout)

    def init(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """n random genomes [n, D] from each block's initial distribution."""
        return self.blocks().init(n, generator, dtype, device)

    def decode(
        self,
        population: torch.Tensor,
        layout: Layout | None = None,
        chunk_size: int | None = None,
        out: Phenotype | None = None,
    ) -> Phenotype:
        """The phenotypes [P] of a population [P, D] (or one genome [D]) on its device.

        With `out` (a phenotype of the same layout, population size, dtype and
        device), the weights and biases are written into its tensors and it is
        returned: a caller that decodes batch after batch reuses one workspace
        instead of allocating (and page-faulting) fresh memory every time.
        """
        layout = layout or self.layout
        if layout is not self.layout:
            self.check_layout(layout)
        if population.ndim == 1:
            population = population[None]
        if not population.is_floating_point():
            raise ValueError(f"population must be a floating-point tensor, got {population.dtype}")
        spec = self.blocks(layout)
        if population.ndim != 2 or population.shape[1] != spec.length:
            raise ValueError(
                f"{self.name} genome for layout {layout.describe()} has {spec.length} genes; "
                f"got population of shape {list(population.shape)}"
            )
        p = population.shape[0]
        if chunk_size is None:
            chunk_size = self.chunk_size(layout)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        dev, dt = population.device, population.dtype
        if out is not None:
            self._check_out(out, layout, p, dt, dev)
            weights, biases = out.weights, out.biases
        else:
            weights = [torch.empty(p, o, i, device=dev, dtype=dt) for o, i in layout.layer_shapes()]
            biases = [torch.empty(p, o, device=dev, dtype=dt) for o, _ in layout.layer_shapes()]
        self._decode_chunks(population, spec, layout, weights, biases, chunk_size)
        return out if out is not None else Phenotype(weights, biases, layout)

    def _decode_chunks(
        self,
        population: torch.Tensor,
        spec: GenomeBlocks,
        layout: Layout,
        weights: list[torch.Tensor],
        biases: list[torch.Tensor],
        chunk_size: int,
    ) -> None:
        """Write the population's weights and biases, chunk by chunk (`_decode_into` of each
        chunk's blocks); a decoder whose per-row work does not depend on the chunk may do
        that part for several chunks at once."""
        p = population.shape[0]
        for start in range(0, p, chunk_size):
            stop = min(p, start + chunk_size)
            outs = [w[start:stop] for w in weights]
            for k, b in enumerate(
                self._decode_into(spec.split(population[start:stop]), layout, outs)
            ):
                biases[k][start:stop] = b

    def chunk_size(self, layout: Layout | None = None) -> int:
        """Genomes `decode` takes at once by default: as many as fit in `DECODE_MEMORY`."""
        return max(1, DECODE_MEMORY // max(1, self._bytes_per_individual(layout or self.layout)))

    @staticmethod
    def _check_out(out: Phenotype, layout: Layout, p: int, dtype, device) -> None:
        tensors = [*out.weights, *out.biases]
        if (
            out.layout != layout
            or out.population_size != p
            or any(t.dtype != dtype or t.device != device for t in tensors)
            or not all(t.is_contiguous() for t in tensors)
        ):
            raise ValueError(
                f"out must be a phenotype of layout {layout.describe()} for {p} genomes, "
                f"{dtype} on {device}, with contiguous tensors; got layout "
                f"{out.layout.describe()} for {out.population_size}, {out.dtype} on {out.device}"
            )
        if any(t.requires_grad for t in tensors):
            raise ValueError("out must not require grad: decoding writes into it in place")

    def _decode_into(
        self, genes: dict[str, torch.Tensor], layout: Layout, outs: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Write each layer's scaled weights into outs[k]; return the biases.

        The default runs `_raw` and then scales; a decoder with a fused path
        (raw weights scaled while still in cache) overrides it.
        """
        raw_w, raw_b = self._raw(genes, layout)
        for k, w in enumerate(raw_w):
            gain = genes.get(f"l{k}.gain")
            if self.standardize and native.applies(w, gain):
                native.standardize(w, self.multiplier(w.shape[2], gain), outs[k])
            elif not self.standardize and not (torch.is_grad_enabled() and w.requires_grad):
                torch.mul(w, math.sqrt(2.0 / w.shape[2]), out=outs[k])  # as `_scale`, in place
            else:
                outs[k].copy_(self._scale(w, gain))
        return raw_b

    @staticmethod
    def multiplier(fan_in: int, gain: torch.Tensor) -> torch.Tensor:
        """What units' standardised weights are multiplied by: He x layer gain, [p]."""
        return math.sqrt(2.0 / fan_in) * layer_gain(gain)[:, 0]

    def _scale(self, w: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
        he = math.sqrt(2.0 / w.shape[2])
        if not self.standardize:
            return w * he
        if w.shape[2] == 1:
            # One input: centring would zero it; keep its sign at the unit's scale.
            mean = torch.zeros_like(w)
            var = w.square()
        else:
            mean = w.mean(dim=2, keepdim=True)
            var = w.var(dim=2, keepdim=True, unbiased=False)
        # The floor is relative to the row's own magnitude, so a genome of any scale
        # standardises, while a row that is constant up to rounding becomes ~zeros.
        floor = _REL_EPS * mean.square() + torch.finfo(w.dtype).tiny
        return (w - mean) * torch.rsqrt(var + floor) * (he * layer_gain(gain)[:, :, None])

    @classmethod
    def for_compression(cls, layout: Layout, target: float, **settings: Any) -> Decoder:
        """The widest decoder of this kind whose compression on `layout` is >= target."""
        if not (isinstance(target, int | float) and math.isfinite(target) and target > 0):
            raise ValueError(f"target compression must be a finite number > 0, got {target!r}")

        def build(width: int) -> Decoder:
            return cls(layout, **{**settings, **cls._with_width(width)})

        try:
            narrowest = build(1)
        except NotImplementedError as e:
            raise ValueError(f"{cls.name} has a fixed compression; it cannot be sized") from e
        if narrowest.compression() < target:
            raise ValueError(
                f"{cls.name} cannot reach {target}x compression on layout {layout.describe()} "
                f"(narrowest gives {narrowest.compression():.1f}x)"
            )
        # Compression falls as width grows: bisect for the last width that meets the target.
        lo, hi = 1, 2
        while hi <= MAX_WIDTH and build(hi).compression() >= target:
            lo, hi = hi, hi * 2
        hi = min(hi, MAX_WIDTH + 1)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if build(mid).compression() >= target else (lo, mid)
        return build(lo)

    def cached(self, key: tuple, make: Any) -> Any:
        """A layout constant, computed once per key (include layout, device and dtype)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def describe(self) -> dict[str, Any]:
        return {
            "decoder": self.name,
            "settings": self.settings,
            "layout": self.layout.describe(),
            "genome_length": self.genome_length(),
            "p_network_params": self.layout.n_params,
            "compression": self.compression(),
        }


def layer_gain(gene: torch.Tensor) -> torch.Tensor:
    """The genome-controlled gain of a layer: exp(g), softly bounded to [e^-3, e^3]."""
    return torch.exp(_LOG_GAIN_BOUND * torch.tanh(gene / _LOG_GAIN_BOUND))


def check_code(name: str, code: Any) -> str:
    if code not in CODES:
        raise ValueError(f"{name}: unknown code {code!r}; valid codes: {', '.join(CODES)}")
    return code


def check_widths(name: str, field: str, value: Any, min_len: int = 1) -> list[int]:
    ok = isinstance(value, list | tuple) and len(value) >= min_len
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    if not ok:
        raise ValueError(
            f"{name}: {field} must be a list of at least {min_len} positive ints, got {value!r}"
        )
    return [int(v) for v in value]
