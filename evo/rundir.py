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
after the objective that reads data (``-2``, ``-3``... for runs started in the
same second). Every genome file carries its fitness
(finite values only) and lineage (run, generation, seed, objectives), so a
genome found in a run directory says where it came from. In Pareto mode the
non-dominated set (NSGA-II's first front, Deb et al., IEEE TEC 2002) replaces
the previous `pareto/` folder whole.
"""

from __future__ import annotations

import csv
import errno
import io
import math
import os
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
# Its columns that time a generation, and so differ from run to run of the same config.
TIMING_COLUMNS = ("evals_per_s", "wall_s")
BEST = "best.genome"
CENTER = "center.genome"
PARETO = "pareto"


def run_name(cfg: dict[str, Any], time: str) -> str:
    return f"{data_objective_name(cfg)}__{cfg['decoder']['name']}__s{cfg['seed']}__{time}"


class RunDirError(ValueError):
    """A run directory that cannot be made, read or written; the message says what to do."""


# Errors of writing that the user can fix (space, permissions), as opposed to bugs.
WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
}
# More runs than this of one name started in one second means something else is wrong.
MAX_SUFFIX = 10_000


def make_run_dir(cfg: dict[str, Any], out: Path, stamp: str) -> Path:
    """A fresh directory under `out` holding the config and its own copies of `init`.

    Runs started in the same second share a name: each claims the first free one of
    NAME, NAME-2, NAME-3... with `os.mkdir`, which only one of them can win.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: a file, not a directory; give a directory for runs (--out)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        run_dir = _claim(out, run_name(cfg, stamp))
    except OSError as e:
        raise RunDirError(
            f"{out}: cannot make a run directory there ({e.strerror}); give a directory you "
            "can write to (--out)"
        ) from None
    try:
        for i, path in enumerate(cfg["init"]):
            # The run keeps its own copies: an original may move or change before a resume.
            kept = init_copy(run_dir, i)
            kept.parent.mkdir(exist_ok=True)
            write_atomic(kept, Path(path).read_bytes())
        write_config(run_dir, cfg)
    except OSError as e:
        # Nothing has run yet: a directory without its config could never be resumed.
        shutil.rmtree(run_dir, ignore_errors=True)
        raise RunDirError(f"{e.filename or run_dir}: {e.strerror}; no run was started") from None
    return run_dir


def _claim(out: Path, name: str) -> Path:
    for k in range(1, MAX_SUFFIX + 1):
        run_dir = out / (name if k == 1 else f"{name}-{k}")
        try:
            os.mkdir(run_dir)
        except FileExistsError:
            continue
        return run_dir
    raise RunDirError(f"{out}: {MAX_SUFFIX} runs named {name} already; give another --out")


def write_failed(run_dir: Path, e: OSError) -> RunDirError:
    """The error of a run that could not write its files: what failed, and what was kept."""
    from evo.checkpoint import CheckpointError, read_state

    try:
        kept = f"its last checkpoint (generation {read_state(run_dir)['generation']}) is intact"
    except FileNotFoundError:
        kept = "it had no checkpoint yet"
    except CheckpointError:
        kept = "its checkpoint is unreadable"
    space = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    fix = "free some space" if space else f"make {run_dir} writable"
    return RunDirError(
        f"{e.filename or run_dir}: {e.strerror}; the run stopped and {kept}: {fix}, then "
        f"resume with: innate evolve --resume {run_dir}"
    )


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


_METRICS_FIX = "repair or delete that line (rows from the checkpoint's generation on are rewritten)"
_METRICS_ASIDE = "move the file aside to resume without the rows before the checkpoint"


def read_metric_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """metrics.csv's header and rows; RunDirError naming the line at fault.

    A last line without its newline is a row cut short by a kill while it was being
    appended (rows are appended, checkpoints renamed whole): it is left out.
    """
    if path.is_dir():
        raise RunDirError(f"{path}: a directory, not a metrics file; move it aside")
    try:
        lines = path.read_bytes().decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not a metrics file (not text); {_METRICS_ASIDE}") from None
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    try:
        table = list(csv.reader(lines))
    except csv.Error as e:
        raise RunDirError(f"{path}: not a metrics file ({e}); {_METRICS_ASIDE}") from None
    if not table:
        return [], []
    header, rows = table[0], table[1:]
    if "generation" not in header:
        raise RunDirError(
            f"{path}: line 1 is not a metrics header (no 'generation' column); {_METRICS_ASIDE}"
        )
    at = header.index("generation")
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise RunDirError(
                f"{path}: line {n} has {len(row)} fields, the header {len(header)}; {_METRICS_FIX}"
            )
        if not row[at].isdigit():
            raise RunDirError(
                f"{path}: line {n}: generation {row[at]!r} is not a whole number; {_METRICS_FIX}"
            )
    return header, rows


def rewrite_metrics(path: Path, columns: list[str], keep_below: int) -> None:
    """metrics.csv with its header and only the rows of generations < keep_below."""
    rows = []
    if path.is_file() and keep_below > 0:
        header, table = read_metric_rows(path)
        extra = [c for c in header if c not in columns]
        if extra:
            raise RunDirError(
                f"{path}: has columns this run does not write ({', '.join(extra)}); "
                f"{_METRICS_ASIDE}"
            )
        rows = [dict(zip(header, r, strict=True)) for r in table]
        rows = [r for r in rows if int(r["generation"]) < keep_below]
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
