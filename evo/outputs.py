"""What a run writes besides its metrics: genome files and the Pareto front.

Every genome file carries its fitness (finite values only) and lineage (run,
generation, seed, objectives), so a genome found in a run directory says where
it came from. In Pareto mode the non-dominated set (NSGA-II's first front,
Deb et al., IEEE TEC 2002) replaces the previous `pareto/` folder whole.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from evo.problem import GenomeProblem

if TYPE_CHECKING:
    from evo.archive import ParetoArchive


def selection_score(problem: GenomeProblem, evals: torch.Tensor) -> torch.Tensor:
    """One score per individual, lower is better: the fitness, or in Pareto mode its weighted sum."""
    n = problem.n_objectives
    if n == 1:
        return evals[:, 0].double()
    w = torch.tensor(problem.weights, dtype=torch.float64)
    return (evals[:, :n].double() * w).sum(dim=1)


def write_genome(
    path: Path, genome: torch.Tensor, problem: GenomeProblem, fitness: dict, lineage: dict
) -> Path:
    from genome.files import save_genome

    path.parent.mkdir(parents=True, exist_ok=True)
    # A genome file keeps finite numbers only (an AUC is NaN when a batch has one class).
    fitness = {k: v for k, v in fitness.items() if math.isfinite(v)}
    save_genome(path, genome.detach().cpu(), problem.decoder, fitness=fitness, lineage=lineage)
    return path


def fitness_dict(problem: GenomeProblem, evals: torch.Tensor) -> dict[str, float]:
    n = problem.n_objectives
    out = {"fitness": float(selection_score(problem, evals[None])[0])}
    out.update({c: float(evals[n + j]) for j, c in enumerate(problem.columns[:-1])})
    return out


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


def write_pareto(
    run_dir: Path,
    problem: GenomeProblem,
    engine: Any,
    lineage: dict,
    generation: int,
    archive: ParetoArchive | None = None,
) -> None:
    """The run's front as pareto/*.genome: the archive's members where the run keeps
    one (scored on its data; lineage: the generation each entered), else the final
    population's first front."""
    if archive is not None:
        values, evals, born = archive.members()
        lineage = {**lineage, "archive_batch_size": archive.batch_size}
    else:
        values, evals = engine.population()
        born = torch.full((values.shape[0],), generation - 1, dtype=torch.long)
    n = problem.n_objectives
    front = pareto_front(evals[:, :n])
    # The new front goes to a fresh folder that replaces the old one whole, so no
    # genome of an earlier, larger front is left beside it.
    final, tmp = run_dir / "pareto", run_dir / "pareto.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    # Duplicates (identical objective vectors) are kept once.
    front = front[evals[front, -1] == 0]
    front = front[first_of_each(evals[front, :n])]
    for k, i in enumerate(front.tolist()):
        write_genome(
            tmp / f"{k:03d}.genome",
            values[i],
            problem,
            fitness_dict(problem, evals[i]),
            {**lineage, "generation": int(born[i])},
        )
    old = run_dir / "pareto.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
