"""Keep freed memory in the process on CPU, so training steps stop paying for page faults.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block above its
mmap threshold (at most 32 MB, usually far less) with a fresh ``mmap`` and returns it to the
system on ``free``. A training step allocates and frees gigabytes of activations and gradients,
so every step faults in and zeroes every page again: on this project's 2-core machines that is
about a third of an Earthformer-SEVIR forward+backward (``benchmarks/run_all.py
--cpu-allocator reuse``). Raising the mmap and trim thresholds makes ``malloc`` keep freed blocks
in its heap and hand them out again: the same step runs 1.5× faster, at the price of a higher
peak resident memory (freed blocks are reused less tightly than fresh mappings; 1.4× measured).
Small frames change little (≈1.05×): their blocks mostly stay under glibc's own threshold.

The settings are process-wide and cannot be undone for memory already kept. Only glibc is
supported (Linux); elsewhere :func:`keep_freed_memory` does nothing and says so. Training applies
it through ``trainer.cpu_allocator`` (``earthcast.training.runner.CpuAllocatorPolicy``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Literal

CpuAllocator = Literal["system", "reuse"]
CPU_ALLOCATORS = ("system", "reuse")

_M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1  # mallopt takes an int: blocks up to 2 GiB come from the heap

# the same settings as environment variables, for a process started from here (e.g. the
# reference implementation in a benchmark, so both sides run under one allocator policy)
REUSE_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(_LARGEST), "MALLOC_TRIM_THRESHOLD_": str(_LARGEST)}


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if os.name != "posix" or name is None:
        return None
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None  # musl, macOS libSystem, …
    return libc


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep and reuse freed blocks up to 2 GiB (see module docstring).

    Returns:
        True when the settings were applied; False on a C library other than glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    applied = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_LARGEST))
    applied &= libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_LARGEST))
    return bool(applied)
