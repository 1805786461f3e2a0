"""Benchmark: the batched inner loop against a Python loop over genomes x episodes.

The batched path is `lifetime.fewshot.accuracy` on a population of P genomes
and E episodes at once: adapt every (genome, episode) pair with the rule,
then score the queries. The baseline is the same function called once per
pair, P x E calls, in one process with the same data. Reported per rule and
head: the time of each (best of --repeats for the batched path, one pass of
the loop), their ratio, the (genome, episode) pairs adapted per second, and
the peak memory of one batched call (in a fresh process, above what it held
before; on CUDA, the allocator's peak).

    python bench/lifetime.py                      # P=64, 16 episodes, 5-way 5-shot, 10 steps
    python bench/lifetime.py --rules sgd --heads all --repeats 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peak_rss import peak_above

from genome import Layout
from genome.decoders import GNet
from lifetime.fewshot import accuracy
from lifetime.rules import RULES, make_rule
from tasks.episodes import draw_episodes, load_source

HEADS = ("linear", "all")


def setup(args) -> tuple:
    layout = Layout.build((28, 28), [args.hidden], 10)
    decoder = GNet.for_compression(layout, 100)
    population = decoder.init(args.population, torch.Generator().manual_seed(0))
    phenotype = decoder.decode(population.to(args.device))
    source = load_source("digits", "evaluation", (28, 28), args.device)
    episodes = draw_episodes(
        source, way=args.way, shot=args.shot, query=15, indices=args.episodes, seed=0
    )
    return phenotype, episodes.to(args.device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def loop(phenotype, episodes, rule, head) -> torch.Tensor:
    """The baseline: one call per (genome, episode) pair."""
    out = torch.empty(phenotype.population_size, len(episodes), dtype=torch.float64)
    for p in range(phenotype.population_size):
        one = phenotype.select([p])
        for e in range(len(episodes)):
            out[p, e] = accuracy(one, episodes.select(slice(e, e + 1)), rule, head)[0, 0]
    return out


def peak_memory(args, rule: str, head: str) -> float:
    cmd = [sys.executable, __file__, "--peak", f"{rule}:{head}"]
    for key in ("population", "episodes", "way", "shot", "steps", "hidden", "device"):
        cmd += [f"--{key}", str(getattr(args, key))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _peak_child(args) -> None:
    rule_name, head = args.peak.split(":")
    phenotype, episodes = setup(args)
    rule = make_rule(rule_name, steps=args.steps)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        accuracy(phenotype, episodes, rule, head)
        print((torch.cuda.max_memory_allocated() - base) / 2**20)
        return
    print(peak_above(lambda: accuracy(phenotype, episodes, rule, head)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--way", type=int, default=5)
    parser.add_argument("--shot", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument(
        "--peak", metavar="RULE:HEAD", help="print the peak memory (MiB) of one batched call alone"
    )
    args = parser.parse_args()
    if args.peak:
        _peak_child(args)
        return
    phenotype, episodes = setup(args)
    pairs = args.population * args.episodes
    print(
        f"P={args.population} genomes x {args.episodes} episodes ({args.way}-way {args.shot}-shot, "
        f"15 queries), body 28x28 -> {args.hidden} -> new head, {args.steps} steps, "
        f"{torch.get_num_threads()} threads, {args.device}"
    )
    rows = []
    for rule_name in args.rules.split(","):
        rule = make_rule(rule_name, steps=args.steps)
        for head in args.heads.split(","):
            batched = min(
                timed(lambda r=rule, h=head: accuracy(phenotype, episodes, r, h), args.device)
                for _ in range(args.repeats)
            )
            looped = timed(lambda r=rule, h=head: loop(phenotype, episodes, r, h), args.device)
            row = {
                "rule": rule_name,
                "head": head,
                "batched_s": batched,
                "loop_s": looped,
                "speedup": looped / batched,
                "pairs_per_s": pairs / batched,
                "peak_mib": peak_memory(args, rule_name, head),
            }
            rows.append(row)
            print(
                f"{rule_name:8s} {head:7s} batched {batched:7.3f} s  loop {looped:7.2f} s  "
                f"x{row['speedup']:6.1f}  {row['pairs_per_s']:8.0f} episodes/s  "
                f"peak {row['peak_mib']:7.1f} MiB"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
