"""Short in-process runs: every algorithm writes a run directory; same seed, same result;
resume equals no interruption; Pareto fronts are non-dominated; NaN fitness is counted;
wiring and the gradient optimiser lower what they should."""

from __future__ import annotations

import csv
import gc
import math
import re
import weakref
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from conftest import TINY, changed, run_metrics
from typer.testing import CliRunner

from evo import build, config
from evo.checkpoint import load_checkpoint, read_state
from evo.cli import app
from evo.driver import new_run, resume_run
from evo.objectives import OBJECTIVES, Objective
from evo.search import ALGORITHMS
from evo.search.pareto import pareto_front
from genome.files import load_genome


def tiny(**changes: Any) -> dict[str, Any]:
    return config.resolve(config.validate(changed(TINY, **changes), "test"), "test")


def rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_algorithm_writes_a_run_directory(tmp_path, name):
    pop = 1 if name == "gradient" else 8
    cfg = tiny(algorithm={"name": name, "population_size": pop})
    res = new_run(cfg, tmp_path, progress=False)
    d = res.run_dir
    assert d.name.startswith(f"digits__{cfg['decoder']['name']}__s0__")
    for f in ("config.toml", "metrics.csv", "checkpoint.pt", "best.genome", "fitness.png"):
        assert (d / f).is_file(), f
    r = rows(d)
    assert [int(x["generation"]) for x in r] == [0, 1, 2]
    assert r[1]["test_digits_acc"] != "" and r[0]["test_digits_acc"] == ""
    assert all(int(x["nan_count"]) == 0 and float(x["evals_per_s"]) > 0 for x in r)
    assert res.generation == 3 and math.isfinite(res.best_fitness)
    assert read_state(d)["generation"] == 3
    # A distribution-based searcher also leaves its final mean.
    assert (d / "center.genome").is_file() == (name not in ("ga", "gradient"))


def test_same_seed_same_run_whatever_the_global_rng_and_another_seed_differs(tmp_path):
    a = new_run(tiny(), tmp_path / "a", progress=False)
    torch.manual_seed(12345)  # library code must not depend on the global generator
    torch.rand(7)
    b = new_run(tiny(), tmp_path / "b", progress=False)
    c = new_run(tiny(seed=1), tmp_path / "c", progress=False)
    assert torch.equal(a.best_genome, b.best_genome) and a.best_fitness == b.best_fitness
    assert not torch.equal(a.best_genome, c.best_genome)

    assert run_metrics(a.run_dir) == run_metrics(b.run_dir)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_resume_equals_an_uninterrupted_run(tmp_path, name):
    pop = 1 if name == "gradient" else 8
    cfg = tiny(generations=5, checkpoint_every=1, algorithm={"name": name, "population_size": pop})
    whole = new_run(cfg, tmp_path / "whole", progress=False)
    part = new_run(config.override(cfg, generations=2), tmp_path / "part", progress=False)
    assert part.generation == 2
    resumed = resume_run(part.run_dir, progress=False, generations=5)
    assert resumed.generation == 5
    assert torch.equal(resumed.best_genome, whole.best_genome)
    assert resumed.best_fitness == whole.best_fitness
    assert [r["fitness_best"] for r in rows(resumed.run_dir)] == [
        r["fitness_best"] for r in rows(whole.run_dir)
    ]
    if ALGORITHMS[name].has_center:
        centers = [load_genome(r.run_dir / "center.genome").genome for r in (resumed, whole)]
        assert torch.equal(*centers)


def test_a_growing_batch_follows_its_schedule_and_resumes_exactly(tmp_path):
    cfg = tiny(generations=5, checkpoint_every=1, final_batch_size=128)  # 64 -> 128
    whole = new_run(cfg, tmp_path / "whole", progress=False)
    saved = config.load(whole.run_dir / "config.toml")
    assert saved["batch_ramp"] == 5  # fixed when the run starts
    problem = build.build_problem(saved)
    assert [problem.batch_size_at(g) for g in (0, 1, 4, 5, 50)] == [64, 77, 115, 128, 128]
    for g in (0, 3):
        x, y = problem.data(g)[0]
        assert x.shape[0] == y.shape[0] == problem.batch_size_at(g)
    constant = new_run(tiny(generations=5), tmp_path / "constant", progress=False)
    assert not torch.equal(whole.best_genome, constant.best_genome)
    assert build.build_problem(tiny()).batch_size_at(3) is None
    # Killed after two generations and resumed: the same run.
    part = new_run(
        config.override(cfg, generations=2, batch_ramp=5), tmp_path / "part", progress=False
    )
    resumed = resume_run(part.run_dir, progress=False, generations=5)
    assert torch.equal(resumed.best_genome, whole.best_genome)
    # A run started for two generations ramps over two; resumed longer, it keeps that ramp.
    short = new_run(config.override(cfg, generations=2), tmp_path / "short", progress=False)
    resume_run(short.run_dir, progress=False, generations=5)
    assert config.load(short.run_dir / "config.toml")["batch_ramp"] == 2


