"""GA settings: out-of-range values fail naming the field and what is valid;
`re_evaluate = false` scores only the children after the first generation;
NSGA-II survival keeps each front's least crowded genomes, its ends first."""

from __future__ import annotations

import csv
from typing import Any

import pytest
import torch
from conftest import TINY as BASE
from conftest import changed

from evo import build, config
from evo.build import make_engine
from evo.driver import new_run
from evo.problem import STREAM_SEARCH, GenomeProblem
from evo.search import ALGORITHMS
from evo.search.nsga2 import NSGA2, best_first, check_ga
from tasks.seeds import derive_seed

# The shared tiny run, as a Pareto GA on digits and wiring.
TINY = changed(
    BASE,
    task__objectives=["digits", "wiring"],
    task__mode="pareto",
    algorithm__name="ga",
)


def ga(**changes: Any) -> dict[str, Any]:
    return {**ALGORITHMS["ga"].defaults, **changes}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ga(mutation_probability=1.5),
            "algorithm.mutation_probability: must be a number in [0, 1], got 1.5",
        ),
        (ga(mutation_stdev=0.0), "algorithm.mutation_stdev: must be a number > 0, got 0.0"),
        (ga(eta=-1), "algorithm.eta: must be a number > 0, got -1"),
        (ga(tournament_size=2.5), "algorithm.tournament_size: must be an integer >= 1, got 2.5"),
        (ga(re_evaluate="no"), "algorithm.re_evaluate: must be true or false, got 'no'"),
    ],
)
def test_ga_settings_out_of_range_name_the_field(settings, message):
    with pytest.raises(ValueError) as err:
        check_ga(settings)
    assert str(err.value) == message


def test_ga_defaults_pass_and_re_evaluate_is_a_config_key():
    check_ga(ga())
    cfg = config.validate(changed(TINY, algorithm__re_evaluate=False), "test")
    assert cfg["algorithm"]["re_evaluate"] is False
    with pytest.raises(config.ConfigError, match=r"algorithm\.re_evaluate: must be true or false"):
        config.validate(changed(TINY, algorithm__re_evaluate="yes"), "test")


@pytest.mark.parametrize(
    ("re_evaluate", "per_generation"), [(True, [16, 16, 16]), (False, [16, 8, 8])]
)
def test_re_evaluate_false_scores_only_the_children(tmp_path, re_evaluate, per_generation):
    cfg = config.resolve(
        config.validate(changed(TINY, algorithm__re_evaluate=re_evaluate), "test"), "test"
    )
    run_dir = new_run(cfg, tmp_path, progress=False).run_dir
    with open(run_dir / "metrics.csv", newline="") as f:
        evaluations = [int(r["evaluations"]) for r in csv.DictReader(f)]
    assert evaluations == per_generation


# --- starting from a genome file (`init`) ---------------------------------------
def _resolved(raw: dict[str, Any]) -> dict[str, Any]:
    return config.resolve(config.validate(raw, "test"), "test")


@pytest.fixture(scope="module")
def evolved(tmp_path_factory) -> tuple[Any, Any]:
    """A genome file from a short SNES run on digits, and the tensor it holds."""
    from genome.files import load_genome

    out = tmp_path_factory.mktemp("init")
    res = new_run(_resolved(BASE), out, progress=False)
    return res.best_path, load_genome(res.best_path).genome


def test_every_searcher_starts_from_the_init_genome(evolved):
    from evo.search.engine import EvoEngine
    from evo.search.gradient import GradientEngine
    from genome.files import load_genome

    path, genome = evolved
    for name in ("snes", "cmaes", "pgpe"):
        cfg = _resolved(changed(BASE, init=str(path), algorithm__name=name))
        engine = EvoEngine(build.build_problem(cfg), name, {"population_size": 8})
        assert torch.equal(engine.center(), genome), name
    cfg = _resolved(changed(TINY, init=str(path)))
    engine = EvoEngine(build.build_problem(cfg), "ga", {"population_size": 8})
    values, _ = engine.population()
    assert torch.equal(values, genome.expand(8, -1))  # copies, which mutation spreads out
    # Several genomes seed a GA's population in turn.
    center = load_genome(path.parent / "center.genome").genome
    assert not torch.equal(center, genome)
    cfg = _resolved(changed(TINY, init=[str(path), str(path.parent / "center.genome")]))
    engine = EvoEngine(build.build_problem(cfg), "ga", {"population_size": 5})
    values, _ = engine.population()
    assert torch.equal(values, torch.stack([genome, center, genome, center, genome]))
    cfg = _resolved(
        changed(BASE, init=str(path), algorithm={"name": "gradient", "population_size": 1})
    )
    engine = GradientEngine(build.build_problem(cfg), {})
    assert torch.equal(engine.center(), genome)


