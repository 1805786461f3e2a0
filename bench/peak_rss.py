"""Peak resident memory of one call, measured in the calling process (Linux).

Benchmarks run the call in a fresh child process (`python bench/X.py --peak
...`) and read what it prints. The heap's free memory is first handed back to
the system (glibc's `malloc_trim`), so that the call's allocations are not
served from pages its setup left resident; then the peak is the address
space's own high-water mark (VmHWM), reset to the current resident set just
before the call, less that resident set. Not `ru_maxrss`: Linux carries into
it the high-water mark of the address space a process had before its exec,
so a child started by a parent that once held 300 MiB reports the parent's
peak.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import sys
from collections.abc import Callable
from pathlib import Path


def status_kib(field: str) -> int:
    """A /proc/self/status field (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_above(fn: Callable[[], object]) -> float:
    """MiB that fn() adds to the resident set at its peak; NaN where this cannot be told.

    Without glibc the call may reuse free heap its setup left resident (a lower
    bound). Where the high-water mark cannot be reset (/proc/self/clear_refs
    not writable), the process's own since its start would stand, set perhaps
    by its setup: NaN, with a line on stderr, rather than that.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # glibc; elsewhere the free heap stays
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError as e:
        print(f"peak memory not measured: cannot reset the high-water mark ({e})", file=sys.stderr)
        return math.nan
    before = status_kib("VmRSS")
    fn()
    return (status_kib("VmHWM") - before) / 1024
