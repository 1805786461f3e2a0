"""Hostile genome files: generate thousands from a fixed seed, load and inspect each.

Every file is a mutation of a real genome file written by `save_genome` (one
per decoder, with fitness and lineage): byte flips, truncations, forged header
lengths, metadata fields set to extreme or ill-typed values (integers past
1e308, 1e999, NaN and Infinity literals, lone surrogates, rich markup, ANSI
escapes, deep nesting, long strings), huge or malformed layouts and decoder
settings, wrong tensor dtypes, shapes and offsets, and non-finite genes.
File i is a pure function of (seed, i).

Each file goes through `load_genome`, then through `innate inspect` and
`innate inspect --json` in-process; a sample also through the real CLI in a
subprocess. Outcomes: refused (one-line `GenomeFileError`, exit 2 with one
line), loaded safely (exit 0, strict JSON, no escape byte in the output), or a
crash (anything else, which must not happen). Each file runs under a time and
address-space guard, and its peak resident memory is measured.

    python bench/fuzz_genomes.py [--files 10000] [--seed 0] [--workers 2] [--cli-sample 16]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_genomes import KINDS, hostile_file, write_bases  # noqa: E402

sys.path.insert(0, str(ROOT))

GUARD_S = 20  # seconds one file may take before it is reported, not waited for
GUARD_BYTES = 3 * 2**30  # address space one file may add to a worker


class Guard(BaseException):
    """A file ran past GUARD_S (a BaseException, so no `except Exception` swallows it)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise Guard


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmHWM: peak resident memory), 0 if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    # "5" resets VmHWM to the current RSS, so that each file's peak is its own.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _setup_worker(guard: bool) -> None:
    if guard:
        signal.signal(signal.SIGALRM, _on_alarm)
        limit = _status("VmSize") + GUARD_BYTES
        if limit > GUARD_BYTES:
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))


def _cli_fault(res: Any) -> str | None:
    """Why an in-process CLI result is not a clean outcome, or None."""
    if isinstance(res.exception, MemoryError):
        raise res.exception
    text = res.stdout + res.stderr
    if "\x1b" in text:
        return "an escape byte reached the terminal"
    if res.exit_code == 0:
        return None
    if res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1:
        return None
    exc = res.exception
    return f"exit {res.exit_code}: {type(exc).__name__}: {str(exc)[:200]}"


def check(path: Path, runner: Any, app: Any) -> tuple[str, str]:
    """(outcome, detail) of one file: refused, loaded, inspect_refused or crash."""
    from genome.files import GenomeFileError, load_genome

    try:
        load_genome(path)
        outcome = "loaded"
    except GenomeFileError as e:
        if "\n" in str(e):
            return "crash", f"multi-line error: {str(e)[:200]!r}"
        outcome = "refused"
    except (Guard, MemoryError):
        raise
    except Exception as e:
        return "crash", f"load_genome: {type(e).__name__}: {str(e)[:200]}"
    text = runner.invoke(app, ["inspect", str(path)])
    fault = _cli_fault(text)
    if fault:
        return "crash", f"inspect: {fault}"
    if outcome == "refused":
        return ("refused", "") if text.exit_code == 2 else ("crash", "CLI loaded a refused file")
    if text.exit_code == 2:
        return "inspect_refused", text.stderr.strip()[:200]
    res = runner.invoke(app, ["inspect", str(path), "--json"])
    fault = _cli_fault(res)
    if fault or res.exit_code != 0:
        return "crash", f"inspect --json: {fault or res.exit_code}"

    def strict(name: str) -> None:
        raise ValueError(f"{name} in --json output")

    try:
        json.loads(res.stdout, parse_constant=strict)
    except ValueError as e:
        return "crash", f"inspect --json is not strict JSON: {e}"
    return "loaded", ""


def run_chunk(args: tuple[int, list[int], str, bool]) -> list[dict[str, Any]]:
    """Generate, check and delete files `indices`; one record per file."""
    seed, indices, folder, guard = args
    import typer.main
    import typer.testing

    from evo.cli import app

    # typer rebuilds the click command from the app on every invoke (~40 ms); once will do.
    typer.testing._get_command = functools.lru_cache(maxsize=1)(typer.main.get_command)

    bases = [p.read_bytes() for p in sorted(Path(folder, "bases").glob("*.genome"))]
    runner = typer.testing.CliRunner()
    out = []
    for i in indices:
        data, kind = hostile_file(bases, seed, i)
        path = Path(folder, f"{i:05d}.genome")
        path.write_bytes(data)
        before = _status("VmRSS")
        _reset_peak()
        start = time.perf_counter()
        if guard:
            signal.alarm(GUARD_S)
        try:
            outcome, detail = check(path, runner, app)
        except Guard:
            outcome, detail = "guard", f"ran past {GUARD_S} s"
        except MemoryError:
            outcome, detail = "guard", f"needed more than {GUARD_BYTES >> 30} GiB"
        finally:
            signal.alarm(0)
        seconds = time.perf_counter() - start
        rec = {"i": i, "kind": kind, "outcome": outcome, "detail": detail, "seconds": seconds}
        out.append({**rec, "peak_rss": _status("VmHWM"), "rss_before": before})
        path.unlink()
    return out


