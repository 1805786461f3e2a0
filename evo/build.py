"""From a resolved config to the objects of a run: objectives, decoder, problem, engine.

Every builder reads a config that `evo.config.resolve` has checked and filled
in; what differs between searchers (the engine, whether Ray is used) comes from
their registry entry in evo.search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evo.config import ConfigError, data_objective_name
from evo.objectives import Objective, make_objective
from evo.problem import GenomeProblem
from evo.rundir import kept_init
from evo.search import Engine, algorithm
from evo.search.archive import ParetoArchive
from genome.decoders import Decoder, decoder_class, make_decoder
from genome.layout import Layout


def _objective(cfg: dict[str, Any], name: str) -> Objective:
    settings = {"batch_size": cfg["batch_size"], "device": cfg["device"], "seed": cfg["seed"]}
    return make_objective(name, **settings, **cfg["objectives"][name])


def make_objectives(cfg: dict[str, Any]) -> list[Objective]:
    return [_objective(cfg, name) for name in cfg["task"]["objectives"]]


def data_objective(cfg: dict[str, Any]) -> Objective:
    """The objective that reads data: its input shape and classes fix the layout."""
    return _objective(cfg, data_objective_name(cfg))


def build_layout(cfg: dict[str, Any]) -> Layout:
    lay = cfg["layout"]
    return Layout.build(lay["input"], lay["hidden"], lay["output"])


def build_decoder(cfg: dict[str, Any]) -> Decoder:
    dec = cfg["decoder"]
    layout = build_layout(cfg)
    if dec["compression"] > 0:
        return decoder_class(dec["name"]).for_compression(
            layout, dec["compression"], **dec["settings"]
        )
    return make_decoder(dec["name"], layout, **dec["settings"])


def ray_workers(cfg: dict[str, Any]) -> int | str:
    """Ray actors of a run: `workers`, or every CPU of the cluster when only `address` is set.

    A searcher whose entry is `in_process` (the gradient optimiser) never uses
    Ray. "auto" stays "auto" on a cluster (the driver measures and chooses,
    `evo.cluster.auto_workers`) and is in-process on one machine.
    """
    if algorithm(cfg["algorithm"]["name"]).in_process:
        return 0
    if cfg["workers"] == "auto":
        return "auto" if cfg["address"] else 0
    return cfg["workers"] or ("max" if cfg["address"] else 0)


def build_problem(
    cfg: dict[str, Any], run_dir: Path | None = None, workers: int | str | None = None
) -> GenomeProblem:
    """The problem of a resolved config (connect Ray first when `ray_workers(cfg)`).

    `workers` overrides the config's (what "auto" chose).
    """
    workers = ray_workers(cfg) if workers is None else workers
    if workers == "auto":
        raise ValueError('workers = "auto" is chosen by the driver; pass the choice as workers')
    return GenomeProblem(
        build_decoder(cfg),
        make_objectives(cfg),
        weights=cfg["task"]["weights"],
        mode=cfg["task"]["mode"],
        seed=cfg["seed"],
        device=cfg["device"],
        workers=workers,
        init=load_init(cfg, run_dir=run_dir),
        batch_schedule=batch_schedule(cfg),
        thread_invariant=cfg.get("thread_invariant", False),
    )


def build_archive(cfg: dict[str, Any], problem: GenomeProblem) -> ParetoArchive | None:
    """The run's Pareto archive (None: the config keeps none)."""
    arc = cfg["archive"]
    if not arc["batch_size"]:
        return None
    size = arc["size"] or cfg["algorithm"]["population_size"]
    return ParetoArchive(
        problem,
        batch_size=arc["batch_size"],
        size=max(size, 2),
        every=arc["every"],
        feed=arc["feed"],
    )


def batch_schedule(cfg: dict[str, Any]) -> tuple[int, int, int] | None:
    """(first, final, ramp) of a config whose batch grows, else None (a constant batch)."""
    final = cfg["final_batch_size"]
    if final is None or final == cfg["batch_size"]:
        return None
    return cfg["batch_size"], final, cfg["batch_ramp"] or cfg["generations"]


def make_engine(problem: GenomeProblem, cfg: dict[str, Any]) -> Engine:
    """The engine of the config's searcher on `problem` (EvoTorch settings left unset stay out)."""
    settings = dict(cfg["algorithm"])
    entry = algorithm(settings.pop("name"))
    settings = {k: v for k, v in settings.items() if v is not None}
    return entry.make_engine(problem, settings, cfg["generations"])


def load_init(
    cfg: dict[str, Any], source: str = "config", run_dir: Path | None = None
) -> torch.Tensor | None:
    """The genomes [K, D] a run starts from (`init`), or None for a random start.

    Each file must hold a genome of the run's decoder, settings and layout. A
    distribution-based searcher takes the one genome as its first center, the
    gradient optimiser as its first genome; the GA starts from a population of
    copies (of the K genomes in turn) that its mutations spread out. A run
    directory keeps its own copies (`init/000.genome`, ...), which are read in
    preference to the originals.
    """
    if not cfg["init"]:
        return None
    from genome.files import GenomeFileError, load_genome

    decoder = build_decoder(cfg)
    ours = (decoder.name, decoder.settings, decoder.layout.describe())
    genomes = []
    for i, original in enumerate(cfg["init"]):
        kept = None if run_dir is None else kept_init(run_dir, i)
        path = original if kept is None else kept
        try:
            gf = load_genome(path)
        except GenomeFileError as e:
            raise ConfigError(f"{source}: init: {e}") from None
        theirs = (gf.decoder.name, gf.decoder.settings, gf.layout.describe())
        if theirs != ours:
            raise ConfigError(
                f"{source}: init: "
                f"{path} holds a {theirs[0]} genome with settings {theirs[1]} on layout "
                f"{theirs[2]}; this run needs {ours[0]} with settings {ours[1]} on layout "
                f"{ours[2]}",
            )
        genomes.append(gf.genome)
    return torch.stack(genomes)
