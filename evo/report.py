"""Plots and a summary of a run directory, redrawn from its files alone.

`plot_run` reads metrics.csv and draws fitness.png: per objective, the best
and the mean of the population each generation, the best so far, and the
held-out test metrics where they were measured (every `eval_every`
generations). `summary` gathers the config, the last row and the best genome's
record for `innate report`. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evo.checkpoint import CHECKPOINT, read_state

PLOT = "fitness.png"


def read_metrics(run_dir: str | Path) -> dict[str, list[float]]:
    """metrics.csv as columns of floats (blank cells are NaN)."""
    from evo.rundir import METRICS, RunDirError, read_metric_rows

    path = Path(run_dir) / METRICS
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics; is {run_dir} a run directory?")
    header, rows = read_metric_rows(path)
    cols: dict[str, list[float]] = {k: [] for k in header}
    for n, row in enumerate(rows, start=2):
        for k, v in zip(header, row, strict=True):
            try:
                cols[k].append(float(v) if v else math.nan)
            except ValueError:
                raise RunDirError(f"{path}: line {n}: {k} = {v!r} is not a number") from None
    return cols


def run_objectives(run_dir: Path, metrics: dict[str, list[float]]) -> list[str]:
    """The run's objectives: from its config, else the registry's that metrics.csv has."""
    path = run_dir / "config.toml"
    if path.is_file():
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib

        names = tomllib.loads(path.read_text()).get("task", {}).get("objectives")
        if isinstance(names, list):
            return [str(n) for n in names]
    from evo.objectives import OBJECTIVES

    return [o for o in OBJECTIVES if f"{o}_best" in metrics]


def plot_run(run_dir: str | Path, objectives: Sequence[str] | None = None) -> Path:
    """Draw run_dir/fitness.png from metrics.csv and return its path.

    `objectives` names the panels (None: the run's own, from its config)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    m = read_metrics(run_dir)
    gen = m.get("generation", [])
    objectives = [o for o in (objectives or run_objectives(run_dir, m)) if f"{o}_best" in m]
    tests = [k for k in m if k.startswith("test_")]
    panels = 1 + len(objectives) + (1 if tests else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(gen, m["fitness_best"], label="best")
    ax.plot(gen, m["fitness_mean"], label="mean", alpha=0.7)
    ax.plot(gen, m["best_so_far"], label="best so far", linestyle="--")
    ax.set_title("fitness (lower is better)")
    for k, name in enumerate(objectives, start=1):
        ax = axes[0, k]
        ax.plot(gen, m[f"{name}_best"], label="best")
        ax.plot(gen, m[f"{name}_mean"], label="mean", alpha=0.7)
        for metric in [c for c in m if c.startswith(f"{name}_") and c.endswith("_mean")]:
            if metric != f"{name}_mean":
                ax.plot(gen, m[metric], label=metric[: -len("_mean")] + " (mean)", alpha=0.5)
        ax.set_title(name)
    if tests:
        ax = axes[0, -1]
        for t in tests:
            pts = [(g, v) for g, v in zip(gen, m[t], strict=True) if not math.isnan(v)]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=t[len("test_") :])
        ax.set_title("test (best so far)")
    for ax in axes[0]:
        ax.set_xlabel("generation")
        ax.legend(fontsize=7)
    fig.suptitle(run_dir.name, fontsize=9)
    fig.tight_layout()
    out = run_dir / PLOT
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summary(run_dir: str | Path) -> dict[str, Any]:
    """The run's headline numbers: generations done, best fitness, its test metrics, files."""
    run_dir = Path(run_dir)
    m = read_metrics(run_dir)
    out: dict[str, Any] = {"run": run_dir.name, "generations": len(m.get("generation", []))}
    if m.get("generation"):
        out["nan_count"] = int(sum(v for v in m["nan_count"] if not math.isnan(v)))
        out["wall_s"] = m["wall_s"][-1]
        out["evals_per_s"] = sum(m["evals_per_s"]) / len(m["evals_per_s"])
    if (run_dir / CHECKPOINT).is_file():
        best = read_state(run_dir).get("best")
        if best:
            out["best_generation"] = best["generation"]
            out["best"] = {**best["fitness"], **best["test"]}
    if (run_dir / "center.genome").is_file():
        from genome.files import load_genome

        out["center"] = load_genome(run_dir / "center.genome").fitness
    out["files"] = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
    return out
