"""The Pareto archive: non-dominated on its fixed data, each genome scored once, the
crowded leave first, the search unchanged unless it feeds members back (then they
replace the population's lowest-ranked), and a resumed run keeps the same archive."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from conftest import TINY, changed

from evo import build, config
from evo.build import make_engine
from evo.checkpoint import read_state
from evo.driver import new_run, resume_run
from evo.search.archive import ParetoArchive
from evo.search.engine import EvoEngine
from evo.search.pareto import crowding_distance, pareto_front
from genome.files import load_genome

PARETO = changed(
    TINY,
    task={"objectives": ["digits", "wiring"], "mode": "pareto"},
    algorithm={"name": "ga", "population_size": 8},
    archive={"batch_size": 300, "every": 2},
)


def cfg_of(**changes: Any) -> dict[str, Any]:
    return config.resolve(config.validate(changed(PARETO, **changes), "test"), "test")


def _dominated(points: torch.Tensor) -> list[bool]:
    a, b = points[:, None, :], points[None, :, :]
    return ((b <= a).all(dim=2) & (b < a).any(dim=2)).any(dim=1).tolist()


def test_crowding_distance_matches_nsga2_by_hand():
    f = torch.tensor([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(f)
    assert math.isinf(d[0]) and math.isinf(d[3])
    # Neighbours' gaps over each objective's span: (2 - 0)/4 + (4 - 1)/4, (4 - 1)/4 + (2 - 0)/4.
    assert d[1].item() == pytest.approx(0.5 + 0.75) and d[2].item() == pytest.approx(1.25)
    assert torch.isinf(crowding_distance(f[:2])).all()


def _population(problem, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n random genomes whose minibatch evals put them all on the first front."""
    g = torch.Generator().manual_seed(seed)
    values = problem.decoder.init(n, g, torch.float32)
    evals = torch.zeros(n, problem.n_objectives + len(problem.columns))
    evals[:, 0] = torch.arange(n, dtype=torch.float32)
    evals[:, 1] = -torch.arange(n, dtype=torch.float32)
    return values, evals


def test_members_are_the_non_dominated_offers_on_the_archive_data(monkeypatch):
    cfg = cfg_of()
    problem = build.build_problem(cfg)
    archive = ParetoArchive(problem, batch_size=300, size=100)
    values, evals = _population(problem, 24, seed=1)
    entered = archive.offer(values[:12], evals[:12], generation=0)
    entered += archive.offer(values[12:], evals[12:], generation=2)
    assert 0 < len(archive) <= entered  # later genomes may push out earlier ones
    # Every offered genome scored on the archive's data: the members are exactly
    # the non-dominated ones.
    fit, _ = problem.fitness(problem.score(values, 0, data=archive.data()))
    front = set(pareto_front(fit).tolist())
    genomes, member_evals, born = archive.members()
    assert len(front) == len(archive)
    for row, score in zip(genomes, member_evals, strict=True):
        i = next(i for i in range(len(values)) if torch.equal(values[i], row))
        assert i in front and torch.equal(score[:2], fit[i])
        assert born[genomes.tolist().index(row.tolist())] == (0 if i < 12 else 2)
    assert not any(_dominated(member_evals[:, :2]))
    # The archive's data is one fixed draw, never a generation's batch.
    x, _ = archive.data()[0]
    assert x.shape[0] == 300 and not torch.equal(x[:64], problem.data(0)[0][0])
    # A genome seen once is not scored again.
    calls = []
    score = problem.score
    monkeypatch.setattr(problem, "score", lambda *a, **k: calls.append(1) or score(*a, **k))
    assert archive.offer(values, evals, generation=4) == 0 and not calls


def test_a_full_archive_drops_the_most_crowded_and_keeps_the_ends():
    problem = build.build_problem(cfg_of())
    archive = ParetoArchive(problem, batch_size=300, size=4)
    d = problem.solution_length
    # Seven points on a front; 1, 2 and 3 are bunched near 0.
    xs = torch.tensor([0.0, 0.1, 0.2, 0.3, 2.0, 4.0, 6.0])
    evals = torch.zeros(7, problem.n_objectives + len(problem.columns))
    evals[:, 0], evals[:, 1] = xs, 6.0 - xs
    archive.add(torch.arange(7.0)[:, None].expand(7, d), evals, generation=0)
    kept = archive.members()[1][:, 0].tolist()
    assert kept == [0.0, 2.0, 4.0, 6.0]  # the bunch leaves; the ends stay
    # A dominated newcomer does not enter; one that dominates a member replaces it.
    worse, better = evals[4:5].clone() + 1.0, evals[4:5].clone() - 0.5
    archive.add(torch.full((1, d), 9.0), worse, generation=1)
    assert 9.0 not in archive.members()[0][:, 0].tolist()
    archive.add(torch.full((1, d), 8.0), better, generation=2)
    genomes, _, born = archive.members()
    assert 8.0 in genomes[:, 0].tolist() and 4.0 not in genomes[:, 0].tolist()
    assert born.tolist().count(2) == 1


def test_only_the_first_front_of_valid_genomes_is_offered():
    problem = build.build_problem(cfg_of())
    archive = ParetoArchive(problem, batch_size=300, size=100)
    values, evals = _population(problem, 6, seed=3)
    evals[:, 0] = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    evals[:, 1] = torch.tensor([5.0, 4.0, 3.0, 9.0, 9.0, 0.0])  # 3 and 4 are dominated
    evals[5, -1] = 1.0  # non-finite
    archive.offer(values, evals, 0)
    genomes = archive.members()[0]
    offered = {i for i in range(6) if any(torch.equal(values[i], g) for g in genomes)}
    assert offered <= {0, 1, 2} and len(archive.seen) == 3


