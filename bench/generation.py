"""Benchmark: one generation's evaluation, batched over the population.

Two standard workloads:

- faces:  P=256, 25x25 -> 64 -> 1, gnet at >= 100x, 256 images;
- digits: P=64, 784 -> 100 -> 10, gnet at ~300x, 500 images.

The step is the real path of a run, `GenomeProblem.score` on a generation's
minibatch: decode, forward pass and objective, in the run's chunks of
genomes. A run draws each generation's minibatch once (every chunk and every
Ray actor reuses it), so the step is timed on a drawn batch, and again with
the draw included (a new generation at every call: for faces, the procedural
generator renders 256 new images). For each workload: its time (best of
--repeats), its floating-point operation count (decode, weight scaling,
forward), the achieved rate as a fraction of the matmul rate measured in the
same process (a square float32 GEMM, measured at the start and again next to
each workload; the higher rate is used) and, steadier when the machine's speed drifts,
the median over repeats of the ratio of one step's rate to one matmul's
timed right before it, the ratio to a Python loop that
scores one individual at a time (the baseline), the ratio to the same batched
step on the plain torch decode path (`INNATE_KERNELS=torch`, see
genome/native), the decode alone (in the same chunks), and the peak resident
memory of one step at P=1,024 (measured in a fresh subprocess, above the
memory held before the step).

    python bench/generation.py [--repeats 5] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from peak_rss import peak_above

from evo.objectives import make_objective
from evo.problem import EVAL_CHUNK, GenomeProblem
from genome import Layout, native
from genome.decoders import GNet


@dataclass(frozen=True)
class Workload:
    name: str
    input_shape: tuple[int, int]
    hidden: tuple[int, ...]
    output: int
    compression: float
    population_size: int
    batch: int
    objective: dict


WORKLOADS = {
    # The table's draw column renders fresh images; bench/facedata.py times the bank.
    "faces": Workload(
        "faces", (25, 25), (64,), 1, 100.0, 256, 256, {"name": "faces", "data": "fresh"}
    ),
    "digits": Workload(
        "digits", (28, 28), (100,), 10, 300.0, 64, 500, {"name": "digits", "dataset": "mnist"}
    ),
}


def setup(w: Workload, population_size: int, device: str):
    layout = Layout.build(w.input_shape, list(w.hidden), w.output)
    decoder = GNet.for_compression(layout, w.compression)
    objective = make_objective(
        w.objective["name"],
        batch_size=w.batch,
        device=device,
        **{k: v for k, v in w.objective.items() if k != "name"},
    )
    problem = GenomeProblem(decoder, [objective], device=device)
    population = decoder.init(population_size, torch.Generator().manual_seed(0), device=device)
    return problem, population


class Stepper:
    """Scores the population on a new generation's minibatch at every call.

    With `new_data=False` every call scores the same generation, whose batch is
    drawn once and cached: the time of decode, forward and objective alone.
    """

    def __init__(self, problem, population, loop: bool = False, new_data: bool = True):
        self.problem, self.population, self.loop, self.generation = problem, population, loop, 0
        self.new_data = new_data

    def __call__(self) -> torch.Tensor:
        self.generation += self.new_data
        name = self.problem.objectives[0].name
        if not self.loop:
            return self.problem.score(self.population, self.generation)[name]
        # The baseline: one individual at a time, through the same scoring code.
        pop = self.population
        return torch.cat(
            [
                self.problem.score(pop[i : i + 1], self.generation, exact=False)[name]
                for i in range(pop.shape[0])
            ]
        )


def best_time(fn, repeats: int, device: str) -> float:
    fn()  # warm-up: caches, allocator
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_rate(device: str, n: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    t = best_time(lambda: a @ b, repeats, device)
    return 2 * n**3 / t


def paired_fraction(fn, flops: int, repeats: int, device: str, n: int = 2048) -> float:
    """The median over `repeats` of (rate of one call of fn) / (rate of one matmul right before).

    Each pair is timed under the same load, so a slow spell of a shared
    machine slows both sides of a ratio instead of only one of the two best times.
    """
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    fn()
    ratios = []
    for _ in range(repeats):
        t_mm = best_time(lambda: a @ b, 1, device)
        t_fn = best_time(fn, 1, device)
        ratios.append((flops / t_fn) / (2 * n**3 / t_mm))
    return sorted(ratios)[len(ratios) // 2]


def step_flops(decoder, population_size: int, batch: int) -> int:
    """Decode, standardise and scale, forward: the arithmetic of one step."""
    layout = decoder.layout
    scaling = 6 * layout.n_weights  # standardise and scale every weight
    forward = sum(2 * o * i + 2 * o for o, i in layout.layer_shapes()) * batch
    return population_size * (decoder.decode_flops() + scaling + forward)


def peak_memory(name: str, population_size: int, device: str) -> float:
    """Peak resident memory (MiB) of one step at `population_size`, in a fresh process."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--peak",
            name,
            "--population",
            str(population_size),
            "--device",
            device,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _peak_child(name: str, population_size: int, device: str) -> None:
    problem, population = setup(WORKLOADS[name], population_size, device)
    problem.data(1)  # load the data set before measuring
    step = Stepper(problem, population)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        print((torch.cuda.max_memory_allocated() - base) / 2**20)
        return
    print(peak_above(step))


