"""The run driver: search loop, metrics, checkpoints, resume, genome files.

A run reads top to bottom, like a cleanrl script: build the problem from the
resolved config, step the engine once per generation, append a metrics row,
checkpoint every `checkpoint_every` generations and on Ctrl-C (SIGINT), and
write the best genome (and in Pareto mode the non-dominated genomes) at the
end. Its directory holds:

    config.toml     the resolved config (all `--resume` needs)
    init/*.genome   copies of the genomes the run started from, if any (`init`)
    metrics.csv     one row per generation (see `metric_columns`)
    checkpoint.pt   engine state, next generation, best so far (evo/checkpoint.py)
    best.genome     the best genome so far, with fitness and lineage
    center.genome   the search distribution's mean at the end (SNES, XNES, PGPE,
                    CEM, CMA-ES): what the search converges to, scored on the
                    last generation's batch and on the test data like best.genome
    pareto/*.genome the final non-dominated set (Pareto mode): the archive's
                    members, scored on its fixed data, where the config keeps
                    one (`[archive]`, evo/archive.py), else the final
                    population's first front
    fitness.png     the fitness plot (evo/report.py)

Resuming loads the checkpoint, drops metrics rows past it, and continues;
as every generation is a pure function of (state, seed, generation), a run
killed and resumed ends bit-identical to one never interrupted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evo import config as C
from evo.algorithms import EvoEngine
from evo.archive import ParetoArchive
from evo.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from evo.gradient import GradientEngine
from evo.outputs import fitness_dict, selection_score, write_genome, write_pareto
from evo.problem import GenomeProblem, connect_ray
from genome.files import write_atomic

METRICS = "metrics.csv"
BEST = "best.genome"
CENTER = "center.genome"


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


def make_engine(problem: GenomeProblem, cfg: dict[str, Any]) -> Any:
    alg = dict(cfg["algorithm"])
    name = alg.pop("name")
    hyper = {k: v for k, v in alg.items() if v is not None}
    if name == "gradient":
        return GradientEngine(problem, hyper, generations=cfg["generations"])
    return EvoEngine(problem, name, hyper)


def metric_columns(problem: GenomeProblem, archive: bool = False) -> list[str]:
    cols = ["generation", "evaluations", "nan_count", "evals_per_s", "wall_s"]
    cols += ["fitness_best", "fitness_mean", "best_so_far"]
    if archive:
        cols += ["archive_size"]
    for c in problem.columns[:-1]:
        cols += [f"{c}_best", f"{c}_mean"]
    for obj in problem.objectives:
        cols += [f"test_{obj.name}_{m}" for m in obj.test_metrics]
    return cols


def _generation_row(problem: GenomeProblem, evals: torch.Tensor) -> dict[str, float]:
    n = problem.n_objectives
    ok = evals[:, -1] == 0
    score = selection_score(problem, evals)
    row = {
        "evaluations": evals.shape[0],
        "nan_count": int((~ok).sum()),
        "fitness_best": float(score.min()),
        "fitness_mean": float(score[ok].mean()) if ok.any() else math.nan,
    }
    objectives = {o.name for o in problem.objectives}
    for j, c in enumerate(problem.columns[:-1]):
        v = evals[ok, n + j].double()
        if v.numel() == 0:
            row[f"{c}_best"] = row[f"{c}_mean"] = math.nan
            continue
        row[f"{c}_best"] = float(v.min() if c in objectives else v.max())
        row[f"{c}_mean"] = float(v.mean())
    return row


def _champion(
    problem: GenomeProblem, gen: int, values: torch.Tensor, evals: torch.Tensor, best: dict | None
) -> dict:
    """The best genome so far after generation `gen`.

    Fitness is measured on a fresh minibatch each generation, so a score from
    an easy batch long ago says little. The reigning best is scored again on
    this generation's batch and keeps its place only if it is still at least
    as good as this generation's best on the same data.
    """
    score = selection_score(problem, evals)
    i = int(torch.argmin(score))
    if best is not None:
        again = _evals_of(problem, best["genome"], gen)
        if float(selection_score(problem, again)[0]) <= float(score[i]):
            fitness = fitness_dict(problem, again[0])
            return {**best, "score": fitness["fitness"], "fitness": fitness}
    return {
        "genome": values[i].clone(),
        "score": float(score[i]),
        "generation": gen,
        "fitness": fitness_dict(problem, evals[i]),
        "test": {},
    }


def _evals_of(problem: GenomeProblem, genome: torch.Tensor, gen: int) -> torch.Tensor:
    """The evals row [1, n_objectives + C] of one genome on generation `gen`'s batch."""
    with torch.no_grad():
        fit, data = problem.fitness(problem.score(genome[None], gen, exact=False))
    return torch.cat([fit, data], dim=1).cpu()


