"""Building the native kernels: compile `pairs.cpp` once per float type and widths, and cache it.

The library is compiled on first use with the system C++ compiler (``$CXX``,
else ``g++``), specialised for the MLP's widths and the float type, and cached
in ``$INNATE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/innate`` or
``~/.cache/innate``) under a name that hashes the source, the flags, the
compiler's version and the machine; a library that fails to load is built
again, and a build that fails returns its reason, so that the caller can fall
back to the torch path. With OpenMP where torch runs on it, the library shares
torch's thread pool (checked on load).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

ENV = "INNATE_KERNELS"
SOURCE = Path(__file__).with_name("pairs.cpp")
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fno-math-errno")


def cache_dir() -> Path:
    root = os.environ.get("INNATE_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "innate"


# The instruction sets the kernels are built for, widest first: 512-bit
# vectors (16 float lanes) where torch runs at AVX-512, 256-bit AVX2 + FMA.
AVX512 = ("-mavx512f", "-mavx2", "-mfma", "-DVBYTES=64")
AVX2 = ("-mavx2", "-mfma")


def flag_sets() -> list[list[str]]:
    """The compiler flags to try, best first: the widest vectors the CPU runs, with OpenMP where
    torch runs on it, then without; a set that fails to build falls back to the next."""
    # Wider vectors and FMA instructions only change speed: with contraction
    # off, every lane rounds as it would with the baseline instruction set,
    # whose std::fma rounds once too. (torch's AVX2 level implies FMA3.)
    isas = {"AVX512": [AVX512, AVX2], "AVX2": [AVX2]}.get(
        torch.backends.cpu.get_cpu_capability(), [()]
    )
    # The library then links the libgomp that torch has loaded (same soname),
    # so its parallel regions run on torch's OpenMP threads (checked on load).
    openmp = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    sets = []
    for isa in isas:
        flags = [*FLAGS, *isa]
        sets += [[*flags, "-fopenmp"], flags] if openmp else [flags]
    return sets


@functools.cache
def _compiler_id(compiler: str) -> str:
    """The compiler's version line and the machine, so that caches shared across hosts stay apart."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60)
        version = out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        version = ""
    return f"{platform.machine()} {version}"


