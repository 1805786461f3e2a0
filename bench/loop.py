"""Benchmark: whole generations of `innate evolve` against the same search written by hand in EvoTorch.

Two workloads (`--workload`), each SNES with a population of 64: faces, the
workload of a user's first run (a 25x25 -> 32 -> 1 network, 200 images a
generation, g-network [8, 8]), and digits (the MNIST subset, 784 -> 100 -> 10,
500 images, g-network [5, 5], cross-entropy). Side by side in one process,
each timed as generations per second of its whole loop:

- by hand: what an EvoTorch user writes: a `Problem` with a vectorised
  fitness that reshapes the population [P, D] into the network's weights and
  scores it on one fixed set of images (200 procedural faces; 500 MNIST
  training images, a seeded draw), stepped by `SNES`
  (the population read through a plain tensor view, as the EvoTorch notes
  advise: its read-only wrapper slows torch code about 2x);
- innate, direct decoder: `evo.driver.new_run` on the same body, population
  and batch, each generation's images drawn from the face bank (or the MNIST
  training set); metrics every generation, the test (LFW, or the MNIST test
  images) every 50 and checkpoints every 50, as `configs/faces.toml` has them;
- innate, g-network: the same with a g-network genome (binary codes).

An innate run's rate is taken between two runs of different lengths (G1 and
G2 generations; (G2 - G1) / (t2 - t1)), so start-up (imports, the bank's load,
the run directory) is left out; the hand-written loop is timed from its first
step. For the g-network the arithmetic of a generation (decode, weight
scaling, forward; as in bench/generation.py) is set against the matmul rate
measured in the same process, and so is the step alone (the population's
decode, forward and objective on a drawn batch, in the run's chunks): what
is left of a generation is sampling, the update, the champion's re-score and
the bookkeeping. Each is repeated --repeats times; the best and the spread
are printed. Every timed run starts from a collected heap (`gc.collect()`),
so that garbage left by the runs before it is not collected inside it.

    python bench/loop.py [--workload faces|digits] [--repeats 3] [--generations 100,300]
                         [--json out.json]
    python bench/loop.py --profile 300   # where a generation's time goes, per phase
    OMP_NUM_THREADS=1 python bench/loop.py   # torch on one thread (a core left free)

`--profile G` runs the hand-written loop and each innate variant for G and
for G / 4 generations with a wall-clock timer around the functions of each
phase, and prints the difference per generation (start-up left out): the
data (the generation's minibatch), sampling the population, decoding, the
forward pass (by hand: its whole evaluation), the objective (the rest of
scoring: loss, accuracy, ROC-AUC), the searcher's update, the champion's
re-score on the generation's batch, metrics (rows, health checks), the LFW
test and checkpoints; the rest is EvoTorch's step around sampling and
update, and the loop itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation import Stepper, best_time, matmul_rate, step_flops

from evo import build, config
from evo.driver import new_run

POPULATION = 64
# Set by `profile` to time the hand-written loop's evaluation: wraps its `_evaluate_batch`.
HAND_EVALUATION = None


@dataclass(frozen=True)
class Workload:
    name: str
    size: int  # the input sheet is size x size
    hidden: int
    outputs: int
    batch: int
    gnet_hidden: tuple[int, ...]
    settings: dict  # the objective's own settings


WORKLOADS = {
    "faces": Workload("faces", 25, 32, 1, 200, (8, 8), {"data": "bank"}),
    "digits": Workload("digits", 28, 100, 10, 500, (5, 5), {"dataset": "mnist"}),
}


def fixed_batch(w: Workload) -> tuple[torch.Tensor, torch.Tensor]:
    """The hand-written loop's one set of images [B, size * size] and labels [B]."""
    if w.name == "faces":
        from tasks.faces import make_faces

        x, y = make_faces(w.batch, torch.Generator().manual_seed(0), size=w.size)
    else:
        from tasks import load_dataset, minibatch

        ds = load_dataset(w.settings["dataset"])
        x, y = minibatch(ds.train_x, ds.train_y, w.batch, torch.Generator().manual_seed(0))
    return x.reshape(w.batch, -1), y