def _test(problem: GenomeProblem, genome: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        phenotype = problem.decoder.decode(genome[None].to(problem.device))
        out = {}
        for obj in problem.objectives:
            out.update(
                {f"test_{obj.name}_{m}": float(v[0]) for m, v in obj.test(phenotype).items()}
            )
    return out


class _Interrupt:
    """First SIGINT asks the loop to checkpoint and stop; a second one stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]gen"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def new_run(cfg: dict[str, Any], out: str | Path = "runs", progress: bool = True) -> RunResult:
    """Start a run of a resolved config in a fresh directory under `out`."""
    out = Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = out / C.run_name(cfg, stamp)
    k = 1
    while run_dir.exists():
        k += 1
        run_dir = out / f"{C.run_name(cfg, stamp)}-{k}"
    run_dir.mkdir(parents=True)
    if C.batch_schedule(cfg) is not None and cfg["batch_ramp"] is None:
        # The batch grows over the generations the run starts with; a resume that
        # runs longer keeps the final size.
        cfg = {**cfg, "batch_ramp": cfg["generations"]}
    for i, path in enumerate(cfg["init"]):
        # The run keeps its own copies: an original may move or change before a resume.
        kept = C.init_copy(run_dir, i)
        kept.parent.mkdir(exist_ok=True)
        write_atomic(kept, Path(path).read_bytes())
    write_atomic(run_dir / "config.toml", C.dumps(cfg).encode())
    return drive(cfg, run_dir, resume=False, progress=progress)


def resume_run(run_dir: str | Path, progress: bool = True, **overrides: Any) -> RunResult:
    """Continue the run in `run_dir` from its checkpoint.

    Only settings that cannot change the result may be overridden: generations
    (to run longer), workers and address.
    """
    run_dir = Path(run_dir)
    cfg = C.load(run_dir / "config.toml", check_init=False)
    allowed = {"generations", "workers", "address"}
    bad = sorted(k for k, v in overrides.items() if v is not None and k not in allowed)
    if bad:
        raise C.ConfigError(
            f"--resume: {bad} would change the run's result; on resume only {sorted(allowed)} may change"
        )
    if any(v is not None for v in overrides.values()):
        cfg = C.override(cfg, check_init=False, **overrides)
        write_atomic(run_dir / "config.toml", C.dumps(cfg).encode())
    return drive(cfg, run_dir, resume=True, progress=progress)


def drive(cfg: dict[str, Any], run_dir: Path, *, resume: bool, progress: bool = True) -> RunResult:
    """The search loop of a run directory, from scratch or from its checkpoint."""
    workers = C.ray_workers(cfg)
    started_ray = connect_ray(cfg["address"], workers) if workers else False
    problem = C.build_problem(cfg, run_dir)
    try:
        problem.start_actors()
        return _loop(cfg, run_dir, problem, resume=resume, progress=progress)
    finally:
        problem.close()
        if started_ray:
            import ray

            ray.shutdown()


def _loop(
    cfg: dict[str, Any], run_dir: Path, problem: GenomeProblem, *, resume: bool, progress: bool
) -> RunResult:
    archive = C.build_archive(cfg, problem)
    columns = metric_columns(problem, archive is not None)
    metrics_path = run_dir / METRICS
    for stale in run_dir.glob(".*.tmp"):  # left by a kill during an atomic write
        stale.unlink()
    if resume and (run_dir / CHECKPOINT).is_file():
        engine, state = load_checkpoint(run_dir, problem)
    else:
        engine = make_engine(problem, cfg)
        state = {"generation": 0, "best": None, "wall_s": 0.0, "nan_total": 0}
    if archive is not None and state.get("archive") is not None:
        archive.load_state(state["archive"])
    start = int(state["generation"])
    _rewrite_metrics(metrics_path, columns, keep_below=start)
    best = state["best"]
    total = cfg["generations"]
    eval_every, ckpt_every = cfg["eval_every"], cfg["checkpoint_every"]
    done = start

    def checkpoint(next_gen: int) -> None:
        state.update(generation=next_gen, best=best)
        if archive is not None:
            state["archive"] = archive.state()
        save_checkpoint(run_dir, engine, problem, state)

    with (
        _Interrupt() as interrupt,
        _progress(progress) as bar,
        open(metrics_path, "a", newline="") as f,
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
            dt = time.perf_counter() - t0
            state["wall_s"] += dt
            row = {"generation": gen, **_generation_row(problem, evals)}
            state["nan_total"] += row["nan_count"]
            best = _champion(problem, gen, values, evals, best)
            done = gen + 1
            if archive is not None:
                if archive.due(gen):
                    archive.offer(*engine.population(), gen)
                row["archive_size"] = len(archive)
            if done % eval_every == 0 or done == total:
                best["test"] = _test(problem, best["genome"])
                row.update(best["test"])
            row.update(evals_per_s=evals.shape[0] / max(dt, 1e-9), wall_s=state["wall_s"])
            row["best_so_far"] = best["score"]
            writer.writerow({k: _fmt(v) for k, v in row.items()})
            f.flush()
            bar.update(task, completed=done, description=f"best {best['score']:.4f}")
            if done % ckpt_every == 0 or interrupt.requested or done == total:
                checkpoint(done)
            if interrupt.requested:
                break
    return _finish(cfg, run_dir, problem, engine, best, done, state, interrupt.requested, archive)


def _finish(
    cfg: dict[str, Any],
    run_dir: Path,
    problem: GenomeProblem,
    engine: Any,
    best: dict | None,
    generation: int,
    state: dict,
    interrupted: bool,
    archive: ParetoArchive | None = None,
) -> RunResult:
    from evo.report import plot_run

    lineage = {
        "run": run_dir.name,
        "seed": cfg["seed"],
        "objectives": cfg["task"]["objectives"],
        "weights": cfg["task"]["weights"],
        "algorithm": cfg["algorithm"]["name"],
    }
    if cfg["init"]:
        lineage["init"] = cfg["init"]
        kept = [C.kept_init(run_dir, i) for i in range(len(cfg["init"]))]
        if all(k is not None for k in kept):
            lineage["init_sha256"] = [hashlib.sha256(k.read_bytes()).hexdigest() for k in kept]
    best_path = None
    if best is not None and not best["test"]:
        best["test"] = _test(problem, best["genome"])
    if best is not None:
        best_path = write_genome(
            run_dir / BEST,
            best["genome"],
            problem,
            {**best["fitness"], **best["test"]},
            {**lineage, "generation": best["generation"]},
        )
    center = engine.center() if isinstance(engine, EvoEngine) else None
    if center is not None and generation > 0:
        # The champion won on one noisy minibatch; the mean is where the search went.
        evals = _evals_of(problem, center, generation - 1)[0]
        write_genome(
            run_dir / CENTER,
            center,
            problem,
            {**fitness_dict(problem, evals), **_test(problem, center)},
            {**lineage, "generation": generation - 1, "genome": "center"},
        )
    if problem.mode == "pareto" and not interrupted:
        if archive is not None and generation > 0:
            archive = archive.with_offer(*engine.population(), generation - 1)
        write_pareto(run_dir, problem, engine, lineage, generation, archive)
    plot_run(run_dir)
    return RunResult(
        run_dir=run_dir,
        generation=generation,
        best_fitness=best["score"] if best else math.nan,
        best_genome=None if best is None else best["genome"],
        best_path=best_path,
        test=dict(best["test"]) if best else {},
        nan_count=int(state["nan_total"]),
        interrupted=interrupted,
    )


def _fmt(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else v


def _rewrite_metrics(path: Path, columns: list[str], keep_below: int) -> None:
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