@functools.cache
def build_library(real: str, widths: tuple[int, ...]) -> ctypes.CDLL | str:
    """The compiled library (cached on disk and in memory), or why it cannot be built."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler {compiler!r} on PATH (set CXX, or {ENV}=torch)"
    defines = [
        f"-DREAL={real}",
        f"-DWIDTHS={','.join(map(str, widths))}",
        f"-DN_WIDTHS={len(widths)}",
    ]
    error = ""
    for flags in flag_sets():
        lib = _load(compiler, flags, defines, f"pairs-{real}-{'x'.join(map(str, widths))}")
        if not isinstance(lib, str):
            break
        error = lib
    else:
        return error
    i32, i64, ptr, dbl = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p, ctypes.c_double
    lib.innate_pairs.argtypes = [i32] + [i64] * 6 + [ptr] * 5 + [dbl, dbl]
    lib.innate_pairs.restype = None
    lib.innate_project.argtypes = [i32] + [i64] * 5 + [ptr] * 4
    lib.innate_project.restype = None
    lib.innate_gnet_layer.argtypes = [i32, i64, ptr] + [i64] * 11 + [ptr] * 4 + [dbl, dbl]
    lib.innate_gnet_layer.restype = i32
    lib.innate_standardize.argtypes = [i32] + [i64] * 4 + [ptr] * 3 + [dbl, dbl]
    lib.innate_standardize.restype = None
    lib.openmp = bool(lib.innate_openmp()) and _shares_torch_openmp(lib)
    return lib


def _shares_torch_openmp(lib: ctypes.CDLL) -> bool:
    """Whether the library's OpenMP runtime is torch's (it follows torch.set_num_threads).

    Where torch ships a differently named runtime, the library loads a second
    one; its parallel regions would then compete with torch's threads, so the
    library runs its rows on the Python threads instead.
    """
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        return lib.innate_omp_max_threads() == threads + 1
    finally:
        torch.set_num_threads(threads)


def _load(
    compiler: str, flags: list[str], defines: list[str], stem: str, source: Path = SOURCE
) -> ctypes.CDLL | str:
    """The library built from `source` with these flags (from the cache, or compiled into it),
    or why not."""
    parts = [source.read_bytes(), _compiler_id(compiler).encode()]
    key = hashlib.sha256(b"\0".join([*parts, *(s.encode() for s in [*flags, *defines])]))
    path = cache_dir() / "kernels" / f"{stem}-{key.hexdigest()[:16]}.so"
    for attempt in range(2):
        if attempt or not path.exists():
            error = _compile(compiler, [*flags, *defines], path, source)
            if error is not None:
                return error
        try:
            return ctypes.CDLL(str(path))
        except OSError as e:  # a truncated or foreign file in the cache: build it again
            if attempt:
                return f"cannot load {path}: {e}"
    raise AssertionError("unreachable")


def _compile(compiler: str, flags: list[str], path: Path, source: Path = SOURCE) -> str | None:
    """Compile `source` to `path` atomically; the error text, or None on success."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".build-", suffix=".so")
        os.close(fd)
        proc = subprocess.run(
            [compiler, *flags, str(source), "-o", tmp],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            return f"{compiler} failed: {proc.stderr.strip()[-2000:]}"
        os.replace(tmp, path)  # concurrent builders write the same bytes
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot build into {path.parent}: {e}"
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


NOISE_SOURCE = Path(__file__).with_name("noise.cpp")
# The Box-Muller transform of torch's CPU normal_, as torch's build rounds it:
# the 8-lane AVX2 code of ATen's avx_mathfun.h with contraction as GCC
# compiles it by default (fused where it can), the same without contraction,
# or the C library's scalar functions.
NOISE_VARIANTS = ("avx2", "avx2-separate", "scalar")
MATHFUN = Path("ATen") / "native" / "cpu" / "avx_mathfun.h"


def noise_variants() -> list[str]:
    """The noise kernel's variants to try, likeliest first for this torch and CPU.

    torch's x86 AVX-512 dispatch reuses its AVX2 kernel for normal_; at the
    baseline instruction set (or ATEN_CPU_CAPABILITY=default) it is scalar.
    """
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return list(NOISE_VARIANTS)
    return ["scalar"]


@functools.cache
def build_noise_library(variant: str, defines: tuple[str, ...] = ()) -> ctypes.CDLL | str:
    """The noise kernel's library of one variant (cached on disk and in memory), or why not.

    `defines` are extra -D flags (tests build a variant that stalls on purpose).
    """
    if variant not in NOISE_VARIANTS:
        raise ValueError(f"unknown noise variant {variant!r}; valid: {', '.join(NOISE_VARIANTS)}")
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler {compiler!r} on PATH (set CXX, or {ENV}=torch)"
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC"]
    if variant == "scalar":
        flags.append("-ffp-contract=off")
    else:
        include = Path(torch.__file__).parent / "include"
        mathfun = include / MATHFUN
        if not mathfun.is_file():
            return f"torch's headers have no {MATHFUN}"
        digest = hashlib.sha256(mathfun.read_bytes()).hexdigest()[:16]
        contract = "fast" if variant == "avx2" else "off"
        flags += ["-mavx2", "-mfma", f"-ffp-contract={contract}", f"-I{include}"]
        flags += ["-DTORCH_AVX2", "-DCPU_CAPABILITY_AVX2", f"-DINNATE_MATHFUN={digest}"]
    openmp = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    error = ""
    for flag_set in [[*flags, "-fopenmp"], flags] if openmp else [flags]:
        lib = _load(compiler, flag_set, list(defines), f"noise-{variant}", NOISE_SOURCE)
        if not isinstance(lib, str):
            break
        error = lib
    else:
        return error
    i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    for name in ("innate_normal_float", "innate_normal_double"):
        getattr(lib, name).argtypes = [i32, ptr, i64, ptr, i64, ptr, ptr, i64]
        getattr(lib, name).restype = i32
    lib.openmp = bool(lib.innate_openmp()) and _shares_torch_openmp(lib)
    return lib