def test_a_run_writes_its_archive_and_searches_as_without_one(tmp_path):
    cfg = cfg_of(generations=5)
    with_archive = new_run(cfg, tmp_path / "a", progress=False)
    without = new_run(
        cfg_of(generations=5, archive={"batch_size": 0}), tmp_path / "b", progress=False
    )
    assert torch.equal(with_archive.best_genome, without.best_genome)
    problem = build.build_problem(cfg)
    archive = build.build_archive(cfg, problem)
    files = sorted((with_archive.run_dir / "pareto").glob("*.genome"))
    assert files
    genomes = torch.stack([load_genome(p).genome for p in files])
    fit, data = problem.fitness(problem.score(genomes, 0, data=archive.data()))
    for k, p in enumerate(files):
        gf = load_genome(p)
        assert gf.lineage["archive_batch_size"] == 300
        assert gf.lineage["generation"] in (0, 2, 4)
        # The file's fitness is its score on the archive's data.
        assert gf.fitness["digits"] == pytest.approx(float(data[k, 0]))
        assert gf.fitness["wiring"] == pytest.approx(float(fit[k, 1]))
    assert not any(_dominated(fit))
    with open(with_archive.run_dir / "metrics.csv") as f:
        header = f.readline().strip().split(",")
    assert "archive_size" in header


def test_returned_members_are_those_not_in_the_population_most_isolated_first():
    problem = build.build_problem(cfg_of())
    archive = ParetoArchive(problem, batch_size=300, size=100, feed=3)
    d = problem.solution_length
    xs = torch.tensor([0.0, 0.1, 0.2, 1.0, 3.0, 5.0, 6.0])
    evals = torch.zeros(7, problem.n_objectives + len(problem.columns))
    evals[:, 0], evals[:, 1] = xs, 6.0 - xs
    genomes = torch.arange(7.0)[:, None].expand(7, d).contiguous()
    archive.add(genomes, evals, generation=0)
    # Genome 0 (one end) is already in the population: the other end comes first,
    # then the least crowded of the middle (4, then 5; 3 would be next, 1 and 2 are bunched).
    back = archive.returns(torch.cat([genomes[:1], torch.full((2, d), 9.0)]))
    assert back[:, 0].tolist() == [6.0, 4.0, 5.0]
    assert archive.returns(genomes).shape == (0, d)  # all present: none go back
    assert ParetoArchive(problem, batch_size=300, size=100).returns(genomes[:1]).shape[0] == 0


def test_fed_members_are_scored_with_the_parents_next_step():
    # Which genomes they replace: test_evo_algorithms.py (replace_worst).
    cfg = cfg_of(archive__feed=3)
    problem = build.build_problem(cfg)
    engine = make_engine(problem, cfg)
    engine.step(0)
    fed = torch.full((3, problem.solution_length), 0.01)
    fed[:, 0] = torch.tensor([1.0, 2.0, 3.0])
    engine.replace_worst(fed)
    values, evals = engine.step(1)
    scored = {tuple(v.tolist()) for v in values}
    assert {tuple(v.tolist()) for v in fed} <= scored and torch.isfinite(evals).all()


def test_a_run_that_feeds_its_archive_searches_from_it(tmp_path):
    # Small batches: members fall out of the population, so some go back.
    small = {"generations": 8, "batch_size": 8, "archive__every": 1}
    fed = new_run(cfg_of(**small, archive__feed=3), tmp_path / "a", progress=False)
    plain = new_run(cfg_of(**small), tmp_path / "b", progress=False)

    def front(run_dir):
        return {tuple(load_genome(p).genome.tolist()) for p in (run_dir / "pareto").glob("*")}

    assert front(fed.run_dir) != front(plain.run_dir)


@pytest.mark.parametrize(
    "feeding",
    [{}, {"batch_size": 8, "archive__every": 1, "archive__feed": 3}],
    ids=["records", "feeds"],
)
def test_a_resumed_run_keeps_the_archive_of_an_uninterrupted_one(tmp_path, feeding, monkeypatch):
    cfg = cfg_of(generations=6, checkpoint_every=1, **feeding)
    fed = []
    replace = EvoEngine.replace_worst
    monkeypatch.setattr(
        EvoEngine, "replace_worst", lambda self, g: fed.append(len(g)) or replace(self, g)
    )
    whole = new_run(cfg, tmp_path / "whole", progress=False)
    assert (sum(fed) > 0) == bool(feeding)  # the "feeds" case does feed
    part = new_run(config.override(cfg, generations=3), tmp_path / "part", progress=False)
    resumed = resume_run(part.run_dir, progress=False, generations=6)

    def front(run_dir):
        return [load_genome(p).genome for p in sorted((run_dir / "pareto").glob("*.genome"))]

    a, b = front(whole.run_dir), front(resumed.run_dir)
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # The checkpoint carries the archive: members and every genome it has seen.
    kept, again = read_state(whole.run_dir)["archive"], read_state(resumed.run_dir)["archive"]
    assert kept["seen"] == again["seen"] and len(kept["seen"]) > len(a)
    assert torch.equal(kept["genomes"], again["genomes"])
    assert torch.equal(kept["generations"], again["generations"])
