"""Pareto maths, batched: the non-dominated rows and NSGA-II's crowding distance.

All objectives are minimised. The crowding distance is that of NSGA-II (Deb,
Pratap, Agarwal and Meyarivan, IEEE TEC 2002): the ends of each objective are
infinitely far, an inner member's distance is the sum over objectives of the
gap between its neighbours, divided by the objective's span. The GA's survival
(evo/search/nsga2.py), the archive and a run's `pareto/` folder share them.
"""

from __future__ import annotations

import torch


def pareto_front(fitness: torch.Tensor) -> torch.Tensor:
    """Indices of the non-dominated rows of fitness [N, K] (all minimised), batched."""
    a, b = fitness[:, None, :], fitness[None, :, :]
    dominated = ((b <= a).all(dim=2) & (b < a).any(dim=2)).any(dim=1)
    return torch.nonzero(~dominated).flatten()


def crowding_distance(fitness: torch.Tensor) -> torch.Tensor:
    """NSGA-II's crowding distance [M] of the rows of fitness [M, K]; ends are infinite."""
    m, k = fitness.shape
    d = torch.zeros(m, dtype=torch.float64)
    if m <= 2:
        return torch.full((m,), float("inf"), dtype=torch.float64)
    f = fitness.double()
    for j in range(k):
        order = torch.argsort(f[:, j], stable=True)
        col = f[order, j]
        span = float(col[-1] - col[0])
        d[order[0]] = d[order[-1]] = float("inf")
        if span > 0:
            d[order[1:-1]] += (col[2:] - col[:-2]) / span
    return d


def first_of_each(rows: torch.Tensor) -> torch.Tensor:
    """Indices of the first occurrence of each distinct row of rows [N, K], in order."""
    firsts, seen = [], set()
    for i, r in enumerate(rows.tolist()):
        if tuple(r) not in seen:
            seen.add(tuple(r))
            firsts.append(i)
    return torch.tensor(firsts, dtype=torch.long)
