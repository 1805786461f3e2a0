"""The distribution-based searchers, on the weighted sum of the objectives.

SNES (Schaul, Glasmachers and Schmidhuber, GECCO 2011), XNES (Glasmachers et
al., GECCO 2010), PGPE (Sehnke et al., Neural Networks 2010, with ClipUp by
Toklu et al., PPSN 2020), CEM (Rubinstein, 1999) and CMA-ES (Hansen, 2016), as
EvoTorch implements them. `stdev_init` is in units of the decoder's per-gene
initial std (`decoder.blocks().std()`): per gene for SNES, XNES, PGPE and CEM,
its mean for CMA-ES, which takes a scalar; a gene whose initial std is 0 searches
at the mean std of the others (`search_stdev`). SNES, CEM and PGPE sample and
update through evo/search/sampling.py: EvoTorch's arithmetic, faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evotorch import algorithms as ea

from evo.search.base import Algorithm, search_stdev
from evo.search.sampling import use_faster_distribution

if TYPE_CHECKING:
    from evo.problem import GenomeProblem


@dataclass(frozen=True)
class Distribution(Algorithm):
    """A searcher of a Gaussian search distribution whose mean is the run's centre."""

    # Takes one std for every gene (the mean of the per-gene stds).
    scalar_stdev: bool = False
    # Keeps a full covariance (unless its `separable` setting is true): D^2 memory.
    full_covariance: bool = False

    def check_genome(self, length: int, settings: dict[str, Any]) -> None:
        if not self.full_covariance or settings.get("separable", False):
            return
        if length > MAX_FULL_COVARIANCE_GENES:
            also = ", or cmaes with separable = true" if self.name == "cmaes" else ""
            raise ValueError(
                f"algorithm.name: {self.name} keeps a full covariance of genes x genes (memory "
                f"grows with D^2, time with D^3), bounded at {MAX_FULL_COVARIANCE_GENES} genes; "
                f"this genome has {length}. Use snes, pgpe or cem (one std per gene){also}, "
                "or a decoder with fewer genes (decoder.compression)"
            )

    def check(self, settings: dict[str, Any]) -> None:
        n = settings["population_size"]
        if n < 2:
            raise ValueError(
                f"algorithm.population_size: {self.name} ranks its samples against each "
                f"other: must be >= 2, got {n}"
            )
        for key in ("stdev_init", "center_learning_rate", "stdev_learning_rate"):
            v = settings.get(key)
            if v is not None and not (isinstance(v, int | float) and v > 0):
                raise ValueError(f"algorithm.{key}: must be a number > 0, got {v!r}")
        ratio = settings.get("parenthood_ratio")
        ok = isinstance(ratio, int | float) and 0 < ratio <= 1 and n * ratio >= 2
        if ratio is not None and not ok:
            raise ValueError(
                f"algorithm.parenthood_ratio: must be in (0, 1] and keep at least 2 parents "
                f"of population_size {n}, got {ratio!r}"
            )

    def build_searcher(self, problem: GenomeProblem, settings: dict[str, Any]) -> Any:
        settings = dict(settings)
        population_size = int(settings.pop("population_size"))
        std = search_stdev(problem)
        scale = float(settings.pop("stdev_init"))
        stdev = scale * float(std.mean()) if self.scalar_stdev else scale * std
        searcher = self.cls(problem, popsize=population_size, stdev_init=stdev, **settings)
        use_faster_distribution(searcher)
        return searcher


@dataclass(frozen=True)
class Symmetric(Distribution):
    """PGPE, whose symmetric sampling draws its population in pairs."""

    def check(self, settings: dict[str, Any]) -> None:
        super().check(settings)
        if settings.get("symmetric", True) and settings["population_size"] % 2:
            raise ValueError("algorithm.population_size: must be even for symmetric PGPE")


# A full D x D covariance (XNES, CMA-ES) costs D^2 memory per matrix and D^3 time
# per decomposition: 2,000 genes is 16 MB a matrix and seconds a generation;
# 20,000 genes asked CMA-ES for 103 GB.
MAX_FULL_COVARIANCE_GENES = 2000

_GAUSSIAN = {"population_size": 32, "stdev_init": 0.5}
# EvoTorch's Gaussian searchers keep these besides their distribution and optimiser.
_STEPS = ("_steps_count", "_first_iter", "_mean_eval")
# CMA-ES keeps its distribution in attributes of its own: mean, step size,
# covariance and its factor, evolution paths.
_CMA_STATE = ("_steps_count", "m", "sigma", "C", "A", "p_sigma", "p_c")

SNES = Distribution("snes", ea.SNES, dict(_GAUSSIAN), state_attrs=_STEPS)
XNES = Distribution("xnes", ea.XNES, dict(_GAUSSIAN), state_attrs=_STEPS, full_covariance=True)
PGPE = Symmetric(
    "pgpe",
    ea.PGPE,
    {**_GAUSSIAN, "center_learning_rate": 0.05, "stdev_learning_rate": 0.1},
    state_attrs=_STEPS,
)
CEM = Distribution("cem", ea.CEM, {**_GAUSSIAN, "parenthood_ratio": 0.5}, state_attrs=_STEPS)
CMAES = Distribution(
    "cmaes",
    ea.CMAES,
    dict(_GAUSSIAN),
    state_attrs=_CMA_STATE,
    scalar_stdev=True,
    full_covariance=True,
)