def cli_sample(seed: int, records: list[dict], folder: Path, n: int) -> tuple[int, list[str]]:
    """Run n files (loaded ones and refused ones) through the real CLI; list the faults."""
    loaded = [r["i"] for r in records if r["outcome"] == "loaded"]
    refused = [r["i"] for r in records if r["outcome"] != "loaded"]
    rng = random.Random(seed)
    pick = rng.sample(loaded, min(len(loaded), n // 2))
    pick += rng.sample(refused, min(len(refused), n - len(pick)))
    bases = [p.read_bytes() for p in sorted((folder / "bases").glob("*.genome"))]
    faults = []
    for j, i in enumerate(pick):
        path = folder / f"cli{i:05d}.genome"
        path.write_bytes(hostile_file(bases, seed, i)[0])
        cmd = [sys.executable, "-m", "evo.cli", "inspect", str(path)] + ["--json"] * (j % 2)
        res = subprocess.run(cmd, capture_output=True, cwd=ROOT, timeout=300)
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        bad = res.returncode not in (0, 2) or (res.returncode == 2 and len(err) != 1)
        if bad or b"\x1b" in res.stdout + res.stderr or b"Traceback" in res.stderr:
            faults.append(f"file {i}: exit {res.returncode}: {err[-1:] if err else ''}")
        path.unlink()
    return len(pick), faults


def fuzz(files: int, seed: int, workers: int, folder: Path, guard: bool = True) -> list[dict]:
    """Check `files` hostile files (in `workers` processes; 0: in this one); one record each."""
    (folder / "bases").mkdir(parents=True, exist_ok=True)
    write_bases(folder / "bases")
    size = 50
    chunks = [(seed, list(range(s, min(files, s + size))), str(folder), guard)
              for s in range(0, files, size)]  # fmt: skip
    if workers == 0:
        return [r for c in chunks for r in run_chunk(c)]
    records = []
    with ProcessPoolExecutor(workers, initializer=_setup_worker, initargs=(guard,)) as pool:
        for part in pool.map(run_chunk, chunks):
            records += part
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cli-sample", type=int, default=16, help="Files also run as a subprocess.")
    ap.add_argument("--json", type=Path, help="Also write the figures as JSON here.")
    args = ap.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        records = fuzz(args.files, args.seed, args.workers, Path(tmp))
        n_cli, cli_faults = cli_sample(args.seed, records, Path(tmp), args.cli_sample)
    outcomes = Counter(r["outcome"] for r in records)
    worst = max(records, key=lambda r: r["peak_rss"])
    slowest = max(records, key=lambda r: r["seconds"])
    mib = round(worst["peak_rss"] / 2**20, 1)
    rows = [
        ("refused with a one-line GenomeFileError (CLI: exit 2, one line)", outcomes["refused"]),
        ("loaded safely (inspect text and strict --json, exit 0)", outcomes["loaded"]),
        ("loaded, inspect refused in one line (graph too large)", outcomes["inspect_refused"]),
        ("crashes (any other exception or output)", outcomes["crash"]),
        (f"guard hits (over {GUARD_S} s or {GUARD_BYTES >> 30} GiB)", outcomes["guard"]),
        ("peak RSS of the worst file", f"{mib} MiB ({worst['kind']})"),
        ("RSS before that file", f"{round(worst['rss_before'] / 2**20, 1)} MiB"),
        ("slowest file", f"{slowest['seconds']:.2f} s ({slowest['kind']})"),
        ("through the real CLI (subprocess)", f"{n_cli} files, {len(cli_faults)} faults"),
        ("wall time", f"{time.perf_counter() - start:.0f} s"),
    ]
    print(f"hostile genome files tried: {len(records)} (seed {args.seed})")
    for label, value in rows:
        print(f"  {label}: {value}")
    for r in records:
        if r["outcome"] in ("crash", "guard"):
            print(f"  {r['outcome']} file {r['i']} ({r['kind']}): {r['detail']}")
    for f in cli_faults:
        print(f"  CLI {f}")
    if args.json:
        by_kind = {k: dict(Counter(r["outcome"] for r in records if r["kind"] == k)) for k in KINDS}
        doc = {"files": len(records), "seed": args.seed, **dict(rows), "by_kind": by_kind}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if outcomes["crash"] or outcomes["guard"] or cli_faults:
        sys.exit(1)


if __name__ == "__main__":
    main()