def by_hand(generations: int, w: Workload = WORKLOADS["faces"]) -> float:
    """Seconds for `generations` steps of a hand-written EvoTorch SNES on fixed images.

    Its evaluation (forward and loss) is the `_evaluate_batch` of a class named
    `ByHand`; `profile` times it there.
    """
    import torch.nn.functional as F
    from evotorch import Problem
    from evotorch.algorithms import SNES

    x, y = fixed_batch(w)
    n_in, hidden, n_out = w.size * w.size, w.hidden, w.outputs
    sizes = [hidden * n_in, hidden, n_out * hidden, n_out]

    def loss_of(logits: torch.Tensor) -> torch.Tensor:  # [P, B, n_out] -> [P]
        p = logits.shape[0]
        if n_out == 1:
            target = y.float().expand(p, -1)
            each = F.binary_cross_entropy_with_logits(logits[..., 0], target, reduction="none")
        else:
            each = F.cross_entropy(logits.reshape(-1, n_out), y.repeat(p), reduction="none")
        return each.view(p, -1).mean(dim=1)

    class ByHand(Problem):
        def __init__(self):
            super().__init__("min", solution_length=sum(sizes), initial_bounds=(-0.1, 0.1))

        def _evaluate_batch(self, batch):
            genes = batch.values.as_subclass(torch.Tensor)
            w1, b1, w2, b2 = genes.split(sizes, dim=1)
            p = genes.shape[0]
            h = torch.relu(
                torch.baddbmm(b1[:, None, :], x.expand(p, -1, -1), w1.view(p, hidden, n_in).mT)
            )
            logits = torch.baddbmm(b2[:, None, :], h, w2.view(p, n_out, hidden).mT)
            batch.set_evals(loss_of(logits))

    if HAND_EVALUATION is not None:
        ByHand._evaluate_batch = HAND_EVALUATION(ByHand._evaluate_batch)
    problem = ByHand()
    searcher = SNES(problem, stdev_init=0.5, popsize=POPULATION)
    searcher.step()  # first step: lazy set-up
    gc.collect()  # every timed run starts from a collected heap (see `innate`)
    t = time.perf_counter()
    for _ in range(generations):
        searcher.step()
    return time.perf_counter() - t


def innate_config(decoder: str, generations: int, w: Workload = WORKLOADS["faces"]) -> dict:
    settings = {"hidden": list(w.gnet_hidden), "code": "binary"} if decoder == "gnet" else {}
    raw = {
        "seed": 0,
        "generations": generations,
        "batch_size": w.batch,
        "eval_every": 50,
        "checkpoint_every": 50,
        "workers": 0,
        "task": {"objectives": [w.name]},
        "objectives": {w.name: dict(w.settings)},
        "layout": {"hidden": [w.hidden]},
        "decoder": {"name": decoder, "settings": settings},
        "algorithm": {"name": "snes", "population_size": POPULATION, "stdev_init": 0.5},
    }
    return config.resolve(config.validate(raw, "bench"), "bench")


def innate(decoder: str, generations: int, w: Workload = WORKLOADS["faces"]) -> float:
    """Seconds of a whole `innate evolve` run of `generations` generations."""
    cfg = innate_config(decoder, generations, w)
    # The garbage left by earlier runs is collected first: a full collection (about
    # 130 ms with all this loaded) falling inside one of two runs would move a rate
    # taken between them by far more than the runs differ.
    gc.collect()
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        new_run(cfg, Path(out), progress=False)
        return time.perf_counter() - t


def step_alone(w: Workload, repeats: int) -> float:
    """Seconds of the g-network run's step alone: `GenomeProblem.score` of the population
    on a drawn batch (decode, forward and objective in the run's chunks; bench/generation.py),
    without sampling, the searcher's update, the champion or the bookkeeping."""
    cfg = innate_config("gnet", 1, w)
    problem = build.build_problem(cfg)
    try:
        population = problem.decoder.init(POPULATION, torch.Generator().manual_seed(0))
        step = Stepper(problem, population, new_data=False)
        with torch.no_grad():
            return best_time(step, 20 * repeats, "cpu")
    finally:
        problem.close()


def _phase_targets() -> list[tuple[str, object, str, bool]]:
    """(phase, owner, attribute, absorbing) of every function a phase is timed in.

    Time goes to the innermost phase running, except inside an absorbing one
    (the champion's re-score, the LFW test, a checkpoint), which keeps all of
    its time, the decoding and scoring it does included.
    """
    import evotorch.distributions as dist

    from evo import driver, problem
    from evo.search import sampling
    from genome.decoders.base import Decoder
    from genome.phenotype import Phenotype

    targets = [
        ("data", problem.GenomeProblem, "data", False),
        ("sampling", dist.Distribution, "sample", False),
        ("decode", Decoder, "decode", False),
        ("forward", Phenotype, "activations", False),
        ("objective", problem.GenomeProblem, "score", False),
        ("champion", driver, "_evals_of", True),
        ("metrics", driver, "_generation_row", False),
        ("metrics", driver, "_champion", False),
        ("metrics", driver, "divergence", False),
        ("test", driver, "_test", True),
        ("checkpoints", driver, "save_checkpoint", True),
    ]
    # The searcher's update: every distribution's own gradient and update steps
    # (EvoTorch's, and innate's faster equals of them).
    classes = [*vars(dist).values(), *sampling.FASTER.values()]
    for cls in classes:
        if isinstance(cls, type) and issubclass(cls, dist.Distribution):
            for name in ("_compute_gradients", "update_parameters"):
                if name in vars(cls):
                    targets.append(("update", cls, name, False))
    return targets


PHASE_ROWS = (
    "data",
    "sampling",
    "decode",
    "forward",
    "objective",
    "update",
    "champion",
    "metrics",
    "test",
    "checkpoints",
)


