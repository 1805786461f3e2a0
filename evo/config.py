"""Run configuration: a TOML file, validated whole before anything starts.

Layout of a config (every key but ``task.objectives`` has a default)::

    seed = 0                 generations = 100        batch_size = 256
    eval_every = 10          checkpoint_every = 10    device = "cpu"
    final_batch_size = 1024  # optional: generation g draws batch_size + (final_batch_size
    batch_ramp = 4000        # - batch_size) * min(1, g / batch_ramp) examples (default
                             # ramp: the run's generations, fixed when it starts)
    workers = 0              # Ray actors; 0 = in-process (all CPUs if address is set); "max"
    address = ""             # "" = local; "auto" or "host:port" joins a Ray cluster
    init = ""                # "" = random; or a .genome file of the same decoder and
                             # layout to start from, or (GA) a list of them (see
                             # `load_init`; relative to the working directory)

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
section has its validator, and what differs between searchers is checked by
their registry entry (`Algorithm.check`). `resolve` fills in every default and
derived value (layout input and output, the decoder's full settings, the
algorithm's defaults), and the resolved config is what a run directory keeps
(evo/rundir.py), so `--resume` needs nothing else. Building the run's objects
from it is evo/build.py.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w
import torch

from evo.objectives import OBJECTIVES
from evo.problem import MODES
from evo.search import ALGORITHMS, algorithm
from genome.decoders import DECODERS
from tasks import DATASETS

TOP = {
    "seed": 0,
    "generations": 100,
    "batch_size": 256,
    "eval_every": 10,
    "checkpoint_every": 10,
    "workers": 0,
    "address": "",
    "device": "cpu",
    "init": "",
    "final_batch_size": None,
    "batch_ramp": None,
}
SECTIONS = {
    "task": {
        "objectives": None,
        "weights": None,
        "mode": None,
        # The old place of the data objective's settings (now [objectives.NAME]).
        "dataset": None,
        "augment": None,
    },
    "layout": {"hidden": [64], "input": None, "output": None},
    "decoder": {"name": "gnet", "compression": 0.0, "settings": {}},
    "archive": {"batch_size": 0, "every": 10, "size": 0, "feed": 0},
}


class ConfigError(ValueError):
    """A config fault, naming the file, the field and what would be valid."""


def _fail(source: str, field: str, msg: str) -> None:
    raise ConfigError(f"{source}: {field}: {msg}")


def _check_keys(source: str, where: str, got: dict[str, Any], valid: list[str]) -> None:
    unknown = sorted(set(got) - set(valid))
    if unknown:
        name = where or "top level"
        _fail(source, name, f"unknown key(s) {unknown}; valid keys: {', '.join(sorted(valid))}")


def _int(source: str, field: str, v: Any, lo: int = 0) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        _fail(source, field, f"must be an integer >= {lo}, got {v!r}")
    return v


def _number(source: str, field: str, v: Any) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        _fail(source, field, f"must be a finite number, got {v!r}")
    return float(v)


def _choice(source: str, field: str, v: Any, valid: Any) -> str:
    if v not in valid:
        _fail(source, field, f"{v!r} is not valid; valid values: {', '.join(valid)}")
    return v


def validate(raw: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """A config with every default filled in; raises ConfigError naming the fault."""
    if not isinstance(raw, dict):
        _fail(source, "top level", "must be a table")
    _check_keys(source, "", raw, [*TOP, *SECTIONS, "algorithm", "objectives"])
    cfg = _top(raw, source)
    for name, defaults in SECTIONS.items():
        sec = raw.get(name, {})
        if not isinstance(sec, dict):
            _fail(source, name, "must be a table")
        _check_keys(source, name, sec, list(defaults))
        cfg[name] = {**copy.deepcopy(defaults), **copy.deepcopy(sec)}
    _task(cfg["task"], source)
    cfg["objectives"] = _objectives(cfg["task"], raw.get("objectives", {}), source)
    cfg["algorithm"] = _algorithm(raw.get("algorithm", {}), source)
    _mode(cfg, source)
    _init_count(cfg, source)
    _archive(cfg, source)
    _layout(cfg["layout"], source)
    _decoder(cfg["decoder"], source)
    return cfg


def _top(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """The top-level keys (seed, generations, batch sizes, workers, device, init)."""
    cfg: dict[str, Any] = {**TOP, **{k: v for k, v in raw.items() if k in TOP}}
    for k in ("generations", "batch_size", "eval_every", "checkpoint_every"):
        cfg[k] = _int(source, k, cfg[k], lo=1)
    cfg["seed"] = _int(source, "seed", cfg["seed"])
    for k in ("final_batch_size", "batch_ramp"):
        if cfg[k] is not None:
            cfg[k] = _int(source, k, cfg[k], lo=1)
    if cfg["batch_ramp"] is not None and cfg["final_batch_size"] is None:
        _fail(source, "batch_ramp", "sets how the batch grows: give final_batch_size too")
    if cfg["final_batch_size"] is not None and cfg["final_batch_size"] < cfg["batch_size"]:
        _fail(
            source,
            "final_batch_size",
            f"the batch only grows: must be >= batch_size ({cfg['batch_size']}), "
            f"got {cfg['final_batch_size']}",
        )
    if cfg["workers"] != "max" and (
        not isinstance(cfg["workers"], int)
        or isinstance(cfg["workers"], bool)
        or cfg["workers"] < 0
    ):
        _fail(source, "workers", f'must be an integer >= 0 or "max", got {cfg["workers"]!r}')
    if not isinstance(cfg["address"], str):
        _fail(
            source,
            "address",
            f'must be a string ("", "auto" or "host:port"), got {cfg["address"]!r}',
        )
    cfg["init"] = _init_paths(source, cfg["init"])
    try:
        torch.device(cfg["device"])
    except (RuntimeError, TypeError):
        _fail(
            source,
            "device",
            f'must be a torch device such as "cpu" or "cuda", got {cfg["device"]!r}',
        )
    return cfg


def _task(task: dict[str, Any], source: str) -> None:
    """[task]: the objectives and their weights."""
    objs = task["objectives"]
    if not isinstance(objs, list) or not objs:
        _fail(
            source,
            "task.objectives",
            f"must be a non-empty list; valid values: {', '.join(OBJECTIVES)}",
        )
    for i, o in enumerate(objs):
        _choice(source, f"task.objectives[{i}]", o, list(OBJECTIVES))
    if len(set(objs)) != len(objs):
        _fail(source, "task.objectives", f"lists an objective twice: {objs}")
    data = [o for o in objs if OBJECTIVES[o].has_data]
    if len(data) > 1:
        _fail(source, "task.objectives", f"at most one of {data} (they need different inputs)")
    if not data:
        _fail(source, "task.objectives", "needs one objective with data (faces or digits)")
    if task["weights"] is None:
        task["weights"] = [1.0] * len(objs)
    w = task["weights"]
    if not isinstance(w, list) or len(w) != len(objs):
        _fail(
            source,
            "task.weights",
            f"must be a list of {len(objs)} numbers (one per objective), got {w!r}",
        )
    task["weights"] = [_number(source, f"task.weights[{i}]", x) for i, x in enumerate(w)]


def _objectives(task: dict[str, Any], tables: Any, source: str) -> dict[str, dict[str, Any]]:
    """[objectives.NAME]: each listed objective's settings, checked by its class.

    `task.dataset` and `task.augment` (their old place) fill in the data
    objective's; `dataset` is dropped where that objective has none (faces).
    """
    if not isinstance(tables, dict):
        _fail(source, "objectives", "must hold one table per objective, e.g. [objectives.digits]")
    for name, table in tables.items():
        if name not in task["objectives"]:
            _fail(
                source,
                f"objectives.{name}",
                f"sets an objective the run does not use; task.objectives: "
                f"{', '.join(task['objectives'])}",
            )
        if not isinstance(table, dict):
            _fail(source, f"objectives.{name}", "must be a table of the objective's settings")
    data = next(o for o in task["objectives"] if OBJECTIVES[o].has_data)
    legacy = {}
    dataset, augment = task.pop("dataset"), task.pop("augment")
    if dataset is not None:
        _choice(source, "task.dataset", dataset, list(DATASETS))
        if "dataset" in OBJECTIVES[data].setting_defaults():
            legacy["dataset"] = dataset
    if augment is not None:
        legacy["augment"] = _choice(source, "task.augment", augment, OBJECTIVES[data].augments)
    out = {}
    for name in task["objectives"]:
        cls = OBJECTIVES[name]
        given = copy.deepcopy(tables.get(name, {}))
        _check_keys(source, f"objectives.{name}", given, list(cls.setting_defaults()))
        if name == data:
            for k, v in legacy.items():
                if given.get(k, v) != v:
                    _fail(
                        source,
                        f"task.{k}",
                        f"{v!r}, but objectives.{name}.{k} says {given[k]!r}; give it once, "
                        f"in [objectives.{name}]",
                    )
            given = {**legacy, **given}
        settings = {**cls.setting_defaults(), **given}
        try:
            cls.check_settings(settings)
        except ValueError as e:
            raise ConfigError(f"{source}: objectives.{name}.{e}") from None
        out[name] = settings
    return out


def _algorithm(raw: Any, source: str) -> dict[str, Any]:
    """[algorithm]: the searcher's name and its settings, checked by its registry entry."""
    if not isinstance(raw, dict):
        _fail(source, "algorithm", "must be a table")
    settings = copy.deepcopy(raw)
    name = _choice(source, "algorithm.name", settings.pop("name", "snes"), list(ALGORITHMS))
    entry = algorithm(name)
    _check_keys(source, "algorithm", {**settings, "name": name}, ["name", *entry.valid_keys()])
    settings = {**entry.defaults, **settings}
    for k, v in settings.items():
        kind = entry.setting_kind(k)
        if kind == "bool" and not isinstance(v, bool):
            _fail(source, f"algorithm.{k}", f"must be true or false, got {v!r}")
        if kind == "number":
            _number(source, f"algorithm.{k}", v)
        if kind == "str" and not isinstance(v, str):
            _fail(source, f"algorithm.{k}", f"must be a string, got {v!r}")
    settings["population_size"] = _int(
        source, "algorithm.population_size", settings["population_size"], lo=1
    )
    try:
        entry.check(settings)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    return {"name": name, **settings}


