"""Run configuration: a TOML file, validated whole before anything starts.

Layout of a config (every key but ``task.objectives`` has a default)::

    seed = 0                 generations = 100        batch_size = 256
    eval_every = 10          checkpoint_every = 10    device = "cpu"
    final_batch_size = 1024  # optional: generation g draws batch_size + (final_batch_size
    batch_ramp = 4000        # - batch_size) * min(1, g / batch_ramp) examples (default
                             # ramp: the run's generations, fixed when it starts)
    workers = 0              # Ray actors; 0 = in-process (all CPUs if address is set); "max";
                             # "auto": in-process on one machine, on a cluster actors
                             # when they would pay (evo.cluster.auto_workers)
    address = ""             # "" = local; "auto" or "host:port" joins a Ray cluster
    init = ""                # "" = random; or a .genome file of the same decoder and
                             # layout to start from, or (GA) a list of them (see
                             # `load_init`; relative to the working directory)
    thread_invariant = false # true: MKL's products give the same bits on any number
                             # of threads (its strict mode, evo/numerics.py)

    [task]                             # what the population is selected on
    objectives = ["digits", "wiring"]  # evo.objectives.OBJECTIVES
    weights = [1.0, 0.01]              # weighted sum; in Pareto mode, picks best.genome
    mode = "weighted"                  # or "pareto" (algorithm "ga" only)

    [objectives.digits]                # each objective's own settings (evo/objectives/)
    dataset = "digits"                 # digits | mnist
    augment = "none"                   # training batches: none | shift (+-2 px); faces: none

    [layout]                           # input and output come from the data objective
    hidden = [64]

    [decoder]
    name = "gnet"                      # genome.decoders.DECODERS
    compression = 0.0                  # > 0: the widest decoder with at least this ratio
    settings = { hidden = [16, 16] }   # the decoder's own settings

    [algorithm]
    name = "snes"                      # evo.search.ALGORITHMS
    population_size = 32               # ...and the searcher's own keyword arguments

    [archive]                          # Pareto mode: the run's front on fixed data (evo/search/archive.py)
    batch_size = 0                     # training examples its members are scored on; 0 = none
    every = 10                         # generations between offers of the population's front
    size = 0                           # most members kept; 0 = algorithm.population_size
    feed = 0                           # up to this many members back into the population per offer

`task.dataset` and `task.augment`, where older configs set the data
objective's settings, are still read into its table.

Every error names the file, the field, and the valid values or keys; each
section has its defaults and checks in evo/sections.py, and what differs
between searchers or objectives is checked by their own classes. `resolve` fills in every default and
derived value (layout input and output, the decoder's full settings, the
algorithm's defaults), and the resolved config is what a run directory keeps
(evo/rundir.py), so `--resume` needs nothing else. Building the run's objects
from it is evo/build.py.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from evo import search, sections
from evo.objectives import OBJECTIVES
from evo.sections import ConfigError, fail


def validate(raw: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """A config with every default filled in; raises ConfigError naming the fault."""
    if not isinstance(raw, dict):
        sections.fail(source, "top level", "must be a table")
    sections.check_keys(
        source, "", raw, [*sections.TOP, *sections.SECTIONS, "algorithm", "objectives"]
    )
    cfg = sections.top(raw, source)
    for name, defaults in sections.SECTIONS.items():
        sec = raw.get(name, {})
        if not isinstance(sec, dict):
            sections.fail(source, name, "must be a table")
        sections.check_keys(source, name, sec, list(defaults))
        cfg[name] = {**copy.deepcopy(defaults), **copy.deepcopy(sec)}
    sections.task(cfg["task"], source)
    cfg["objectives"] = sections.objectives(cfg["task"], raw.get("objectives", {}), source)
    cfg["algorithm"] = sections.algorithm(raw.get("algorithm", {}), source)
    sections.mode(cfg, source)
    sections.init_count(cfg, source)
    sections.archive(cfg, source)
    sections.layout(cfg["layout"], source)
    sections.decoder(cfg["decoder"], source)
    return cfg


def resolve(
    cfg: dict[str, Any], source: str = "config", *, check_init: bool = True
) -> dict[str, Any]:
    """Fill in what depends on the task and decoder (layout input/output, decoder settings).

    `check_init=False` leaves the `init` file unread (a resumed run has its own copy).
    """
    from evo import build

    cfg = copy.deepcopy(cfg)
    obj = build.data_objective(cfg)
    lay = cfg["layout"]
    shape, n_out = list(obj.input_shape), int(obj.n_outputs)
    for key, want in (("input", shape), ("output", n_out)):
        if lay[key] is not None and lay[key] != want:
            fail(source, f"layout.{key}", f"the task {obj.name!r} needs {want!r}, got {lay[key]!r}")
    lay["input"], lay["output"] = shape, n_out
    most = obj.max_batch_size
    sizes = {k: cfg[k] for k in ("batch_size", "final_batch_size")}
    sizes["archive.batch_size"] = cfg["archive"]["batch_size"]
    for key, size in sizes.items():
        if most is not None and size is not None and size > most:
            fail(
                source,
                key,
                f"the {obj.dataset!r} training set has {most} examples; valid values: 1 to "
                f"{most}, got {size}",
            )
    try:
        decoder = build.build_decoder(cfg)
    except ValueError as e:
        raise ConfigError(f"{source}: decoder: {e}") from e
    cfg["decoder"]["settings"] = decoder.settings
    try:
        obj.check_layers(decoder.layout.n_layers)
    except ValueError as e:
        raise ConfigError(f"{source}: objectives.{obj.name}.{e}") from None
    n = cfg["algorithm"]["population_size"]
    for what, size in (("genes", decoder.genome_length()), ("weights", decoder.layout.n_params)):
        if n * size > sections.MAX_POPULATION_ELEMENTS:
            fail(
                source,
                "algorithm.population_size",
                f"{n} genomes of {size} {what} hold {n * size} numbers, above the bound of "
                f"{sections.MAX_POPULATION_ELEMENTS}; make the population or the layout smaller",
            )
    try:
        search.algorithm(cfg["algorithm"]["name"]).check_genome(
            decoder.genome_length(), cfg["algorithm"]
        )
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    if cfg["init"] and check_init:
        cfg["init"] = [str(Path(p).expanduser().resolve()) for p in cfg["init"]]
        build.load_init(cfg, source)
    return cfg


def load(path: str | Path, *, check_init: bool = True, saved_run: bool = False) -> dict[str, Any]:
    """A validated, resolved config from a TOML file.

    `saved_run`: the file is a run directory's config.toml. Such a file holds
    every setting its run used, so a setting it lacks dates from before that
    setting existed and takes the value runs had then, not today's default
    (faces data: "fresh", rendered every generation, before the bank).
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    if saved_run and "faces" in raw.get("task", {}).get("objectives", []):
        tables = raw.setdefault("objectives", {})
        if isinstance(tables, dict) and isinstance(tables.setdefault("faces", {}), dict):
            tables["faces"].setdefault("data", "fresh")
    return resolve(validate(raw, str(path)), str(path), check_init=check_init)


def override(
    cfg: dict[str, Any], source: str = "command line", *, check_init: bool = True, **values: Any
) -> dict[str, Any]:
    """cfg with command-line overrides (None = keep); population sets algorithm.population_size."""
    raw = copy.deepcopy(cfg)
    pop = values.pop("population", None)
    if pop is not None:
        raw["algorithm"]["population_size"] = pop
    raw.update({k: v for k, v in values.items() if v is not None})
    return resolve(validate(raw, source), source, check_init=check_init)


def dumps(cfg: dict[str, Any]) -> str:
    """The config as TOML (None values, i.e. EvoTorch's own defaults, left out)."""

    def clean(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: clean(v) for k, v in d.items() if v is not None}
        if isinstance(d, list | tuple):
            return [clean(v) for v in d]
        return d

    return tomli_w.dumps(clean(cfg))


def data_objective_name(cfg: dict[str, Any]) -> str:
    """The objective that reads data (faces, digits, fewshot): it fixes the layout and names
    the run."""
    return next(o for o in cfg["task"]["objectives"] if OBJECTIVES[o].has_data)


__all__ = ["ConfigError", "data_objective_name", "dumps", "load", "override", "resolve", "validate"]
