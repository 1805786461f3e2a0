"""Run commands of the innate CLI: `evolve`, `report` and `demo`.

`innate evolve CONFIG.toml` starts a run (overrides on the command line),
`innate evolve --resume RUN_DIR` continues one from its checkpoint (`--restart`:
from generation 0, where it has no readable checkpoint), `innate
report RUN_DIR` redraws its plot and prints a summary, and `innate demo` is a
short face-detection evolution on this machine that ends on real LFW faces.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import typer

from evo.cli.errors import fail

# The README's first command: faces in about a minute on two cores, in-process
# (local Ray costs more to start than it saves on a population this small).
DEMO: dict[str, Any] = {
    "seed": 0,
    "generations": 400,
    "batch_size": 256,
    "eval_every": 50,
    "checkpoint_every": 50,
    "task": {"objectives": ["faces"]},
    "layout": {"hidden": [64]},
    "decoder": {"name": "gnet", "settings": {"hidden": [8, 8]}},
    "algorithm": {"name": "snes", "population_size": 64, "stdev_init": 0.5},
}


def _workers(value: str | None) -> int | str | None:
    if value is None or value in ("max", "auto"):
        return value
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(
            f'--workers must be an integer >= 0, "max" or "auto", got {value!r}'
        ) from None


def _print_result(res: Any) -> None:
    state = "interrupted at" if res.interrupted else "finished"
    typer.echo(f"{state} generation {res.generation}: {res.run_dir}")
    if res.interrupted:
        typer.echo(f"resume with: innate evolve --resume {res.run_dir}")
    typer.echo(f"best fitness {res.best_fitness:.5g}; best genome: {res.best_path}")
    for k, v in res.test.items():
        typer.echo(f"  {k} = {v:.4f}")
    if res.nan_count:
        typer.echo(f"  {res.nan_count} evaluations had a non-finite fitness (scored worst)")


def register(app: typer.Typer) -> None:
    @app.command()
    def evolve(
        config: Path = typer.Argument(None, help="Run config (TOML); see configs/."),
        resume: Path = typer.Option(None, "--resume", help="Continue the run in this directory."),
        generations: int = typer.Option(None, "--generations", min=1),
        population: int = typer.Option(None, "--population", min=1),
        seed: int = typer.Option(None, "--seed", min=0),
        workers: str = typer.Option(
            None, "--workers", help='Ray actors (0: in-process; "max"; "auto").'
        ),
        address: str = typer.Option(
            None, "--address", help='Join a Ray cluster ("auto" or host:port).'
        ),
        init: list[Path] = typer.Option(
            None,
            "--init",
            help="Start from this .genome file (same decoder and layout); "
            "repeat it to seed a GA's population with several.",
        ),
        out: Path = typer.Option(Path("runs"), "--out", help="Parent directory of new runs."),
        restart: bool = typer.Option(
            False,
            "--restart",
            help="With --resume: start a run that has no readable checkpoint again from "
            "generation 0 (an unreadable one is kept as checkpoint.pt.unreadable).",
        ),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Evolve genomes as a config says, or resume a run."""
        import evo.config
        from evo.checkpoint import CheckpointError
        from evo.cluster import RayAddressError
        from evo.driver import new_run, resume_run
        from evo.health import SearchDiverged
        from evo.numerics import ThreadInvarianceError
        from evo.problem import ActorsLost
        from evo.rundir import RunDirError

        w = _workers(workers)
        try:
            if resume is not None:
                if config is not None:
                    fail("give either CONFIG or --resume RUN_DIR, not both")
                res = resume_run(
                    resume,
                    progress=not quiet,
                    restart=restart,
                    generations=generations,
                    workers=w,
                    address=address,
                    population=population,
                    seed=seed,
                    init=[str(p) for p in init] if init else None,
                )
            else:
                if config is None:
                    fail("give a CONFIG file (see configs/) or --resume RUN_DIR")
                if restart:
                    fail("--restart goes with --resume RUN_DIR (a CONFIG always starts afresh)")
                cfg = evo.config.override(
                    evo.config.load(config),
                    generations=generations,
                    population=population,
                    seed=seed,
                    workers=w,
                    address=address,
                    init=[str(p) for p in init] if init else None,
                )
                res = new_run(cfg, out, progress=not quiet)
        except (
            evo.config.ConfigError,
            CheckpointError,
            SearchDiverged,
            RayAddressError,
            ActorsLost,
            RunDirError,
            ThreadInvarianceError,
            FileNotFoundError,
        ) as e:
            fail(str(e))
        except OSError as e:
            # The last resort for a file the run could not read or write: one line, no traceback.
            fail(f"{e.filename or 'a run file'}: {e.strerror or e}")
        _print_result(res)

    @app.command()
    def report(
        run_dir: Path = typer.Argument(..., help="A run directory."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Redraw a run's plot and print its summary."""
        from evo.checkpoint import CheckpointError
        from evo.report import plot_run, summary
        from evo.rundir import RunDirError
        from genome.files import GenomeFileError

        try:
            png = plot_run(run_dir)
            s = summary(run_dir)
        except (FileNotFoundError, GenomeFileError, CheckpointError, RunDirError) as e:
            fail(str(e))
        except OSError as e:
            fail(f"{e.filename or run_dir}: {e.strerror or e}")
        if as_json:
            typer.echo(json.dumps({**s, "plot": str(png)}, indent=2))
            return
        typer.echo(f"run {s['run']}: {s['generations']} generations")
        for k in ("wall_s", "evals_per_s", "nan_count", "best_generation"):
            if k in s:
                typer.echo(f"  {k}: {s[k]:.4g}" if isinstance(s[k], float) else f"  {k}: {s[k]}")
        for kind in ("best", "center"):
            for k, v in s.get(kind, {}).items():
                typer.echo(f"  {kind} {k}: {v:.4f}")
        typer.echo(f"  plot: {png}")

    @app.command()
    def demo(
        out: Path = typer.Option(Path("runs"), "--out", help="Parent directory of the run."),
        generations: int = typer.Option(None, "--generations", min=1),
        workers: str = typer.Option(
            None, "--workers", help='Ray actors (0: in-process; "max"; "auto").'
        ),
        seed: int = typer.Option(None, "--seed", min=0),
    ) -> None:
        """Evolve a face detector for about a minute, then test it on real LFW faces."""
        from evo import build, config
        from evo.driver import new_run

        cfg = config.resolve(config.validate(copy.deepcopy(DEMO), "demo"), "demo")
        cfg = config.override(cfg, generations=generations, workers=_workers(workers), seed=seed)
        dec = build.build_decoder(cfg)
        typer.echo(
            f"demo: evolving face detectors ({cfg['algorithm']['name']}, population "
            f"{cfg['algorithm']['population_size']}, {cfg['generations']} generations) grown by a "
            f"{dec.name} genome of {dec.genome_length()} genes on {dec.layout.describe()} "
            f"({dec.compression():.0f}x compression)"
        )
        from evo.rundir import RunDirError

        try:
            res = new_run(cfg, out)
        except RunDirError as e:
            fail(str(e))
        typer.echo(f"best genome: {res.best_path}")
        acc, auc = res.test.get("test_faces_acc"), res.test.get("test_faces_auc")
        if acc is not None:
            typer.echo(
                f"on real LFW faces (100 faces, 100 non-faces): accuracy {acc:.3f}, ROC-AUC {auc:.3f}"
            )
        typer.echo(f"plot: {res.run_dir / 'fitness.png'}   summary: innate report {res.run_dir}")
