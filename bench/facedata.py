"""Benchmark: what the faces objective's data costs per generation, bank against fresh.

For each batch size, one generation's minibatch (`Faces.batch` on the
generator a run seeds from (seed, generation)) is drawn from the bank and
rendered fresh, alternately in one process, so that both meet the same load;
the median and the range over the repeats are printed. Then the bank's
one-off costs: rendering and writing it (into a temporary cache, `--render`)
and reading it back from the file.

    python bench/facedata.py [--repeats 20] [--batch 256 --batch 384] [--render] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from evo.objectives.faces import BANK_SIZE, DATA, Faces
from evo.problem import STREAM_DATA
from tasks import facebank
from tasks.seeds import seeded


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def per_generation(batch: int, repeats: int, bank_size: int) -> dict[str, list[float]]:
    sources = {data: Faces(batch_size=batch, data=data, bank_size=bank_size) for data in DATA}
    sources["bank"].bank()  # loaded once per process, as in a run
    times: dict[str, list[float]] = {data: [] for data in sources}
    for generation in range(repeats):
        for data, objective in sources.items():
            generator = seeded(0, STREAM_DATA, generation, 0)
            times[data].append(timed(lambda o=objective, g=generator: o.batch(g)))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--bank-size", type=int, default=BANK_SIZE)
    parser.add_argument("--render", action="store_true", help="Also time rendering a bank.")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}; bank of {args.bank_size} images")
    for batch in args.batch or [256, 384]:
        times = per_generation(batch, args.repeats, args.bank_size)
        line = [f"batch {batch:5d}:"]
        for data, t in times.items():
            ms = sorted(1e3 * x for x in t)
            line.append(f"{data} {statistics.median(ms):7.2f} ms (range {ms[0]:.2f}-{ms[-1]:.2f})")
        print("  ".join(line))
    path = facebank.bank_path(0, args.bank_size)
    load = min(timed(lambda: facebank.build_face_bank(0, args.bank_size)) for _ in range(3))
    print(
        f"bank read from {path.name}: {1e3 * load:.0f} ms ({path.stat().st_size / 2**20:.0f} MiB)"
    )
    if args.render:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["INNATE_CACHE_DIR"] = tmp
            render = timed(lambda: facebank.build_face_bank(0, args.bank_size))
        print(f"bank rendered and written: {render:.1f} s")


if __name__ == "__main__":
    main()
