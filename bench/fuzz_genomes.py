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
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GUARD_S = 20  # seconds one file may take before it is reported, not waited for
GUARD_BYTES = 3 * 2**30  # address space one file may add to a worker
FIELDS = ["format_version", "decoder", "settings", "layout", "genome_length", "compression"]
FIELDS += ["p_network_params", "fitness", "lineage", "extra"]
# Hostile JSON values, as the raw text that goes into the file.
VALUES = [
    *map(json.dumps, [10**309, -(10**309), 2**64, 2**63, -(2**63), 1e308, -1e308, 5e-324]),
    *map(json.dumps, [0, -1, 1, 3.5, True, False, None, "", [], {}, [1, 2], {"a": 1}]),
    *map(json.dumps, ["[bold red]x[/]", "[/bold]", "\x1b[2J\x1b[31mred", "\u202eevil", "\r\n"]),
    *map(json.dumps, ["\x00", "日本語", "x" * 100_000, "gnet", "binary", "onehot"]),
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", '"\\ud800"', '"a\\udfffb"',
    "1" + "0" * 5000, "[" * 40 + "]" * 40, "[" * 5000 + "]" * 5000,
    '{"a":' * 40 + "1" + "}" * 40,
]  # fmt: skip
KEYS = ["faces", "", "[red]k", "[/x]", "\x1b[31mk", "\u202ek", "x" * 1000, "\ud800"]
LAYOUTS = [
    [[3000, 3000], [2, 2], [1, 3]], [[1, 100_000], [1, 1], [1, 1]], [[512, 512], [1, 1], [1, 1]],
    [[2**62, 2], [1, 1]], [[0, 3], [1, 1]], [[-1, 3], [1, 1]], [[1.5, 3], [1, 1]],
    [["6", "5"], [1, 1]], [[True, 1], [1, 1]], [[1, 1]], [], [[1, 1]] * 300, [[1, 1]] * 3,
    [[6, 5], [2, 2], [1, 3]], [[6, 5], [4], [1, 3]], [[256, 1024], [1, 1]],
    [[256, 512], [255, 512], [1, 1]], [[16384, 16], [1, 1], [1, 1]], [[64, 64], [4, 4], [1, 2]],
    [[1, 60_000], [1, 1], [1, 1]], [[10**400, 1], [1, 1]],
]  # fmt: skip
SETTINGS = [
    {"hidden": [10**6, 2]}, {"hidden": [2**63]}, {"hidden": []}, {"hidden": [1] * 5000},
    {"code": "onehot"}, {"code": "[red]x"}, {"genes": 10**9}, {"genes": 0}, {"genes": 2**70},
    {"activations": ["sin"] * 1000}, {"activations": []}, {"standardize": "yes"},
    {"standardize": False}, {"x" * 10_000: 1}, {"hidden": [4096, 4096]},
]  # fmt: skip
DTYPES = ["F64", "F16", "BF16", "I32", "U8", "BOOL", "X", None, 1]
KINDS = {
    "bytes": 20, "truncate": 8, "length": 5, "field": 20, "nested": 15, "layout": 10,
    "settings": 7, "tensor": 8, "genes": 5, "random": 2,
}  # fmt: skip


# --- generating ----------------------------------------------------------------------
def write_bases(folder: Path) -> list[bytes]:
    """One real genome file per decoder (tiny layout, with fitness and lineage), as bytes."""
    import torch

    from genome import DECODERS, Layout, make_decoder
    from genome.files import save_genome

    layout = Layout.build((6, 5), [4], 3)
    small = {"gnet": {"hidden": [3, 3]}, "connectome": {"genes": 3}, "cppn": {"hidden": [4]}}
    out = []
    for name in sorted(DECODERS):
        dec = make_decoder(name, layout, **small.get(name, {}))
        genome = dec.init(1, torch.Generator().manual_seed(0))[0]
        lineage = {"run": "faces__gnet__0", "generation": 3, "seed": 0}
        path = save_genome(folder / f"{name}.genome", genome, dec, fitness={"faces": 0.5},
                           lineage=lineage)  # fmt: skip
        out.append(path.read_bytes())
    return out