def test_resume_rejects_changes_that_alter_the_result(tmp_path):
    res = new_run(tiny(generations=1), tmp_path, progress=False)
    with pytest.raises(config.ConfigError, match=r"\['seed'\] would change the run's result"):
        resume_run(res.run_dir, progress=False, seed=5)


class Flaky(Objective):
    """Infinite for every genome whose first gene is positive: about half of them."""

    name = "flaky"
    has_data = False
    metrics: ClassVar[tuple[str, ...]] = ()

    def evaluate(self, phenotype, batch):
        w = phenotype.weights[0]
        first = w.reshape(w.shape[0], -1)[:, 0]
        return {self.name: torch.where(first > 0, torch.inf, first.abs())}


def test_nonfinite_fitness_goes_on_and_is_counted(tmp_path, monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "flaky", Flaky)
    cfg = tiny(task={"objectives": ["digits", "flaky"]}, generations=3)
    res = new_run(cfg, tmp_path, progress=False)
    counts = [int(r["nan_count"]) for r in rows(res.run_dir)]
    assert res.generation == 3 and sum(counts) == res.nan_count > 0
    assert math.isfinite(res.best_fitness)


class FreezeWatch(Objective):
    """Records how many objects the garbage collector has frozen when it is scored."""

    name = "freezewatch"
    has_data = False
    metrics: ClassVar[tuple[str, ...]] = ()
    seen: ClassVar[list[int]] = []
    fail_at: ClassVar[int] = 0  # the call that raises (0: none)

    @staticmethod
    def probe() -> None:
        pass

    def evaluate(self, phenotype, batch):
        FreezeWatch.seen.append(gc.get_freeze_count())
        FreezeWatch.probe()
        if len(FreezeWatch.seen) == FreezeWatch.fail_at:
            raise RuntimeError("this objective failed")
        w = phenotype.weights[0]
        return {self.name: w.reshape(w.shape[0], -1)[:, 0].abs()}


class _Cycle:
    """A reference cycle: freed only by the garbage collector."""

    def __init__(self):
        self.me = self


def test_the_loop_runs_with_its_setup_frozen_and_gives_it_back(tmp_path, monkeypatch):
    # What exists when the generations start is left out of full collections while
    # they run, and handed back to the collector when the loop ends, however it ends;
    # garbage is collected first, not kept frozen.
    monkeypatch.setitem(OBJECTIVES, "freezewatch", FreezeWatch)
    monkeypatch.setattr(FreezeWatch, "seen", [])
    assert gc.get_freeze_count() == 0
    alive: list[bool] = []
    cfg = tiny(task={"objectives": ["digits", "freezewatch"]}, generations=3)
    gc.disable()  # no collection but the run's own before the loop
    try:
        dead = weakref.ref(_Cycle())  # garbage, in a cycle, when the run starts
        monkeypatch.setattr(FreezeWatch, "probe", lambda: alive.append(dead() is not None))
        new_run(cfg, tmp_path / "a", progress=False)
    finally:
        gc.enable()
    # Every generation scores inside the loop; the run's last summary comes after it.
    assert sum(n > 1000 for n in FreezeWatch.seen) >= 3 and FreezeWatch.seen[-1] == 0
    assert gc.get_freeze_count() == 0 and alive and not any(alive)
    monkeypatch.setattr(FreezeWatch, "seen", [])
    monkeypatch.setattr(FreezeWatch, "fail_at", 2)
    with pytest.raises(RuntimeError, match="this objective failed"):
        new_run(cfg, tmp_path / "b", progress=False)
    assert gc.get_freeze_count() == 0
    # A process that froze objects of its own keeps them frozen, and its count.
    monkeypatch.setattr(FreezeWatch, "seen", [])
    monkeypatch.setattr(FreezeWatch, "fail_at", 0)
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        new_run(cfg, tmp_path / "c", progress=False)
        # (Frozen objects that die on their own leave the count.)
        assert len(FreezeWatch.seen) > 0 and max(FreezeWatch.seen) <= frozen
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def test_pareto_front_helper_matches_a_loop():
    f = torch.tensor([[1.0, 5.0], [2.0, 2.0], [3.0, 3.0], [5.0, 1.0], [1.0, 5.0], [4.0, 4.0]])
    want = [i for i in range(len(f)) if not any(_dominates(g.tolist(), f[i].tolist()) for g in f)]
    assert pareto_front(f).tolist() == want


def test_pareto_mode_writes_a_non_dominated_set(tmp_path):
    from genome.files import load_genome

    cfg = tiny(
        task={"objectives": ["digits", "wiring"], "mode": "pareto"},
        algorithm={"name": "ga", "population_size": 8},
    )
    res = new_run(cfg, tmp_path, progress=False)
    files = sorted((res.run_dir / "pareto").glob("*.genome"))
    assert files
    fits = [load_genome(p).fitness for p in files]
    points = [[f["digits"], f["wiring"]] for f in fits]
    for a in points:
        assert not any(_dominates(b, a) for b in points)
    assert load_genome(files[0]).lineage["run"] == res.run_dir.name


