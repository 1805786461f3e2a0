"""bench/peak_rss.py: the peak memory the benchmarks print is the call's own, not a parent's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

CHILD = """
import sys
sys.path.insert(0, {bench!r})
from peak_rss import peak_above
block = bytes(range(256)) * 16  # 4 KiB, made at run time: each copy is a heap block
# Setup that peaks and frees 120 MiB of heap blocks, below one it keeps: free
# heap left resident, which the call's blocks would reuse unless it is handed back.
setup = [bytes(bytearray(block)) for _ in range(30000)]
pin = bytes(bytearray(block))
del setup
print(peak_above(lambda: [bytes(bytearray(block)) for _ in range({mib} * 256)]))
"""


def _child_peak(mib: int) -> float:
    code = CHILD.format(bench=str(BENCH), mib=mib)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


@pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK),
    reason="the kernel does not let this process reset its high-water mark",
)
def test_peak_is_the_calls_own():
    # This test process holds torch and more (hundreds of MiB): a child's ru_maxrss
    # carries that peak across its exec; the child's own high-water mark does not.
    held = 2 * 200 * 2**20
    ballast = b"p" * held  # the parent holds 400 MiB while its child measures
    try:
        none, fifty = _child_peak(0), _child_peak(50)
    finally:
        del ballast
    assert none < 10, none
    assert 45 < fifty < 70, fifty
