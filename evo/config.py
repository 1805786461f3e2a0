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

    [task]
    objectives = ["faces", "wiring"]   # evo.objectives.OBJECTIVES
    weights = [1.0, 0.01]              # weighted sum; in Pareto mode, picks best.genome
    mode = "weighted"                  # or "pareto" (algorithm "ga" only)
    dataset = "digits"                 # for the digits objective: digits | mnist
    augment = "none"                   # training batches; digits also: "shift" (+-2 px)

    [layout]                           # input and output come from the task
    hidden = [64]

    [decoder]
    name = "gnet"                      # genome.decoders.DECODERS
    compression = 0.0                  # > 0: the widest decoder with at least this ratio
    settings = { hidden = [16, 16] }   # the decoder's own settings

    [algorithm]
    name = "snes"                      # evo.algorithms.ALGORITHMS
    population_size = 32               # ...and the searcher's own keyword arguments

    [archive]                          # Pareto mode: the run's front on fixed data (evo/archive.py)
    batch_size = 0                     # training examples its members are scored on; 0 = none
    every = 10                         # generations between offers of the population's front
    size = 0                           # most members kept; 0 = algorithm.population_size
    feed = 0                           # up to this many members back into the population per offer

Every error names the file, the field, and the valid values or keys. `resolve`
fills in every default and derived value (layout input and output, the
decoder's full settings, the algorithm's defaults), and the resolved config
is what a run directory keeps, so `--resume` needs nothing else. Following
cleanrl, a run is named ``{task}__{decoder}__s{seed}__{time}``.
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

from evo.algorithms import ALGORITHMS, algorithm
from evo.archive import ParetoArchive
from evo.gradient import LR_SCHEDULES
from evo.objectives import DATASETS, OBJECTIVES, Objective, make_objective
from evo.problem import MODES, GenomeProblem
from genome.decoders import DECODERS, Decoder, decoder_class, make_decoder
from genome.layout import Layout

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
        "dataset": "digits",
        "augment": "none",
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
    _check_keys(source, "", raw, [*TOP, *SECTIONS, "algorithm"])
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

    for name, defaults in SECTIONS.items():
        sec = raw.get(name, {})
        if not isinstance(sec, dict):
            _fail(source, name, "must be a table")
        _check_keys(source, name, sec, list(defaults))
        cfg[name] = {**copy.deepcopy(defaults), **copy.deepcopy(sec)}

    task = cfg["task"]
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
    task["dataset"] = _choice(source, "task.dataset", task["dataset"], DATASETS)
    task["augment"] = _choice(source, "task.augment", task["augment"], OBJECTIVES[data[0]].augments)

    alg = raw.get("algorithm", {})
    if not isinstance(alg, dict):
        _fail(source, "algorithm", "must be a table")
    alg = copy.deepcopy(alg)
    name = _choice(source, "algorithm.name", alg.pop("name", "snes"), list(ALGORITHMS))
    algo = algorithm(name)
    _check_keys(source, "algorithm", {**alg, "name": name}, ["name", *algo.valid_keys()])
    params = {**algo.defaults, **alg}
    for k, v in params.items():
        kind = algo.param_kind(k)
        if kind == "bool" and not isinstance(v, bool):
            _fail(source, f"algorithm.{k}", f"must be true or false, got {v!r}")
        if kind == "number":
            _number(source, f"algorithm.{k}", v)
        if kind == "str" and not isinstance(v, str):
            _fail(source, f"algorithm.{k}", f"must be a string, got {v!r}")
    params["population_size"] = _int(
        source, "algorithm.population_size", params["population_size"], lo=1
    )
    if name == "gradient" and params["population_size"] != 1:
        _fail(source, "algorithm.population_size", "must be 1 for the gradient optimiser")
    if name == "gradient":
        _choice(source, "algorithm.lr_schedule", params["lr_schedule"], LR_SCHEDULES)
    if name == "pgpe" and params.get("symmetric", True) and params["population_size"] % 2:
        _fail(source, "algorithm.population_size", "must be even for symmetric PGPE")
    cfg["algorithm"] = {"name": name, **params}

    if task["mode"] is None:
        task["mode"] = "pareto" if algo.pareto and len(objs) > 1 else "weighted"
    _choice(source, "task.mode", task["mode"], MODES)
    if task["mode"] == "pareto" and not algo.pareto:
        valid = [a.name for a in ALGORITHMS.values() if a.pareto]
        _fail(source, "task.mode", f"pareto needs algorithm.name in {valid}, got {name!r}")
    n_init = len(cfg["init"])
    if n_init > 1 and name != "ga":
        _fail(
            source,
            "init",
            f"{n_init} genomes can start only the GA's population; {name!r} starts from one "
            "genome (give one path)",
        )
    if n_init > params["population_size"]:
        _fail(
            source,
            "init",
            f"{n_init} genomes for a population of {params['population_size']}; give at most "
            "algorithm.population_size",
        )

    arc = cfg["archive"]
    for k, lo in (("batch_size", 0), ("every", 1), ("size", 0), ("feed", 0)):
        arc[k] = _int(source, f"archive.{k}", arc[k], lo=lo)
    if arc["batch_size"] and task["mode"] != "pareto":
        _fail(source, "archive.batch_size", 'keeps a Pareto front: needs task.mode = "pareto"')
    if arc["size"] == 1:
        _fail(source, "archive.size", "must be 0 (the population size) or >= 2, got 1")
    if arc["feed"]:
        if not arc["batch_size"]:
            _fail(source, "archive.feed", "returns archive members: needs archive.batch_size >= 1")
        if not params.get("re_evaluate", True):
            _fail(
                source,
                "archive.feed",
                "returned members have no score on the generation's batch: needs "
                "algorithm.re_evaluate = true",
            )
        if arc["feed"] >= params["population_size"]:
            _fail(
                source,
                "archive.feed",
                f"must be below algorithm.population_size ({params['population_size']}), "
                f"got {arc['feed']}",
            )

    lay = cfg["layout"]
    if not isinstance(lay["hidden"], list) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in lay["hidden"]
    ):
        _fail(
            source, "layout.hidden", f"must be a list of positive integers, got {lay['hidden']!r}"
        )

    dec = cfg["decoder"]
    _choice(source, "decoder.name", dec["name"], list(DECODERS))
    dec["compression"] = _number(source, "decoder.compression", dec["compression"])
    if not isinstance(dec["settings"], dict):
        _fail(source, "decoder.settings", "must be a table of the decoder's settings")
    return cfg


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
    cfg = copy.deepcopy(cfg)
    obj = data_objective(cfg)
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
        decoder = build_decoder(cfg)
    except ValueError as e:
        raise ConfigError(f"{source}: decoder: {e}") from e
    cfg["decoder"]["settings"] = decoder.settings
    if cfg["init"] and check_init:
        cfg["init"] = [str(Path(p).expanduser().resolve()) for p in cfg["init"]]
        load_init(cfg, source)
    return cfg


