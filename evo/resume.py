"""What `innate evolve --resume` checks before a run goes on, and what `--restart` does.

A resume goes on only where it can end as the run would have ended unstopped:
from a checkpoint it can read, with the metrics it can read, and with the config
the run started with. Each checkpoint keeps the run's resolved config, so a
`config.toml` edited since is refused, naming the fields that changed; only
the settings in `SAFE_ON_RESUME` (how long, on which machines, how often to
test and checkpoint) may change, as the search does not depend on them.
Checkpoints written before they kept the config are resumed unchecked.

A run with no readable checkpoint is refused too (it would silently start
again from generation 0); `--restart` starts it again from generation 0 in the
same directory, setting an unreadable checkpoint aside rather than deleting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evo import rundir
from evo.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, read_state
from evo.config import ConfigError
from evo.sections import top

# Settings a resume may change: none of them changes a genome the search visits.
SAFE_ON_RESUME = ("generations", "workers", "address", "eval_every", "checkpoint_every")
# An unreadable checkpoint or metrics.csv that --restart sets aside keeps this suffix.
SET_ASIDE = ".unreadable"


def config_changes(started: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The fields, other than SAFE_ON_RESUME, that differ between two resolved configs.

    A top-level setting that `started` lacks (a run begun before the setting
    existed) had its default.
    """
    a, b = _flat({**top({}, "defaults"), **started}), _flat(now)
    return [
        f"{k} ({a.get(k, 'unset')!r} -> {b.get(k, 'unset')!r})"
        for k in sorted(a.keys() | b.keys())
        if k.split(".")[0] not in SAFE_ON_RESUME and a.get(k) != b.get(k)
    ]


def _flat(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a.b": value}, None values left out (config.toml leaves them out too)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif v is not None:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def check_run_dir(run_dir: Path) -> None:
    """RunDirError unless `run_dir` is a directory with a config.toml."""
    if not run_dir.is_dir():
        raise rundir.RunDirError(f"{run_dir}: no such run directory")
    if not (run_dir / rundir.CONFIG).is_file():
        raise rundir.RunDirError(
            f"{run_dir}: not a run directory (no {rundir.CONFIG}); give a directory that "
            "`innate evolve CONFIG` made"
        )


def check_resume(run_dir: Path, cfg: dict[str, Any], *, restart: bool = False) -> None:
    """Refuse, before Ray or the data start, a resume that could not go on exactly.

    With `restart`, a run without a readable checkpoint starts again from generation 0
    (its unreadable checkpoint, if any, set aside); one with a readable checkpoint is
    refused, as restarting would throw it away.
    """
    path = run_dir / CHECKPOINT
    if restart:
        _restart(run_dir)
        return
    if not path.exists():
        raise CheckpointError(
            f"{path}: no checkpoint (the run stopped before its first, written every "
            f"{cfg['checkpoint_every']} generations); start it again from generation 0 with: "
            f"innate evolve --resume {run_dir} --restart"
        )
    _, saved = load_checkpoint(run_dir, cfg["algorithm"]["name"])
    if "config" in saved:
        changes = config_changes(saved["config"], cfg)
        if changes:
            raise ConfigError(
                f"{run_dir / rundir.CONFIG}: changed since the run started: "
                f"{'; '.join(changes)}; put it back, or start a new run from this config "
                f"(a resume may change only {', '.join(SAFE_ON_RESUME)})"
            )
    if (run_dir / rundir.METRICS).exists():
        rundir.read_metric_rows(run_dir / rundir.METRICS)


def _restart(run_dir: Path) -> None:
    path = run_dir / CHECKPOINT
    metrics = run_dir / rundir.METRICS
    if metrics.exists():
        try:
            rundir.read_metric_rows(metrics)
        except rundir.RunDirError:
            _set_aside(metrics)  # the rows are written again from generation 0
    if not path.exists():
        return
    try:
        generation = read_state(run_dir)["generation"]
    except CheckpointError:
        _set_aside(path)
        return
    raise CheckpointError(
        f"{path}: readable, at generation {generation}; --restart would throw it away: "
        f"resume without --restart, or start a new run from {run_dir / rundir.CONFIG}"
    )


def _set_aside(path: Path) -> Path:
    """Rename an unreadable file (or directory) to NAME.unreadable, -2, -3...: kept, not lost."""
    aside = path.with_name(path.name + SET_ASIDE)
    k = 1
    while aside.exists():
        k += 1
        aside = path.with_name(f"{path.name}{SET_ASIDE}-{k}")
    path.rename(aside)
    return aside