def test_the_problem_refuses_init_genomes_of_the_wrong_shape():
    from evo.problem import GenomeProblem

    cfg = _resolved(BASE)
    decoder = build.build_decoder(cfg)
    d = decoder.genome_length()
    for bad in (torch.zeros(d + 1), torch.zeros(2, d - 1), torch.zeros(0, d), torch.zeros(())):
        with pytest.raises(ValueError, match=rf"init must be genomes \[K, {d}\]"):
            GenomeProblem(decoder, build.make_objectives(cfg), init=bad)


def test_a_run_from_a_genome_records_it_and_is_reproducible(evolved, tmp_path):
    from genome.files import load_genome

    path, _ = evolved
    both = [str(path.resolve()), str((path.parent / "center.genome").resolve())]
    cfg = _resolved(changed(TINY, init=str(path)))
    assert cfg["init"] == both[:1]
    first, second = (new_run(cfg, tmp_path / k, progress=False) for k in "ab")
    assert torch.equal(first.best_genome, second.best_genome)
    assert load_genome(first.best_path).lineage["init"] == both[:1]
    front = sorted((first.run_dir / "pareto").glob("*.genome"))
    assert front
    for f in front:
        assert load_genome(f).lineage["init"] == both[:1]
    # From two genomes: reproducible, both recorded, and not the run from one.
    cfg = _resolved(changed(TINY, init=both))
    assert cfg["init"] == both
    third, fourth = (new_run(cfg, tmp_path / k, progress=False) for k in "cd")
    assert torch.equal(third.best_genome, fourth.best_genome)
    assert not torch.equal(third.best_genome, first.best_genome)
    lineage = load_genome(third.best_path).lineage
    assert lineage["init"] == both and len(lineage["init_sha256"]) == 2


def test_a_bad_init_names_the_field_and_the_mismatch(evolved, tmp_path):
    path, _ = evolved
    for bad in (3, [str(path), 3], [""]):
        with pytest.raises(
            config.ConfigError,
            match=r'init: must be a path to a \.genome file, a list of them, or ""',
        ):
            _resolved(changed(BASE, init=bad))
    with pytest.raises(
        config.ConfigError,
        match=r"test: init: 2 genomes can start only the GA's population; 'snes'",
    ):
        _resolved(changed(BASE, init=[str(path), str(path)]))
    with pytest.raises(
        config.ConfigError,
        match=r"test: init: 3 genomes for a population of 2; give at most algorithm.population",
    ):
        _resolved(
            changed(
                TINY,
                init=[str(path)] * 3,
                algorithm__population_size=2,
                algorithm__tournament_size=2,
            )
        )
    with pytest.raises(config.ConfigError, match=r"test: init: .*missing"):
        _resolved(changed(BASE, init=str(tmp_path / "missing.genome")))
    with pytest.raises(config.ConfigError, match=r"test: init: .*missing"):
        _resolved(changed(TINY, init=[str(path), str(tmp_path / "missing.genome")]))
    junk = tmp_path / "junk.genome"
    junk.write_bytes(b"not a genome")
    with pytest.raises(config.ConfigError, match=r"test: init: "):
        _resolved(changed(BASE, init=str(junk)))
    wider = changed(BASE, init=str(path), decoder__settings={"hidden": [5, 5]})
    with pytest.raises(
        config.ConfigError, match=r"init: .* holds a gnet genome .*this run needs gnet"
    ):
        _resolved(wider)


def test_cli_init_and_a_resume_that_no_longer_finds_the_original(evolved, tmp_path):
    import hashlib
    import shutil

    from typer.testing import CliRunner

    from evo.cli import app
    from evo.driver import resume_run
    from genome.files import load_genome

    path, _ = evolved
    source = tmp_path / "source.genome"
    shutil.copy(path, source)
    config_path = tmp_path / "snes.toml"
    config_path.write_text(config.dumps(_resolved(BASE)))
    out = CliRunner().invoke(
        app,
        [
            "evolve",
            str(config_path),
            "--init",
            str(source),
            "--out",
            str(tmp_path / "runs"),
            "--quiet",
        ],
    )
    assert out.exit_code == 0, out.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    # The run keeps its own copy of the genome it started from.
    assert (run_dir / "init" / "000.genome").read_bytes() == source.read_bytes()
    source.unlink()
    resumed = resume_run(run_dir, progress=False, generations=5)
    assert resumed.generation == 5
    lineage = load_genome(run_dir / "best.genome").lineage
    assert lineage["init"] == [str(source.resolve())]
    assert [len(h) for h in lineage["init_sha256"]] == [64]
    # A run directory of the older layout (one copy, `init.genome`) still resumes from it.
    shutil.move(run_dir / "init" / "000.genome", run_dir / "init.genome")
    (run_dir / "init").rmdir()
    assert resume_run(run_dir, progress=False, generations=6).generation == 6
    lineage = load_genome(run_dir / "best.genome").lineage
    assert lineage["init_sha256"] == [hashlib.sha256(path.read_bytes()).hexdigest()]
    # Resuming may not swap the genome a run started from.
    with pytest.raises(
        config.ConfigError, match=r"--resume: \['init'\] would change the run's result"
    ):
        resume_run(run_dir, progress=False, init=[str(path)])
    # --init repeated seeds a GA with several genomes, each kept in the run.
    config_path.write_text(config.dumps(_resolved(TINY)))
    inits = ["--init", str(path), "--init", str(path.parent / "center.genome")]
    out = CliRunner().invoke(
        app, ["evolve", str(config_path), "--out", str(tmp_path / "ga"), "--quiet", *inits]
    )
    assert out.exit_code == 0, out.output
    (run_dir,) = (tmp_path / "ga").iterdir()
    kept = sorted(p.name for p in (run_dir / "init").iterdir())
    assert kept == ["000.genome", "001.genome"]
    assert (run_dir / "init" / "001.genome").read_bytes() == (
        path.parent / "center.genome"
    ).read_bytes()


