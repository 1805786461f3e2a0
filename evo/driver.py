"""The run driver: search loop, metrics, checkpoints, resume, genome files.

A run reads top to bottom, like a cleanrl script: build the problem from the
resolved config, step the engine once per generation, append a metrics row,
checkpoint every `checkpoint_every` generations and on Ctrl-C (SIGINT), and
write the best genome (and in Pareto mode the non-dominated genomes) at the
end, into the run directory that evo/rundir.py describes.

Resuming checks the run directory (evo/resume.py), loads the checkpoint,
drops metrics rows past it, and continues; as every generation is a pure
function of (state, seed, generation), a run killed and resumed ends
bit-identical to one never interrupted. A write that fails (a full disk, a
directory made read-only) stops the run with one error saying what was kept.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gc
import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evo import build, config, rundir
from evo.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from evo.cluster import connect_ray
from evo.console import Interrupt, progress_bar
from evo.health import SearchDiverged, divergence
from evo.numerics import require_thread_invariance
from evo.problem import GenomeProblem
from evo.resume import check_resume, check_run_dir
from evo.search import Engine, algorithm
from evo.search.archive import ParetoArchive
from evo.workers import choose_workers


@dataclass
class RunResult:
    run_dir: Path
    generation: int  # generations completed
    best_fitness: float
    best_genome: torch.Tensor | None
    best_path: Path | None
    test: dict[str, float] = field(default_factory=dict)
    nan_count: int = 0
    interrupted: bool = False


@dataclass
class Champion:
    """The best genome so far: its score and record on its latest batch, and its test metrics."""

    genome: torch.Tensor
    score: float
    generation: int  # where it was found
    fitness: dict[str, float]
    test: dict[str, float] = field(default_factory=dict)


@dataclass
class RunState:
    """What the driver carries from generation to generation, and checkpoints."""

    generation: int = 0  # the next generation to run
    best: Champion | None = None
    wall_s: float = 0.0
    nan_total: int = 0
    archive: dict[str, Any] | None = None

    def to_checkpoint(self) -> dict[str, Any]:
        """Plain values only: the champion as a dict, no archive key where there is none."""
        out = dataclasses.asdict(self)
        out["best"] = None if self.best is None else dict(vars(self.best))
        if self.archive is None:
            del out["archive"]
        return out

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> RunState:
        best = state.get("best")
        return cls(
            generation=int(state["generation"]),
            best=None if best is None else Champion(**best),
            wall_s=float(state["wall_s"]),
            nan_total=int(state["nan_total"]),
            archive=state.get("archive"),
        )


def metric_columns(problem: GenomeProblem, archive: bool = False) -> list[str]:
    cols = ["generation", "evaluations", "nan_count", *rundir.TIMING_COLUMNS]
    cols += ["fitness_best", "fitness_mean", "best_so_far"]
    if archive:
        cols += ["archive_size"]
    for c in problem.eval_columns.names:
        cols += [f"{c}_best", f"{c}_mean"]
    for obj in problem.objectives:
        cols += [f"test_{obj.name}_{m}" for m in obj.test_metrics]
    return cols


def _generation_row(problem: GenomeProblem, evals: torch.Tensor) -> dict[str, float]:
    cols = problem.eval_columns
    ok = cols.finite(evals)
    score = cols.score(evals)
    row = {
        "evaluations": evals.shape[0],
        "nan_count": int((~ok).sum()),
        "fitness_best": float(score.min()),
        "fitness_mean": float(score[ok].mean()) if ok.any() else math.nan,
    }
    for c in cols.names:
        v = cols.column(evals[ok], c).double()
        if v.numel() == 0:
            row[f"{c}_best"] = row[f"{c}_mean"] = math.nan
            continue
        # An objective's value is minimised; its metrics (accuracy, AUC) are best high.
        row[f"{c}_best"] = float(v.min() if c in cols.objectives else v.max())
        row[f"{c}_mean"] = float(v.mean())
    return row


def _champion(
    problem: GenomeProblem,
    gen: int,
    values: torch.Tensor,
    evals: torch.Tensor,
    best: Champion | None,
) -> Champion:
    """The best genome so far after generation `gen`.

    Fitness is measured on a fresh minibatch each generation, so a score from
    an easy batch long ago says little. The reigning best is scored again on
    this generation's batch and keeps its place only if it is still at least
    as good as this generation's best on the same data.
    """
    cols = problem.eval_columns
    score = cols.score(evals)
    i = int(torch.argmin(score))
    if best is not None:
        again = _evals_of(problem, best.genome, gen)
        if float(cols.score(again)[0]) <= float(score[i]):
            fitness = cols.record(again[0])
            return dataclasses.replace(best, score=fitness["fitness"], fitness=fitness)
    return Champion(
        genome=values[i].clone(),
        score=float(score[i]),
        generation=gen,
        fitness=cols.record(evals[i]),
        test={},
    )


def _evals_of(problem: GenomeProblem, genome: torch.Tensor, gen: int) -> torch.Tensor:
    """The packed evals [1, width] of one genome on generation `gen`'s batch."""
    with torch.no_grad():
        fit, data = problem.fitness(problem.score(genome[None], gen, exact=False))
    return problem.eval_columns.pack(fit, data).cpu()