INIT = "init"


def init_copy(run_dir: Path, i: int) -> Path:
    """Where a run directory keeps its copy of the i-th genome of `init`."""
    return run_dir / INIT / f"{i:03d}.genome"


def kept_init(run_dir: Path, i: int) -> Path | None:
    """The run's own copy of the i-th genome of `init`, if it has one.

    Runs made before `init` could list several genomes kept their one copy as
    `init.genome`; they still resume from it.
    """
    kept = init_copy(run_dir, i)
    if kept.is_file():
        return kept
    legacy = run_dir / "init.genome"
    return legacy if i == 0 and legacy.is_file() else None


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
            _fail(
                source,
                "init",
                f"{path} holds a {theirs[0]} genome with settings {theirs[1]} on layout "
                f"{theirs[2]}; this run needs {ours[0]} with settings {ours[1]} on layout "
                f"{ours[2]}",
            )
        genomes.append(gf.genome)
    return torch.stack(genomes)


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


def task_name(cfg: dict[str, Any]) -> str:
    return next(o for o in cfg["task"]["objectives"] if OBJECTIVES[o].has_data)


def run_name(cfg: dict[str, Any], time: str) -> str:
    return f"{task_name(cfg)}__{cfg['decoder']['name']}__s{cfg['seed']}__{time}"


# --- from a resolved config to the objects of a run ---------------------------------
def _objective(cfg: dict[str, Any], name: str) -> Objective:
    opts = {
        "batch_size": cfg["batch_size"],
        "device": cfg["device"],
        "dataset": cfg["task"]["dataset"],
    }
    # The augmentation belongs to the training data, so to the objective that reads it.
    if OBJECTIVES[name].has_data:
        opts["augment"] = cfg["task"].get("augment", "none")
    return make_objective(name, **opts)


def make_objectives(cfg: dict[str, Any]) -> list[Objective]:
    return [_objective(cfg, name) for name in cfg["task"]["objectives"]]


def data_objective(cfg: dict[str, Any]) -> Objective:
    return _objective(cfg, task_name(cfg))


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

    The gradient optimiser evaluates one genome and always runs in-process.
    """
    if cfg["algorithm"]["name"] == "gradient":
        return 0
    return cfg["workers"] or ("max" if cfg["address"] else 0)


def build_problem(cfg: dict[str, Any], run_dir: Path | None = None) -> GenomeProblem:
    """The problem of a resolved config (connect Ray first when `ray_workers(cfg)`)."""
    workers = ray_workers(cfg)
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
