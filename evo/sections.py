"""The sections of a run config: their defaults and their checks, one function each.

`evo.config.validate` runs them in order; every error is a `ConfigError` that
names the file, the field and what would be valid. What differs between
searchers or objectives is checked by their own classes (`Algorithm.check`,
`Objective.check_settings`).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from evo import search
from evo.objectives import OBJECTIVES
from evo.problem import MODES
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
    "thread_invariant": False,
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


# Upper bounds on sizes, far above any run this machine or a cluster node can hold,
# so that a typo (an extra zero or three) is refused here rather than by the
# allocator, minutes in, or by a crash.
MAX_BATCH_SIZE = 1 << 20
MAX_POPULATION = 1 << 16
MAX_WIDTH = 1 << 16  # units of a layout's or a decoder's hidden layer
MAX_SEED = (1 << 63) - 1
MAX_POPULATION_ELEMENTS = 1 << 31  # numbers in a population's genomes or networks: 8 GiB
DEVICE_TYPES = ("cpu", "cuda")


class ConfigError(ValueError):
    """A config fault, naming the file, the field and what would be valid."""


def fail(source: str, field: str, msg: str) -> None:
    raise ConfigError(f"{source}: {field}: {msg}")


def check_keys(source: str, where: str, got: dict[str, Any], valid: list[str]) -> None:
    unknown = sorted(set(got) - set(valid))
    if unknown:
        name = where or "top level"
        fail(source, name, f"unknown key(s) {unknown}; valid keys: {', '.join(sorted(valid))}")


def integer(source: str, field: str, v: Any, lo: int = 0, hi: int | None = None) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        valid = f">= {lo}" if hi is None else f"from {lo} to {hi}"
        fail(source, field, f"must be an integer {valid}, got {v!r}")
    return v


def number(source: str, field: str, v: Any) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        fail(source, field, f"must be a finite number, got {v!r}")
    return float(v)


def choice(source: str, field: str, v: Any, valid: Any) -> str:
    if v not in valid:
        fail(source, field, f"{v!r} is not valid; valid values: {', '.join(valid)}")
    return v


def top(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """The top-level keys (seed, generations, batch sizes, workers, device, init)."""
    cfg: dict[str, Any] = {**TOP, **{k: v for k, v in raw.items() if k in TOP}}
    for k in ("generations", "eval_every", "checkpoint_every"):
        cfg[k] = integer(source, k, cfg[k], lo=1)
    cfg["batch_size"] = integer(source, "batch_size", cfg["batch_size"], lo=1, hi=MAX_BATCH_SIZE)
    cfg["seed"] = integer(source, "seed", cfg["seed"], hi=MAX_SEED)
    if cfg["final_batch_size"] is not None:
        cfg["final_batch_size"] = integer(
            source, "final_batch_size", cfg["final_batch_size"], lo=1, hi=MAX_BATCH_SIZE
        )
    if cfg["batch_ramp"] is not None:
        cfg["batch_ramp"] = integer(source, "batch_ramp", cfg["batch_ramp"], lo=1)
    if cfg["batch_ramp"] is not None and cfg["final_batch_size"] is None:
        fail(source, "batch_ramp", "sets how the batch grows: give final_batch_size too")
    if cfg["final_batch_size"] is not None and cfg["final_batch_size"] < cfg["batch_size"]:
        fail(
            source,
            "final_batch_size",
            f"the batch only grows: must be >= batch_size ({cfg['batch_size']}), "
            f"got {cfg['final_batch_size']}",
        )
    if cfg["workers"] not in ("max", "auto") and (
        not isinstance(cfg["workers"], int)
        or isinstance(cfg["workers"], bool)
        or cfg["workers"] < 0
    ):
        fail(source, "workers", f'must be an integer >= 0, "max" or "auto", got {cfg["workers"]!r}')
    if not isinstance(cfg["address"], str):
        fail(
            source,
            "address",
            f'must be a string ("", "auto" or "host:port"), got {cfg["address"]!r}',
        )
    if not isinstance(cfg["thread_invariant"], bool):
        fail(source, "thread_invariant", f"must be true or false, got {cfg['thread_invariant']!r}")
    cfg["init"] = init_paths(source, cfg["init"])
    device(cfg["device"], source)
    return cfg


def device(name: Any, source: str) -> None:
    """`device`: the CPU, or a CUDA device this machine has."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        fail(source, "device", f'must be "cpu" or "cuda" (or "cuda:N"), got {name!r}')
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            fail(source, "device", f'{name!r}, but this machine has no CUDA device; use "cpu"')
        if dev.index is not None and dev.index >= count:
            fail(source, "device", f"{name!r}, but this machine has {count} CUDA device(s)")