# Two fronts, rows shuffled. Front 0 on the line y = 6 - x at x = 0, 0.1, 0.2, 3, 6:
# crowding (both objectives span 6) inf at the ends, 1.93 at 3, 0.97 at 0.2, 0.07 at
# 0.1. Front 1, each point dominated by one of front 0: (1, 7), (4, 5), (7, 1).
TWO_FRONTS = torch.tensor(
    [[0.1, 5.9], [4.0, 5.0], [6.0, 0.0], [0.2, 5.8], [1.0, 7.0], [3.0, 3.0], [7.0, 1.0], [0.0, 6.0]]
)
BEST_FIRST = [2, 7, 5, 3, 0, 4, 6, 1]  # front 0's ends, 3, 0.2, 0.1; front 1's ends, (4, 5)


def _with_evals(batch, objectives: torch.Tensor, problem) -> None:
    batch.set_evals(objectives, torch.zeros(len(objectives), len(problem.columns)))


def test_best_first_orders_by_front_then_crowding_ends_first():
    cfg = _resolved(TINY)
    problem = build.build_problem(cfg)
    engine = make_engine(problem, cfg)
    pop = engine.searcher.population
    assert isinstance(engine.searcher, NSGA2) and len(pop) == len(TWO_FRONTS)
    _with_evals(pop, TWO_FRONTS, problem)
    assert best_first(pop) == BEST_FIRST
    # replace_worst puts genomes in place of the last three: (4, 5), 0.1 and (7, 1).
    before = engine.population()[0]
    fed = torch.full((3, problem.solution_length), 0.5)
    engine.replace_worst(fed)
    after = engine.population()[0]
    for row in range(len(TWO_FRONTS)):
        replaced = row in BEST_FIRST[-3:]
        assert torch.equal(after[row], fed[0]) == replaced
        assert torch.equal(after[row], before[row]) == (not replaced)
    with pytest.raises(ValueError, match="cannot replace 8 genomes of a population of 8"):
        engine.replace_worst(torch.zeros(8, problem.solution_length))


def test_the_ga_keeps_the_best_first_of_parents_and_children():
    cfg = _resolved(TINY)
    engine = make_engine(build.build_problem(cfg), cfg)
    searcher = engine.searcher
    extended = []
    make = searcher._make_extended_population
    searcher._make_extended_population = lambda split=False: (
        extended.append(make(split)) or (extended[-1])
    )
    engine.step(0)
    (both,) = extended
    keep = best_first(both)[: len(searcher.population)]
    assert len(both) == 2 * len(searcher.population)
    assert torch.equal(searcher.population.values, both.values[keep])


@pytest.mark.parametrize("name", sorted(set(ALGORITHMS) - {"gradient"}))
def test_a_step_neither_reads_nor_moves_the_callers_global_generator(name, monkeypatch):
    # What a step draws from torch's global generator (EvoTorch code may) is seeded
    # from (seed, generation), whatever the caller's state; the caller's stream goes on.
    cfg = _resolved(changed(BASE, algorithm__name=name))
    evaluate = GenomeProblem._evaluate_batch
    drawn: list[torch.Tensor] = []

    def drawing(self, batch):
        drawn.append(torch.rand(1))
        return evaluate(self, batch)

    monkeypatch.setattr(GenomeProblem, "_evaluate_batch", drawing)

    def two_steps(global_seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        torch.manual_seed(global_seed)
        drawn.clear()
        engine = make_engine(build.build_problem(cfg), cfg)
        # A step's genomes may share the searcher's memory: copied before the next step.
        genomes = [engine.step(g)[0].clone() for g in range(2)]
        return genomes + list(drawn), torch.rand(3)

    (a, after_a), (b, _) = two_steps(1), two_steps(2)
    torch.manual_seed(1)
    assert torch.equal(after_a, torch.rand(3))
    assert len(a) > 2 and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # The first draw in the step comes from generation 0's seeded stream (CMA-ES draws
    # from it itself before it evaluates).
    first = torch.Generator().manual_seed(derive_seed(cfg["seed"], STREAM_SEARCH, 0, 1))
    assert any(torch.equal(a[2], torch.rand(1, generator=first)) for _ in range(8))