def _test(problem: GenomeProblem, genome: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        phenotype = problem.decoder.decode(genome[None].to(problem.device))
        out = {}
        for obj in problem.objectives:
            out.update(
                {f"test_{obj.name}_{m}": float(v[0]) for m, v in obj.test(phenotype).items()}
            )
    return out


def new_run(cfg: dict[str, Any], out: str | Path = "runs", progress: bool = True) -> RunResult:
    """Start a run of a resolved config in a fresh directory under `out`."""
    if build.batch_schedule(cfg) is not None and cfg["batch_ramp"] is None:
        # The batch grows over the generations the run starts with; a resume that
        # runs longer keeps the final size.
        cfg = {**cfg, "batch_ramp": cfg["generations"]}
    if cfg.get("thread_invariant"):  # before anything computes, and before the run directory
        require_thread_invariance()
    run_dir = rundir.make_run_dir(cfg, Path(out), time.strftime("%Y%m%d-%H%M%S"))
    return drive(cfg, run_dir, resume=False, progress=progress)


def resume_run(
    run_dir: str | Path, progress: bool = True, *, restart: bool = False, **overrides: Any
) -> RunResult:
    """Continue the run in `run_dir` from its checkpoint (evo/resume.py says what is checked).

    Only settings that cannot change the result may be overridden: generations
    (to run longer), workers and address. `restart` starts a run that has no
    readable checkpoint again from generation 0.
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    cfg = config.load(run_dir / rundir.CONFIG, check_init=False, saved_run=True)
    allowed = {"generations", "workers", "address"}
    bad = sorted(k for k, v in overrides.items() if v is not None and k not in allowed)
    if bad:
        raise config.ConfigError(
            f"--resume: {bad} would change the run's result; on resume only {sorted(allowed)} may change"
        )
    if cfg.get("thread_invariant"):  # before --restart sets anything aside
        require_thread_invariance()
    check_resume(run_dir, cfg, restart=restart)
    if any(v is not None for v in overrides.values()):
        cfg = config.override(cfg, check_init=False, **overrides)
        try:
            rundir.write_config(run_dir, cfg)
        except OSError as e:
            raise rundir.write_failed(run_dir, e) from None
    return drive(cfg, run_dir, resume=True, progress=progress)


@contextlib.contextmanager
def _setup_frozen() -> Iterator[None]:
    """Leave what exists when the generations start out of the garbage collector's passes.

    Python's full collection walks every object it tracks: with torch, EvoTorch
    and a run's data loaded, about 130 ms, due every few hundred generations of
    the faces workload (0.3-0.6 ms a generation). After one collection (so that
    no garbage is kept), the modules, data and problem are frozen (`gc.freeze`)
    and skipped; what the generations create is collected as before, and all is
    handed back (`gc.unfreeze`) when the loop ends. A process that has frozen
    objects of its own (a server about to fork) is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def drive(cfg: dict[str, Any], run_dir: Path, *, resume: bool, progress: bool = True) -> RunResult:
    """The search loop of a run directory, from scratch or from its checkpoint."""
    workers = build.ray_workers(cfg)
    started_ray = connect_ray(cfg["address"], workers) if workers else False
    if workers == "auto":
        problem, workers = choose_workers(cfg, run_dir)
        if not workers and started_ray:  # in-process: the cluster is not needed
            import ray

            ray.shutdown()
            started_ray = False
    else:
        problem = build.build_problem(cfg, run_dir)
    try:
        problem.start_actors()
        return _loop(cfg, run_dir, problem, resume=resume, progress=progress)
    except OSError as e:
        if e.errno not in rundir.WRITE_ERRNOS:
            raise
        raise rundir.write_failed(run_dir, e) from None
    finally:
        problem.close()
        if started_ray:
            import ray

            ray.shutdown()


def _loop(
    cfg: dict[str, Any], run_dir: Path, problem: GenomeProblem, *, resume: bool, progress: bool
) -> RunResult:
    archive = build.build_archive(cfg, problem)
    columns = metric_columns(problem, archive is not None)
    metrics_path = run_dir / rundir.METRICS
    for stale in run_dir.glob(".*.tmp"):  # left by a kill during an atomic write
        stale.unlink()
    entry = algorithm(cfg["algorithm"]["name"])
    engine: Engine = build.make_engine(problem, cfg)
    state = RunState()
    if resume and (run_dir / CHECKPOINT).is_file():
        saved_engine, saved = load_checkpoint(run_dir, entry.name)
        entry.restore_engine(engine, saved_engine)
        state = RunState.from_checkpoint(saved)
    if archive is not None and state.archive is not None:
        archive.load_state(state.archive)
    start = state.generation
    rundir.rewrite_metrics(metrics_path, columns, keep_below=start)
    total = cfg["generations"]
    eval_every, ckpt_every = cfg["eval_every"], cfg["checkpoint_every"]
    done = start
    diverged = None

    def checkpoint(next_gen: int) -> None:
        state.generation = next_gen
        if archive is not None:
            state.archive = archive.state()
        # The config goes with the state: a resume refuses a config.toml edited since.
        saved = {**state.to_checkpoint(), "config": cfg}
        save_checkpoint(run_dir, entry.name, entry.engine_state(engine), saved)

    with (
        Interrupt() as interrupt,
        progress_bar(progress) as bar,
        open(metrics_path, "a", newline="") as f,
        _setup_frozen(),
    ):
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        task = bar.add_task("", total=total, completed=start)
        for gen in range(start, total):
            t0 = time.perf_counter()
            if archive is not None and archive.feed and gen > 0 and archive.due(gen - 1):
                # Members go back as the next step starts (not when they are offered), so a
                # run resumed from its checkpoint or run on past its end feeds the same.
                engine.replace_worst(archive.returns(engine.population()[0]))
            try:
                values, evals = engine.step(gen)
            except Exception:
                # Ctrl-C in a terminal also reaches local Ray workers; the step is lost,
                # the last checkpoint stands.
                if interrupt.requested:
                    break
                raise
            center = engine.center() if entry.has_center else None
            diverged = divergence(gen, values, evals, center, problem.eval_columns)
            if diverged is not None:
                break  # nothing of this generation is kept: no row, no champion, no checkpoint
            dt = time.perf_counter() - t0
            state.wall_s += dt
            row = {"generation": gen, **_generation_row(problem, evals)}
            state.nan_total += row["nan_count"]
            best = state.best = _champion(problem, gen, values, evals, state.best)
            done = gen + 1
            if archive is not None:
                if archive.due(gen):
                    archive.offer(*engine.population(), gen)
                row["archive_size"] = len(archive)
            if done % eval_every == 0 or done == total:
                best.test = _test(problem, best.genome)
                row.update(best.test)
            row.update(evals_per_s=evals.shape[0] / max(dt, 1e-9), wall_s=state.wall_s)
            row["best_so_far"] = best.score
            writer.writerow({k: _fmt(v) for k, v in row.items()})
            f.flush()
            bar.update(task, completed=done, description=f"best {best.score:.4f}")
            if done % ckpt_every == 0 or interrupt.requested or done == total:
                checkpoint(done)
            if interrupt.requested:
                break
    stopped = interrupt.requested or diverged is not None
    result = _finish(cfg, run_dir, problem, engine, done, state, stopped, archive)
    if diverged is not None:
        kept = [f"best genome so far: {result.best_path}"] if result.best_path else []
        if (run_dir / CHECKPOINT).is_file():
            kept.append(f"last checkpoint: generation {state.generation}")
        raise SearchDiverged(f"{diverged}. The run stopped ({'; '.join(kept) or 'nothing kept'})")
    return result


def _finish(
    cfg: dict[str, Any],
    run_dir: Path,
    problem: GenomeProblem,
    engine: Engine,
    generation: int,
    state: RunState,
    interrupted: bool,
    archive: ParetoArchive | None = None,
) -> RunResult:
    from evo.report import plot_run

    best = state.best
    lineage = {
        "run": run_dir.name,
        "seed": cfg["seed"],
        "objectives": cfg["task"]["objectives"],
        "weights": cfg["task"]["weights"],
        "algorithm": cfg["algorithm"]["name"],
    }
    if cfg["init"]:
        lineage["init"] = cfg["init"]
        kept = [rundir.kept_init(run_dir, i) for i in range(len(cfg["init"]))]
        if all(k is not None for k in kept):
            lineage["init_sha256"] = [hashlib.sha256(k.read_bytes()).hexdigest() for k in kept]
    best_path = None
    if best is not None and not best.test:
        best.test = _test(problem, best.genome)
    if best is not None:
        best_path = rundir.write_genome(
            run_dir / rundir.BEST,
            best.genome,
            problem,
            {**best.fitness, **best.test},
            {**lineage, "generation": best.generation},
        )
    center = engine.center() if algorithm(cfg["algorithm"]["name"]).has_center else None
    if center is not None and generation > 0 and bool(torch.isfinite(center).all()):
        # The champion won on one noisy minibatch; the mean is where the search went.
        evals = _evals_of(problem, center, generation - 1)[0]
        rundir.write_genome(
            run_dir / rundir.CENTER,
            center,
            problem,
            {**problem.eval_columns.record(evals), **_test(problem, center)},
            {**lineage, "generation": generation - 1, "genome": "center"},
        )
    if problem.mode == "pareto" and not interrupted:
        if archive is not None and generation > 0:
            archive = archive.with_offer(*engine.population(), generation - 1)
        rundir.write_pareto(run_dir, problem, engine, lineage, generation, archive)
    plot_run(run_dir, problem.eval_columns.objectives)
    return RunResult(
        run_dir=run_dir,
        generation=generation,
        best_fitness=best.score if best else math.nan,
        best_genome=None if best is None else best.genome,
        best_path=best_path,
        test=dict(best.test) if best else {},
        nan_count=state.nan_total,
        interrupted=interrupted,
    )


def _fmt(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else v