def task(task: dict[str, Any], source: str) -> None:
    """[task]: the objectives and their weights."""
    objs = task["objectives"]
    if not isinstance(objs, list) or not objs:
        fail(
            source,
            "task.objectives",
            f"must be a non-empty list; valid values: {', '.join(OBJECTIVES)}",
        )
    for i, o in enumerate(objs):
        choice(source, f"task.objectives[{i}]", o, list(OBJECTIVES))
    if len(set(objs)) != len(objs):
        fail(source, "task.objectives", f"lists an objective twice: {objs}")
    data = [o for o in objs if OBJECTIVES[o].has_data]
    if len(data) > 1:
        fail(source, "task.objectives", f"at most one of {data} (they need different inputs)")
    if not data:
        names = ", ".join(o for o in OBJECTIVES if OBJECTIVES[o].has_data)
        fail(source, "task.objectives", f"needs one objective with data ({names})")
    if task["weights"] is None:
        task["weights"] = [1.0] * len(objs)
    w = task["weights"]
    if not isinstance(w, list) or len(w) != len(objs):
        fail(
            source,
            "task.weights",
            f"must be a list of {len(objs)} numbers (one per objective), got {w!r}",
        )
    task["weights"] = [number(source, f"task.weights[{i}]", x) for i, x in enumerate(w)]
    for i, x in enumerate(task["weights"]):
        if x < 0:
            fail(source, f"task.weights[{i}]", f"must be >= 0 (objectives are minimised), got {x}")
    if not any(task["weights"]):
        fail(source, "task.weights", "must have at least one weight > 0, got all zero")