def _mode(cfg: dict[str, Any], source: str) -> None:
    """task.mode: a Pareto front where the searcher keeps one and there are several objectives."""
    task, entry = cfg["task"], algorithm(cfg["algorithm"]["name"])
    if task["mode"] is None:
        task["mode"] = "pareto" if entry.pareto and len(task["objectives"]) > 1 else "weighted"
    _choice(source, "task.mode", task["mode"], MODES)
    if task["mode"] == "pareto" and not entry.pareto:
        valid = [a.name for a in ALGORITHMS.values() if a.pareto]
        _fail(source, "task.mode", f"pareto needs algorithm.name in {valid}, got {entry.name!r}")


def _init_count(cfg: dict[str, Any], source: str) -> None:
    """init: one genome, or several where the searcher starts from a population of them."""
    settings, entry = cfg["algorithm"], algorithm(cfg["algorithm"]["name"])
    n_init = len(cfg["init"])
    if n_init > 1 and not entry.init_population:
        _fail(
            source,
            "init",
            f"{n_init} genomes can start only the GA's population; {entry.name!r} starts from "
            "one genome (give one path)",
        )
    if n_init > settings["population_size"]:
        _fail(
            source,
            "init",
            f"{n_init} genomes for a population of {settings['population_size']}; give at most "
            "algorithm.population_size",
        )


