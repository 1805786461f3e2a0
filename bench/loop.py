"""Benchmark: whole generations of `innate evolve` against the same search written by hand in EvoTorch.

The workload of a user's first run: face detection, a 25x25 -> 32 -> 1
network, SNES with a population of 64, 200 images a generation. Side by side
in one process, each timed as generations per second of its whole loop:

- by hand: what an EvoTorch user writes: a `Problem` with a vectorised
  fitness that reshapes the population [P, D] into the network's weights and
  scores it on one fixed set of 200 procedural images, stepped by `SNES`
  (the population read through a plain tensor view, as the EvoTorch notes
  advise: its read-only wrapper slows torch code about 2x);
- innate, direct decoder: `evo.driver.new_run` on the same body, population
  and batch, each generation's 200 images drawn from the face bank; metrics
  every generation, the test on LFW every 50 and checkpoints every 50, as
  `configs/faces.toml` has them;
- innate, g-network: the same with a gnet [8, 8] genome (binary codes).

An innate run's rate is taken between two runs of different lengths (G1 and
G2 generations; (G2 - G1) / (t2 - t1)), so start-up (imports, the bank's load,
the run directory) is left out; the hand-written loop is timed from its first
step. For the g-network the arithmetic of a generation (decode, weight
scaling, forward; as in bench/generation.py) is set against the matmul rate
measured in the same process. Each is repeated --repeats times; the best and
the spread are printed.

    python bench/loop.py [--repeats 3] [--generations 100,300] [--json out.json]
    python bench/loop.py --profile 300   # where a generation's time goes, per phase

`--profile G` runs each innate variant for G generations under cProfile and
splits the wall time by phase, from the cumulative time of the functions that
do each: the data (the generation's minibatch), sampling the population,
decoding, the forward pass, the objective (the rest of scoring: loss,
accuracy, ROC-AUC), the searcher's update, the champion's re-score on the
generation's batch, metrics (rows, health checks), the LFW test and
checkpoints; the rest is the loop itself. cProfile slows Python-heavy parts
more than torch's kernels, so the shares are a guide, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation import matmul_rate, step_flops

from evo import build, config
from evo.driver import new_run
from tasks.faces import make_faces

SIZE, HIDDEN, POPULATION, BATCH = 25, 32, 64, 200


def by_hand(generations: int) -> float:
    """Seconds for `generations` steps of a hand-written EvoTorch SNES on fixed images."""
    import torch.nn.functional as F
    from evotorch import Problem
    from evotorch.algorithms import SNES

    x, y = make_faces(BATCH, torch.Generator().manual_seed(0), size=SIZE)
    x = x.reshape(BATCH, -1)
    target = y.float()
    n_in = SIZE * SIZE
    sizes = [HIDDEN * n_in, HIDDEN, HIDDEN, 1]

    class Faces(Problem):
        def __init__(self):
            super().__init__("min", solution_length=sum(sizes), initial_bounds=(-0.1, 0.1))

        def _evaluate_batch(self, batch):
            genes = batch.values.as_subclass(torch.Tensor)
            w1, b1, w2, b2 = genes.split(sizes, dim=1)
            p = genes.shape[0]
            h = torch.relu(
                torch.baddbmm(b1[:, None, :], x.expand(p, -1, -1), w1.view(p, HIDDEN, n_in).mT)
            )
            logits = (h @ w2.view(p, HIDDEN, 1)).squeeze(-1) + b2
            loss = F.binary_cross_entropy_with_logits(
                logits, target.expand(p, -1), reduction="none"
            ).mean(dim=1)
            batch.set_evals(loss)

    problem = Faces()
    searcher = SNES(problem, stdev_init=0.5, popsize=POPULATION)
    searcher.step()  # first step: lazy set-up
    t = time.perf_counter()
    for _ in range(generations):
        searcher.step()
    return time.perf_counter() - t


def innate_config(decoder: str, generations: int) -> dict:
    settings = {"hidden": [8, 8], "code": "binary"} if decoder == "gnet" else {}
    raw = {
        "seed": 0,
        "generations": generations,
        "batch_size": BATCH,
        "eval_every": 50,
        "checkpoint_every": 50,
        "workers": 0,
        "task": {"objectives": ["faces"]},
        "objectives": {"faces": {"data": "bank"}},
        "layout": {"hidden": [HIDDEN]},
        "decoder": {"name": decoder, "settings": settings},
        "algorithm": {"name": "snes", "population_size": POPULATION, "stdev_init": 0.5},
    }
    return config.resolve(config.validate(raw, "bench"), "bench")


def innate(decoder: str, generations: int) -> float:
    """Seconds of a whole `innate evolve` run of `generations` generations."""
    cfg = innate_config(decoder, generations)
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        new_run(cfg, Path(out), progress=False)
        return time.perf_counter() - t


# Phase -> (file suffix, function name) whose cumulative time is the phase's; a phase
# listed later is subtracted from the ones it runs inside (decode and forward from
# scoring, the champion's re-score from metrics).
PHASES = {
    "data": [("evo/problem.py", "data")],
    "sampling": [("evotorch/distributions.py", "sample")],
    "decode": [("genome/decoders/base.py", "decode")],
    "forward": [("genome/phenotype.py", "activations")],
    "scoring": [("evo/problem.py", "score")],
    "update": [
        ("evotorch/distributions.py", "_compute_gradients"),
        ("evotorch/distributions.py", "update_parameters"),
    ],
    "champion": [("evo/driver.py", "_evals_of")],
    "metrics": [
        ("evo/driver.py", "_generation_row"),
        ("evo/driver.py", "_champion"),
        ("evo/health.py", "divergence"),
    ],
    "test": [("evo/driver.py", "_test")],
    "checkpoints": [("evo/driver.py", "checkpoint")],
}


def profile(decoder: str, generations: int) -> dict[str, float]:
    """Seconds per phase (see PHASES) of one run, and its total."""
    import cProfile
    import pstats

    cfg = innate_config(decoder, generations)
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        prof.enable()
        new_run(cfg, Path(out), progress=False)
        prof.disable()
        total = time.perf_counter() - t
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    cum = {}
    for phase, keys in PHASES.items():
        cum[phase] = sum(
            st[3]
            for (file, _, name), st in stats.items()
            for suffix, fn in keys
            if name == fn and file.replace("\\", "/").endswith(suffix)
        )
    # Scoring runs decode and forward; the champion's re-score and the test also score,
    # so the objective is what is left of scoring after decode and forward.
    out = dict(cum)
    out["objective"] = cum["scoring"] - cum["decode"] - cum["forward"]
    out["metrics"] = cum["metrics"] - cum["champion"]
    del out["scoring"]
    out["loop and the rest"] = total - sum(out.values())
    out["total"] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generations", default="100,300", help="G1,G2")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=int, metavar="G", help="phase table of G generations")
    args = parser.parse_args()
    if args.profile:
        innate("direct", 2)  # the bank, once
        tables = {name: profile(name, args.profile) for name in ("direct", "gnet")}
        print(f"ms per generation ({args.profile} generations under cProfile)")
        print(f"  {'phase':18s} {'direct':>8s} {'gnet':>8s}")
        for phase in tables["direct"]:
            row = [1e3 * tables[n][phase] / args.profile for n in ("direct", "gnet")]
            print(f"  {phase:18s} {row[0]:8.2f} {row[1]:8.2f}")
        return
    g1, g2 = (int(g) for g in args.generations.split(","))
    innate("direct", 2)  # the bank is built (or loaded) once before any timing
    rates: dict[str, list[float]] = {"by hand": [], "direct": [], "gnet": []}
    matmul = []
    for _ in range(args.repeats):
        matmul.append(matmul_rate("cpu"))
        rates["by hand"].append(g2 / by_hand(g2))
        for name in ("direct", "gnet"):
            rates[name].append((g2 - g1) / (innate(name, g2) - innate(name, g1)))
    decoder = build.build_decoder(innate_config("gnet", g1))
    flops = step_flops(decoder, POPULATION, BATCH)
    best = {k: max(v) for k, v in rates.items()}
    rate = max(matmul)
    print(
        f"faces, {SIZE}x{SIZE} -> {HIDDEN} -> 1, SNES, population {POPULATION}, {BATCH} images; "
        f"generations per second, best of {args.repeats} (range)"
    )
    for name, v in rates.items():
        ratio = best[name] / best["by hand"]
        print(f"  {name:8s} {best[name]:7.1f}  ({min(v):.1f}-{max(v):.1f})  {ratio:.2f}x by hand")
    share = flops * best["gnet"] / rate
    print(
        f"  gnet generation: {flops / 1e6:.1f} MFLOP (decode + scaling + forward), "
        f"{flops * best['gnet'] / 1e9:.2f} GFLOP/s = {share:.1%} of the matmul rate "
        f"({rate / 1e9:.1f} GFLOP/s)"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"rates": rates, "matmul": matmul, "gnet_flops": flops}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