def objectives(task: dict[str, Any], tables: Any, source: str) -> dict[str, dict[str, Any]]:
    """[objectives.NAME]: each listed objective's settings, checked by its class.

    `task.dataset` and `task.augment` (their old place) fill in the data
    objective's; `dataset` is dropped where that objective has none (faces).
    """
    if not isinstance(tables, dict):
        fail(source, "objectives", "must hold one table per objective, e.g. [objectives.digits]")
    for name, table in tables.items():
        if name not in task["objectives"]:
            fail(
                source,
                f"objectives.{name}",
                f"sets an objective the run does not use; task.objectives: "
                f"{', '.join(task['objectives'])}",
            )
        if not isinstance(table, dict):
            fail(source, f"objectives.{name}", "must be a table of the objective's settings")
    data = next(o for o in task["objectives"] if OBJECTIVES[o].has_data)
    legacy = {}
    dataset, augment = task.pop("dataset"), task.pop("augment")
    if dataset is not None:
        choice(source, "task.dataset", dataset, list(DATASETS))
        if "dataset" in OBJECTIVES[data].setting_defaults():
            legacy["dataset"] = dataset
    if augment is not None:
        legacy["augment"] = choice(source, "task.augment", augment, OBJECTIVES[data].augments)
    out = {}
    for name in task["objectives"]:
        cls = OBJECTIVES[name]
        given = copy.deepcopy(tables.get(name, {}))
        check_keys(source, f"objectives.{name}", given, list(cls.setting_defaults()))
        if name == data:
            for k, v in legacy.items():
                if given.get(k, v) != v:
                    fail(
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


def algorithm(raw: Any, source: str) -> dict[str, Any]:
    """[algorithm]: the searcher's name and its settings, checked by its registry entry."""
    if not isinstance(raw, dict):
        fail(source, "algorithm", "must be a table")
    settings = copy.deepcopy(raw)
    name = choice(source, "algorithm.name", settings.pop("name", "snes"), list(search.ALGORITHMS))
    entry = search.algorithm(name)
    check_keys(source, "algorithm", {**settings, "name": name}, ["name", *entry.valid_keys()])
    settings = {**entry.defaults, **settings}
    for k, v in settings.items():
        kind = entry.setting_kind(k)
        if kind == "bool" and not isinstance(v, bool):
            fail(source, f"algorithm.{k}", f"must be true or false, got {v!r}")
        if kind == "number":
            number(source, f"algorithm.{k}", v)
        if kind == "str" and not isinstance(v, str):
            fail(source, f"algorithm.{k}", f"must be a string, got {v!r}")
    settings["population_size"] = integer(
        source, "algorithm.population_size", settings["population_size"], lo=1, hi=MAX_POPULATION
    )
    try:
        entry.check(settings)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    return {"name": name, **settings}


def mode(cfg: dict[str, Any], source: str) -> None:
    """task.mode: a Pareto front where the searcher keeps one and there are several objectives."""
    task, entry = cfg["task"], search.algorithm(cfg["algorithm"]["name"])
    if task["mode"] is None:
        task["mode"] = "pareto" if entry.pareto and len(task["objectives"]) > 1 else "weighted"
    choice(source, "task.mode", task["mode"], MODES)
    if task["mode"] == "pareto" and not entry.pareto:
        valid = [a.name for a in search.ALGORITHMS.values() if a.pareto]
        fail(source, "task.mode", f"pareto needs algorithm.name in {valid}, got {entry.name!r}")
    flat = [o for o in task["objectives"] if not OBJECTIVES[o].differentiable]
    if entry.needs_gradient and flat:
        valid = [a.name for a in search.ALGORITHMS.values() if not a.needs_gradient]
        fail(
            source,
            "algorithm.name",
            f"{entry.name!r} follows the gradient, and {', '.join(flat)} has none (the "
            f"lifetime loop is not differentiated); use one of {', '.join(valid)}",
        )


def init_count(cfg: dict[str, Any], source: str) -> None:
    """init: one genome, or several where the searcher starts from a population of them."""
    settings, entry = cfg["algorithm"], search.algorithm(cfg["algorithm"]["name"])
    n_init = len(cfg["init"])
    if n_init > 1 and not entry.init_population:
        fail(
            source,
            "init",
            f"{n_init} genomes can start only the GA's population; {entry.name!r} starts from "
            "one genome (give one path)",
        )
    if n_init > settings["population_size"]:
        fail(
            source,
            "init",
            f"{n_init} genomes for a population of {settings['population_size']}; give at most "
            "algorithm.population_size",
        )


def archive(cfg: dict[str, Any], source: str) -> None:
    """[archive]: the Pareto archive's batch, offers, size and feed."""
    arc, settings = cfg["archive"], cfg["algorithm"]
    for k, lo in (("batch_size", 0), ("every", 1), ("size", 0), ("feed", 0)):
        arc[k] = integer(source, f"archive.{k}", arc[k], lo=lo)
    if arc["batch_size"] and cfg["task"]["mode"] != "pareto":
        fail(source, "archive.batch_size", 'keeps a Pareto front: needs task.mode = "pareto"')
    if arc["size"] == 1:
        fail(source, "archive.size", "must be 0 (the population size) or >= 2, got 1")
    if arc["feed"]:
        if not arc["batch_size"]:
            fail(source, "archive.feed", "returns archive members: needs archive.batch_size >= 1")
        if not settings.get("re_evaluate", True):
            fail(
                source,
                "archive.feed",
                "returned members have no score on the generation's batch: needs "
                "algorithm.re_evaluate = true",
            )
        if arc["feed"] >= settings["population_size"]:
            fail(
                source,
                "archive.feed",
                f"must be below algorithm.population_size ({settings['population_size']}), "
                f"got {arc['feed']}",
            )


def layout(lay: dict[str, Any], source: str) -> None:
    if not isinstance(lay["hidden"], list) or not all(
        isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= MAX_WIDTH
        for h in lay["hidden"]
    ):
        fail(
            source,
            "layout.hidden",
            f"must be a list of integers from 1 to {MAX_WIDTH}, got {lay['hidden']!r}",
        )


def decoder(dec: dict[str, Any], source: str) -> None:
    choice(source, "decoder.name", dec["name"], list(DECODERS))
    dec["compression"] = number(source, "decoder.compression", dec["compression"])
    if dec["compression"] < 0:
        fail(
            source,
            "decoder.compression",
            f"must be 0 (off) or a ratio > 0, got {dec['compression']}",
        )
    if not isinstance(dec["settings"], dict):
        fail(source, "decoder.settings", "must be a table of the decoder's settings")
    hidden = dec["settings"].get("hidden")
    if isinstance(hidden, list) and any(
        isinstance(h, int) and not isinstance(h, bool) and h > MAX_WIDTH for h in hidden
    ):
        fail(
            source, "decoder.settings.hidden", f"widths must be at most {MAX_WIDTH}, got {hidden!r}"
        )


def init_paths(source: str, v: Any) -> list[str]:
    """`init` as a list of paths: "" (or []) is none, a string is one."""
    if isinstance(v, str):
        return [v] if v else []
    if isinstance(v, list) and all(isinstance(p, str) and p for p in v):
        return list(v)
    fail(
        source,
        "init",
        f'must be a path to a .genome file, a list of them, or "" (a random start), got {v!r}',
    )