def _archive(cfg: dict[str, Any], source: str) -> None:
    """[archive]: the Pareto archive's batch, offers, size and feed."""
    arc, settings = cfg["archive"], cfg["algorithm"]
    for k, lo in (("batch_size", 0), ("every", 1), ("size", 0), ("feed", 0)):
        arc[k] = _int(source, f"archive.{k}", arc[k], lo=lo)
    if arc["batch_size"] and cfg["task"]["mode"] != "pareto":
        _fail(source, "archive.batch_size", 'keeps a Pareto front: needs task.mode = "pareto"')
    if arc["size"] == 1:
        _fail(source, "archive.size", "must be 0 (the population size) or >= 2, got 1")
    if arc["feed"]:
        if not arc["batch_size"]:
            _fail(source, "archive.feed", "returns archive members: needs archive.batch_size >= 1")
        if not settings.get("re_evaluate", True):
            _fail(
                source,
                "archive.feed",
                "returned members have no score on the generation's batch: needs "
                "algorithm.re_evaluate = true",
            )
        if arc["feed"] >= settings["population_size"]:
            _fail(
                source,
                "archive.feed",
                f"must be below algorithm.population_size ({settings['population_size']}), "
                f"got {arc['feed']}",
            )


def _layout(lay: dict[str, Any], source: str) -> None:
    if not isinstance(lay["hidden"], list) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in lay["hidden"]
    ):
        _fail(
            source, "layout.hidden", f"must be a list of positive integers, got {lay['hidden']!r}"
        )


def _decoder(dec: dict[str, Any], source: str) -> None:
    _choice(source, "decoder.name", dec["name"], list(DECODERS))
    dec["compression"] = _number(source, "decoder.compression", dec["compression"])
    if not isinstance(dec["settings"], dict):
        _fail(source, "decoder.settings", "must be a table of the decoder's settings")


def _init_paths(source: str, v: Any) -> list[str]:
    """`init` as a list of paths: "" (or []) is none, a string is one."""
    if isinstance(v, str):
        return [v] if v else []
    if isinstance(v, list) and all(isinstance(p, str) and p for p in v):
        return list(v)
    _fail(
        source,
        "init",
        f'must be a path to a .genome file, a list of them, or "" (a random start), got {v!r}',
    )


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
            _fail(
                source, f"layout.{key}", f"the task {obj.name!r} needs {want!r}, got {lay[key]!r}"
            )
    lay["input"], lay["output"] = shape, n_out
    most = obj.max_batch_size
    sizes = {k: cfg[k] for k in ("batch_size", "final_batch_size")}
    sizes["archive.batch_size"] = cfg["archive"]["batch_size"]
    for key, size in sizes.items():
        if most is not None and size is not None and size > most:
            _fail(
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
    if cfg["init"] and check_init:
        cfg["init"] = [str(Path(p).expanduser().resolve()) for p in cfg["init"]]
        build.load_init(cfg, source)
    return cfg


def load(path: str | Path, *, check_init: bool = True) -> dict[str, Any]:
    """A validated, resolved config from a TOML file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
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
    """The objective that reads data (faces or digits): it fixes the layout and names the run."""
    return next(o for o in cfg["task"]["objectives"] if OBJECTIVES[o].has_data)