def profile(loop: str, generations: int, w: Workload = WORKLOADS["faces"]) -> dict[str, float]:
    """Wall seconds per phase of `generations` generations of `loop`, and its total.

    `loop` is "by hand" or an innate decoder ("direct", "gnet"). Each phase's
    functions are wrapped with a timer (about a microsecond a call, against
    cProfile's cost on every Python call); the time of a call goes to its
    phase less the time of the phases called inside it. By hand, the whole
    evaluation (forward and loss) counts as "forward". The rest of the time is
    "loop and the rest": EvoTorch's step around sampling and update, the
    metrics file, the loop.
    """
    import functools

    global HAND_EVALUATION
    spent: dict[str, float] = {}
    stack: list[list] = []  # [phase, absorbing, start, time of phases inside]

    def timed(phase: str, absorbing: bool, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if stack and stack[-1][1]:
                return fn(*args, **kwargs)  # inside an absorbing phase: its time
            frame = [phase, absorbing, time.perf_counter(), 0.0]
            stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                stack.pop()
                took = time.perf_counter() - frame[2]
                spent[phase] = spent.get(phase, 0.0) + took - frame[3]
                if stack:
                    stack[-1][3] += took

        return wrapper

    saved = []
    for phase, owner, attr, absorbing in _phase_targets():
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        saved.append((owner, attr, original))
        setattr(owner, attr, timed(phase, absorbing, original))
    try:
        if loop == "by hand":
            HAND_EVALUATION = functools.partial(timed, "forward", True)
            total = by_hand(generations, w)
            spent = {k: v for k, v in spent.items() if k in ("sampling", "forward", "update")}
        else:
            gc.collect()  # as in `innate`
            with tempfile.TemporaryDirectory() as out:
                t = time.perf_counter()
                new_run(innate_config(loop, generations, w), Path(out), progress=False)
                total = time.perf_counter() - t
    finally:
        HAND_EVALUATION = None
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)
    out = {k: spent.get(k, 0.0) for k in PHASE_ROWS}
    out["loop and the rest"] = total - sum(out.values())
    out["total"] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="faces")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generations", default="100,300", help="G1,G2")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=int, metavar="G", help="phase table of G generations")
    args = parser.parse_args()
    w = WORKLOADS[args.workload]
    title = (
        f"{w.name}, {w.size}x{w.size} -> {w.hidden} -> {w.outputs}, SNES, "
        f"population {POPULATION}, {w.batch} images, {torch.get_num_threads()} threads"
    )
    innate("direct", 2, w)  # the bank (or data set) is loaded once before any timing
    if args.profile:
        loops = ("by hand", "direct", "gnet")
        # Per generation: the difference between a run of G and one of G / 4, so
        # that start-up (imports aside: the run directory, the problem, the bank's
        # load, the last files) is left out, as in the rates.
        g1, g2 = max(1, args.profile // 4), args.profile
        tables = {}
        for name in loops:
            short, long = profile(name, g1, w), profile(name, g2, w)
            tables[name] = {k: (long[k] - short[k]) / (g2 - g1) for k in long}
        print(f"{title}: wall ms per generation (runs of {g2} less runs of {g1}, timed phases)")
        print(f"  {'phase':18s}" + "".join(f"{n:>9s}" for n in loops))
        for phase in tables["direct"]:
            row = [1e3 * tables[n][phase] for n in loops]
            print(f"  {phase:18s}" + "".join(f"{v:9.2f}" for v in row))
        return
    g1, g2 = (int(g) for g in args.generations.split(","))
    rates: dict[str, list[float]] = {"by hand": [], "direct": [], "gnet": []}
    matmul = []
    for _ in range(args.repeats):
        matmul.append(matmul_rate("cpu"))
        rates["by hand"].append(g2 / by_hand(g2, w))
        for name in ("direct", "gnet"):
            rates[name].append((g2 - g1) / (innate(name, g2, w) - innate(name, g1, w)))
    decoder = build.build_decoder(innate_config("gnet", g1, w))
    flops = step_flops(decoder, POPULATION, w.batch)
    best = {k: max(v) for k, v in rates.items()}
    rate = max(matmul)
    step = step_alone(w, args.repeats)
    print(f"{title}; generations per second, best of {args.repeats} (range)")
    for name, v in rates.items():
        ratio = best[name] / best["by hand"]
        print(f"  {name:8s} {best[name]:7.1f}  ({min(v):.1f}-{max(v):.1f})  {ratio:.2f}x by hand")
    share = flops * best["gnet"] / rate
    print(
        f"  gnet generation: {flops / 1e6:.1f} MFLOP (decode + scaling + forward), "
        f"{flops * best['gnet'] / 1e9:.2f} GFLOP/s = {share:.1%} of the matmul rate "
        f"({rate / 1e9:.1f} GFLOP/s)"
    )
    print(
        f"  gnet step alone (decode, forward, objective; best of {args.repeats}): "
        f"{1e3 * step:.2f} ms = {flops / step / rate:.1%} of the matmul rate; the whole "
        f"generation {1e3 / best['gnet']:.2f} ms; 40% would need {1e3 * flops / (0.4 * rate):.2f}"
    )
    if args.json:
        out = {"workload": w.name, "rates": rates, "matmul": matmul, "gnet_flops": flops}
        out["gnet_step_s"] = step
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