def _split(raw: bytes) -> tuple[dict, dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return header, json.loads(header["__metadata__"]["innate"]), raw[8 + n :]


def _join(header: dict, meta_text: str, data: bytes) -> bytes:
    header = {**header, "__metadata__": {"innate": meta_text}}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _with_raw(meta: dict, path: list[str], raw: str) -> str:
    """The metadata as JSON text with the value at `path` replaced by the raw text."""
    d = meta
    for k in path[:-1]:
        d = d.setdefault(k, {}) if isinstance(d.get(k), dict) else d.setdefault("x", {})
    d[path[-1]] = "@@RAW@@"
    return json.dumps(meta).replace('"@@RAW@@"', raw, 1)


def _consistent(meta: dict, sheets: Any) -> None:
    """Update p_network_params and compression to match a new layout, when computable."""
    ok = isinstance(sheets, list) and len(sheets) < 1000
    ok = ok and all(isinstance(s, list) and len(s) == 2 for s in sheets)
    if ok and all(isinstance(v, int) and abs(v) < 2**64 for s in sheets for v in s):
        sizes = [a * b for a, b in sheets]
        params = sum(sizes[k] * sizes[k + 1] + sizes[k + 1] for k in range(len(sizes) - 1))
        meta["p_network_params"] = params
        meta["compression"] = params / meta["genome_length"]


def hostile_file(bases: list[bytes], seed: int, i: int) -> tuple[bytes, str]:
    """File i of the run with this seed: (its bytes, the kind of mutation)."""
    rng = random.Random(seed * 1_000_003 + i)
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    raw = rng.choice(bases)
    header, meta, data = _split(raw)
    if kind == "bytes":
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            pos = (
                rng.randrange(min(len(b), 8 + 600)) if rng.random() < 0.7 else rng.randrange(len(b))
            )
            b[pos] = rng.randrange(256)
        out = bytes(b)
    elif kind == "truncate":
        out = raw[: rng.randrange(len(raw))]
    elif kind == "length":
        n = rng.choice(
            [0, 1, 2**63, 2**64 - 1, 2**20, 2**20 + 1, len(raw), rng.randrange(len(raw))]
        )
        out = struct.pack("<Q", n) + raw[8:]
    elif kind in ("field", "nested"):
        if kind == "field":
            path = [rng.choice(FIELDS)]
        else:
            path = [rng.choice(["fitness", "lineage", "settings", "layout"]), rng.choice(KEYS)]
        out = _join(header, _with_raw(meta, path, rng.choice(VALUES)), data)
    elif kind == "layout":
        sheets = rng.choice(LAYOUTS)
        meta["layout"] = {"format": rng.choice([1, 1, 1, 2, "1"]), "sheets": sheets}
        if rng.random() < 0.8:
            _consistent(meta, sheets)
        out = _join(header, json.dumps(meta), data)
    elif kind == "settings":
        meta["settings"] = {**meta["settings"], **rng.choice(SETTINGS)}
        out = _join(header, json.dumps(meta), data)
    elif kind == "tensor":
        entry = dict(header["genome"])
        edit = rng.choice(["dtype", "shape", "offsets", "extra", "metadata", "dup"])
        if edit == "dtype":
            entry["dtype"] = rng.choice(DTYPES)
        elif edit == "shape":
            entry["shape"] = rng.choice([[], [-1], [2**62], [len(data) // 4, 1], "8", [1.5]])
        elif edit == "offsets":
            entry["data_offsets"] = rng.choice([[4, len(data)], [0, 2**64], [0], None, [0, -4]])
        header = {**header, "genome": entry}
        if edit == "extra":
            header["other"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
        text = json.dumps(meta)
        out = _join(header, text, data)
        if edit == "metadata":
            h = {
                **header,
                "__metadata__": rng.choice(
                    [{"innate": 5}, {"x": "1"}, [], {"innate": text, "n": 1}]
                ),
            }
            h_text = json.dumps(h).encode()
            out = struct.pack("<Q", len(h_text)) + h_text + data
        elif edit == "dup":
            h_text = json.dumps({**header, "__metadata__": {"innate": text}}).encode()
            dup = (
                b'{"genome": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}, ' + h_text[1:]
            )
            out = struct.pack("<Q", len(dup)) + dup + data
    elif kind == "genes":
        b = bytearray(data)
        value = rng.choice([float("nan"), float("inf"), -float("inf"), 3.4e38, -3.4e38, 1e-45])
        for _ in range(rng.randint(1, 4)):
            pos = 4 * rng.randrange(len(b) // 4)
            b[pos : pos + 4] = struct.pack("<f", value)
        out = raw[: len(raw) - len(data)] + bytes(b)
    else:
        out = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
    if kind not in ("bytes", "truncate", "random") and rng.random() < 0.1:
        b = bytearray(out)  # a second, byte-level fault on top
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        out = bytes(b)
    return out, kind


# --- running -------------------------------------------------------------------------
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