def test_wiring_objective_lowers_wiring_cost(tmp_path):
    cfg = tiny(
        task={"objectives": ["digits", "wiring"], "weights": [0.0, 1.0]},
        generations=30,
        algorithm={"name": "snes", "population_size": 8, "stdev_init": 0.3},
    )
    r = rows(new_run(cfg, tmp_path, progress=False).run_dir)
    first, last = float(r[0]["wiring_mean"]), float(r[-1]["wiring_mean"])
    assert last < 0.75 * first


def test_gradient_lowers_the_loss(tmp_path):
    cfg = tiny(
        generations=30,
        batch_size=128,
        algorithm={"name": "gradient", "population_size": 1, "learning_rate": 0.05},
    )
    r = rows(new_run(cfg, tmp_path, progress=False).run_dir)
    loss = [float(x["digits_mean"]) for x in r]
    assert sum(loss[-5:]) / 5 < 0.8 * sum(loss[:5]) / 5


def test_gradient_cosine_schedule_decays_to_zero(tmp_path):
    cfg = tiny(
        generations=6,
        algorithm={"name": "gradient", "population_size": 1, "lr_schedule": "cosine"},
    )
    res = new_run(cfg, tmp_path, progress=False)
    assert res.generation == 6
    from evo.search.gradient import GradientEngine

    problem = build.build_problem(config.resolve(config.validate(cfg)))
    engine = GradientEngine(problem, {"learning_rate": 0.2, "lr_schedule": "cosine"}, 6)
    assert [round(engine.lr(g), 6) for g in (0, 3, 6)] == [0.2, 0.1, 0.0]
    with pytest.raises(config.ConfigError, match=r"algorithm\.lr_schedule: 'step' is not valid"):
        tiny(algorithm={"name": "gradient", "population_size": 1, "lr_schedule": "step"})


def test_best_genome_file_and_cli_report(tmp_path):
    from genome.files import load_genome

    res = new_run(tiny(), tmp_path, progress=False)
    g = load_genome(res.run_dir / "best.genome")
    assert torch.equal(g.genome, res.best_genome)
    assert g.lineage["seed"] == 0 and g.lineage["objectives"] == ["digits"]
    assert g.fitness["fitness"] == res.best_fitness and "test_digits_acc" in g.fitness
    out = CliRunner().invoke(app, ["report", str(res.run_dir)])
    assert out.exit_code == 0, out.output
    assert "best test_digits_acc" in out.output and "fitness.png" in out.output
    # The SNES mean at the end: the searcher's own center, scored like the best genome.
    c = load_genome(res.run_dir / "center.genome")
    state = read_state(res.run_dir)
    engine_center = load_checkpoint(res.run_dir, "snes")[0]["distribution"]["mu"]
    assert torch.equal(c.genome, engine_center) and c.lineage["genome"] == "center"
    assert c.lineage["generation"] == state["generation"] - 1 and "test_digits_acc" in c.fitness
    assert "center test_digits_acc" in out.output


def test_cli_evolve_with_overrides(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(config.dumps(tiny()))
    out = CliRunner().invoke(
        app,
        [
            "evolve",
            str(cfg),
            "--generations",
            "2",
            "--population",
            "6",
            "--seed",
            "4",
            "--out",
            str(tmp_path / "runs"),
            "--quiet",
        ],
    )
    assert out.exit_code == 0, out.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("digits__gnet__s4__") and len(rows(run)) == 2
    saved = config.load(run / "config.toml")
    assert saved["algorithm"]["population_size"] == 6 and saved["generations"] == 2


def test_demo_evolves_and_reports_real_faces(tmp_path):
    # The README's first command, shortened: it names the best genome and scores it on LFW.
    out = CliRunner().invoke(app, ["demo", "--generations", "2", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "(111x compression)" in out.output
    best = re.search(r"best genome: (\S+)", out.output)
    assert best and Path(best[1]).is_file()
    load_genome(best[1])  # a valid genome file
    scores = re.search(r"on real LFW faces .*: accuracy ([\d.]+), ROC-AUC ([\d.]+)", out.output)
    assert scores and 0 <= float(scores[1]) <= 1 and 0 <= float(scores[2]) <= 1


def test_the_plot_finds_an_objective_whose_name_has_an_underscore(tmp_path):
    from evo.report import plot_run, read_metrics, run_objectives

    header = "generation,fitness_best,fitness_mean,best_so_far,few_shot_best,few_shot_mean"
    header += ",few_shot_acc_best,few_shot_acc_mean"
    (tmp_path / "metrics.csv").write_text(header + "\n0,1.0,1.5,1.0,1.0,1.5,0.5,0.4\n")
    (tmp_path / "config.toml").write_text('[task]\nobjectives = ["few_shot"]\n')
    assert run_objectives(tmp_path, read_metrics(tmp_path)) == ["few_shot"]
    (tmp_path / "config.toml").unlink()  # without a config: the registry's names only
    assert run_objectives(tmp_path, read_metrics(tmp_path)) == []
    assert plot_run(tmp_path, ["few_shot"]).is_file()
