"""Search: the searchers by config name, and the engines that step them reproducibly.

`ALGORITHMS` maps a config name to its entry (`Algorithm`, evo/search/base.py),
one file per family: the distribution-based SNES, XNES, PGPE, CEM and CMA-ES on
the weighted sum of the objectives (distribution.py), the genetic algorithm
with NSGA-II ranking, which keeps a Pareto front (nsga2.py), and `gradient`,
the backprop reference at equal genome size (gradient.py). The Pareto maths
and the run's Pareto archive live beside them (pareto.py, archive.py).
"""

from __future__ import annotations

from evo.search.base import Algorithm, Engine
from evo.search.distribution import CEM, CMAES, PGPE, SNES, XNES
from evo.search.gradient import GRADIENT
from evo.search.nsga2 import GA

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (SNES, XNES, PGPE, CEM, CMAES, GA, GRADIENT)}


def algorithm(name: str) -> Algorithm:
    """The registry entry of `name`; ValueError naming the valid ones otherwise."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


__all__ = ["ALGORITHMS", "Algorithm", "Engine", "algorithm"]
