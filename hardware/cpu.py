"""CPU tuning that must happen before paddle is imported."""

from __future__ import annotations

import os
import platform
import time

from .tables import BF16_ISA, MKL_CPU_TYPES, MKL_SLOW_PATH_VENDORS, OPENBLAS_CORETYPES


def cpuinfo_field(name: str) -> str:
    """The first ``name`` line of /proc/cpuinfo (``vendor_id``, ``model name``...), or ``""`` when absent."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""


def cpu_vendor() -> str:
    """``AuthenticAMD``, ``HygonGenuine``, ``GenuineIntel``... or ``""`` when unknown (non-x86, no /proc)."""
    return cpuinfo_field("vendor_id")


def cpu_has_bf16() -> bool:
    """Whether this CPU has an instruction oneDNN runs BF16 matmuls with (:data:`hardware.tables.BF16_ISA`)."""
    return bool(set(cpuinfo_field("flags").split()) & set(BF16_ISA))


def tune_cpu_env() -> dict[str, str]:
    """Set environment variables that speed Paddle up on this CPU; return what was set.

    Paddle's CPU wheel computes matmuls with Intel's MKL, which takes a slow generic path on AMD and on
    the AMD-derived Hygon CPUs common in 信创 servers. ``MKL_DEBUG_CPU_TYPE`` makes it use the best kernel family
    the CPU's flags allow (:data:`hardware.tables.MKL_CPU_TYPES`: AVX-512 where the CPU has it, e.g. Zen 4 and 5,
    else AVX2; measured on a Zen 5: 4.3x the generic path's GEMM rate, 1.8x the AVX2 family's). It only takes
    effect if set before MKL loads, i.e. before ``import paddle``; a value the user set is kept.
    """
    if cpu_vendor() not in MKL_SLOW_PATH_VENDORS:
        return {}
    return _set_by_flags("MKL_DEBUG_CPU_TYPE", MKL_CPU_TYPES)


# glibc malloc, for a process that runs the same model over and over: give freed memory back to the OS only when
# more than this lies free at the top of the heap (M_TRIM_THRESHOLD)...
MALLOC_TRIM_BYTES = 1 << 30
# ...and take blocks up to this size from the heap, not from a fresh mmap each time (M_MMAP_THRESHOLD; 32 MB is
# glibc's own upper limit for it on 64-bit machines).
MALLOC_MMAP_BYTES = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>


def keep_freed_memory() -> dict[str, int]:
    """Make glibc keep the memory a model run frees for the next run; return what was set ({} where not glibc).

    glibc adapts its thresholds to the blocks it sees freed, and by the order of a run's allocations a process can
    settle in a state where every run hands a few hundred MB back to the OS and faults it in again: Paddle
    Inference's fp32 ViT-B-16 image tower at batch 8 on a 2-core Zen 5 did so in some fresh processes and not in
    others (``benchmarks/bench_malloc_faults.py``). Fixed thresholds also end glibc's adapting, so both are set
    (the trim threshold alone would send every block over 128 KB to mmap: 1.3 GB of faults per run there).
    Process-wide: a process keeps up to :data:`MALLOC_TRIM_BYTES` it freed as its own (what a long-running server
    wants)."""
    import ctypes
    import ctypes.util

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return {}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    done = {}
    for name, param, value in (("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, MALLOC_MMAP_BYTES),
                               ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, MALLOC_TRIM_BYTES)):  # fmt: skip
        if mallopt(param, value) == 1:
            done[name] = value
    return done


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_training_processes(limit: int = 2) -> int:
    """Data-parallel processes for CPU training: one per usable core, at most ``limit``. Paddle's eager CPU kernels
    run on one thread, so one process leaves the other cores idle (``python -m paddle.distributed.launch
    --nproc_per_node N``; scripts/quickstart.sh uses this)."""
    return max(1, min(limit, usable_cores()))


def tune_openblas_env() -> dict[str, str]:
    """Name this CPU's OpenBLAS kernels (``OPENBLAS_CORETYPE``) by its ISA flags, so an OpenBLAS that does not know
    the CPU model does not fall back to its SSE3 kernels (4x slower GEMM measured here; ``OPENBLAS_CORETYPES``).
    Takes effect for an OpenBLAS loaded after this call (faiss's: call before ``import faiss``); a value the user
    set is kept. Returns what was set."""
    return _set_by_flags("OPENBLAS_CORETYPE", OPENBLAS_CORETYPES)


def _set_by_flags(variable: str, table: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, str]:
    """On x86-64, set ``variable`` to the first value of ``table`` whose flags this CPU has (unless the user set it);
    return what was set."""
    if platform.machine().lower() not in ("x86_64", "amd64") or variable in os.environ:
        return {}
    flags = set(cpuinfo_field("flags").split())
    for value, needs in table:
        if flags.issuperset(needs):
            os.environ[variable] = value
            return {variable: value}
    return {}


# Other processes keeping more than this many cores busy make a timing unreliable: tools/benchmark.py calls its
# groups too busy to tell apart above it, and backend="auto" does not cache a decision measured above it (a
# decision measured at 0.45 busy cores of 2 picked the slower backend for a quiet machine).
BUSY_OTHER_CORES = 0.25


class OtherLoad:
    """CPU time used by processes other than ``pids`` since this object was made, in cores: all busy time in
    /proc/stat minus theirs from /proc/<pid>/stat (all their threads). A measurement taken while this is
    high was taken on a busy machine. ``cores()`` is None where /proc is missing (not Linux)."""

    def __init__(self, pids: list[int] | None = None):
        self.pids = pids or [os.getpid()]
        self.start = (time.perf_counter(), _busy_seconds(), self._ours())

    def _ours(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
            except (OSError, ValueError, IndexError):
                pass
        return total

    def cores(self) -> float | None:
        t0, busy0, ours0 = self.start
        busy = _busy_seconds()
        if busy is None or busy0 is None:
            return None
        return max(0.0, (busy - busy0) - (self._ours() - ours0)) / max(time.perf_counter() - t0, 1e-6)


def _busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (/proc/stat), or None without /proc."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