def run(name: str, repeats: int, device: str, rate: float) -> dict:
    w = WORKLOADS[name]
    problem, population = setup(w, w.population_size, device)
    decoder = problem.decoder
    batched = best_time(Stepper(problem, population, new_data=False), repeats, device)
    with_draw = best_time(Stepper(problem, population), repeats, device)
    # The matmul rate again, next to this workload's timings: the fractions use
    # the higher of the two measurements (the machine's rate drifts under load).
    rate = max(rate, matmul_rate(device))
    with native.use("torch"):
        torch_path = best_time(Stepper(problem, population, new_data=False), repeats, device)
    loop = best_time(
        Stepper(problem, population, loop=True, new_data=False), max(1, repeats // 2), device
    )
    check, reference = Stepper(problem, population), Stepper(problem, population, loop=True)
    torch.testing.assert_close(check(), reference(), rtol=1e-4, atol=1e-4)
    chunks = population.split(EVAL_CHUNK)
    decode_only = best_time(lambda: [decoder.decode(c) for c in chunks], repeats, device)
    flops = step_flops(decoder, w.population_size, w.batch)
    paired = paired_fraction(Stepper(problem, population, new_data=False), flops, repeats, device)
    return {
        "workload": name,
        "layout": decoder.layout.describe(),
        "decoder": f"gnet hidden={decoder.settings['hidden']}",
        "compression": round(decoder.compression(), 1),
        "population_size": w.population_size,
        "batch": w.batch,
        "step_s": batched,
        "decode_s": decode_only,
        # A step without a forward pass (batch 0) is the decode and its scaling.
        "decode_gflop_per_s": step_flops(decoder, w.population_size, 0) / decode_only / 1e9,
        "gflop": flops / 1e9,
        "gflop_per_s": flops / batched / 1e9,
        "matmul_gflop_per_s": rate / 1e9,
        "matmul_fraction": flops / batched / rate,
        "paired_matmul_fraction": paired,
        "with_draw_s": with_draw,
        "with_draw_matmul_fraction": flops / with_draw / rate,
        "native_decode": native.applies(population),
        "torch_path_step_s": torch_path,
        "speedup_vs_torch_path": torch_path / batched,
        "loop_s": loop,
        "speedup_vs_loop": loop / batched,
        "peak_mib_p1024": peak_memory(name, 1024, device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append")
    parser.add_argument("--peak", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    parser.add_argument("--population", type=int, default=1024, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak:
        _peak_child(args.peak, args.population, args.device)
        return
    rate = matmul_rate(args.device)
    print(
        f"device {args.device}, {torch.get_num_threads()} threads, "
        f"matmul rate {rate / 1e9:.1f} GFLOP/s (2048x2048 float32), "
        f"decode kernels: {native.mode()}"
    )
    rows = [run(n, args.repeats, args.device, rate) for n in args.workload or list(WORKLOADS)]
    for r in rows:
        print(
            f"{r['workload']:7s} {r['layout']:16s} {r['decoder']:22s} {r['compression']:6.1f}x "
            f"P={r['population_size']:<4d} B={r['batch']:<4d} step {r['step_s'] * 1e3:7.1f} ms "
            f"{r['gflop']:5.2f} GFLOP {r['gflop_per_s']:6.1f} GFLOP/s = "
            f"{100 * r['matmul_fraction']:4.1f}% of matmul ({r['matmul_gflop_per_s']:.0f} GFLOP/s; "
            f"paired median {100 * r['paired_matmul_fraction']:4.1f}%)  "
            f"with the data draw {r['with_draw_s'] * 1e3:6.1f} ms = "
            f"{100 * r['with_draw_matmul_fraction']:4.1f}%  "
            f"decode {r['decode_s'] * 1e3:6.1f} ms = {r['decode_gflop_per_s']:5.1f} GFLOP/s  "
            f"loop {r['loop_s'] * 1e3:7.1f} ms -> {r['speedup_vs_loop']:4.1f}x  "
            f"torch path {r['torch_path_step_s'] * 1e3:6.1f} ms -> "
            f"{r['speedup_vs_torch_path']:4.1f}x  "
            f"peak@P=1024 {r['peak_mib_p1024']:6.1f} MiB"
        )
    if args.json:
        args.json.write_text(json.dumps({"matmul_gflop_per_s": rate / 1e9, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
