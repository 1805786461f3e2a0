"""A run directory: its files, its name, and the genome files a run writes into it.

    config.toml     the resolved config (all `--resume` needs)
    init/*.genome   copies of the genomes the run started from, if any (`init`)
    metrics.csv     one row per generation (evo/driver.py, `metric_columns`)
    checkpoint.pt   searcher state, next generation, best so far (evo/checkpoint.py)
    best.genome     the best genome so far, with fitness and lineage
    center.genome   the search distribution's mean at the end (searchers with a centre)
    pareto/*.genome the final non-dominated set (Pareto mode)
    fitness.png     the fitness plot (evo/report.py)

Following cleanrl, a run is named ``{objective}__{decoder}__s{seed}__{time}``,
after the objective that reads data. Every genome file carries its fitness
(finite values only) and lineage (run, generation, seed, objectives), so a
genome found in a run directory says where it came from. In Pareto mode the
non-dominated set (NSGA-II's first front, Deb et al., IEEE TEC 2002) replaces
the previous `pareto/` folder whole.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from evo.config import data_objective_name, dumps
from evo.search.pareto import first_of_each, pareto_front
from genome.files import write_atomic

if TYPE_CHECKING:
    from evo.problem import GenomeProblem
    from evo.search import Engine
    from evo.search.archive import ParetoArchive

CONFIG = "config.toml"
METRICS = "metrics.csv"
BEST = "best.genome"
CENTER = "center.genome"
PARETO = "pareto"


def run_name(cfg: dict[str, Any], time: str) -> str:
    return f"{data_objective_name(cfg)}__{cfg['decoder']['name']}__s{cfg['seed']}__{time}"


def make_run_dir(cfg: dict[str, Any], out: Path, stamp: str) -> Path:
    """A fresh directory under `out` holding the config and its own copies of `init`."""
    run_dir = out / run_name(cfg, stamp)
    k = 1
    while run_dir.exists():
        k += 1
        run_dir = out / f"{run_name(cfg, stamp)}-{k}"
    run_dir.mkdir(parents=True)
    for i, path in enumerate(cfg["init"]):
        # The run keeps its own copies: an original may move or change before a resume.
        kept = init_copy(run_dir, i)
        kept.parent.mkdir(exist_ok=True)
        write_atomic(kept, Path(path).read_bytes())
    write_config(run_dir, cfg)
    return run_dir


def write_config(run_dir: Path, cfg: dict[str, Any]) -> None:
    write_atomic(run_dir / CONFIG, dumps(cfg).encode())


INIT = "init"


def init_copy(run_dir: Path, i: int) -> Path:
    """Where a run directory keeps its copy of the i-th genome of `init`."""
    return run_dir / INIT / f"{i:03d}.genome"


def kept_init(run_dir: Path, i: int) -> Path | None:
    """The run's own copy of the i-th genome of `init`, if it has one.

    Runs made before `init` could list several genomes kept their one copy as
    `init.genome`; they still resume from it.
    """
    kept = init_copy(run_dir, i)
    if kept.is_file():
        return kept
    legacy = run_dir / "init.genome"
    return legacy if i == 0 and legacy.is_file() else None


def rewrite_metrics(path: Path, columns: list[str], keep_below: int) -> None:
    """metrics.csv with its header and only the rows of generations < keep_below."""
    rows = []
    if path.is_file() and keep_below > 0:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["generation"]) < keep_below]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, restval="")
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def write_genome(
    path: Path, genome: torch.Tensor, problem: GenomeProblem, fitness: dict, lineage: dict
) -> Path:
    from genome.files import save_genome

    path.parent.mkdir(parents=True, exist_ok=True)
    # A genome file keeps finite numbers only (an AUC is NaN when a batch has one class).
    fitness = {k: v for k, v in fitness.items() if math.isfinite(v)}
    save_genome(path, genome.detach().cpu(), problem.decoder, fitness=fitness, lineage=lineage)
    return path


def write_pareto(
    run_dir: Path,
    problem: GenomeProblem,
    engine: Engine,
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
    cols = problem.eval_columns
    front = pareto_front(cols.fitness(evals))
    # The new front goes to a fresh folder that replaces the old one whole, so no
    # genome of an earlier, larger front is left beside it.
    final, tmp = run_dir / PARETO, run_dir / f"{PARETO}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    # Duplicates (identical objective vectors) are kept once.
    front = front[cols.finite(evals[front])]
    front = front[first_of_each(cols.fitness(evals[front]))]
    for k, i in enumerate(front.tolist()):
        write_genome(
            tmp / f"{k:03d}.genome",
            values[i],
            problem,
            cols.record(evals[i]),
            {**lineage, "generation": int(born[i])},
        )
    old = run_dir / f"{PARETO}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
