"""Process-level settings for CPU inference: the C allocator's thresholds and arenas.

Measured on this project's workloads (``bench/cpu_allocator.py``); ``XHISTO_MALLOC_TUNING=0``
turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 * 2**20   # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 * 2**20
TOP_PAD = 64 * 2**20          # one arena heap: glibc's HEAP_MAX_SIZE on 64-bit

_tuned: bool | None = None
_lock = threading.Lock()


def tune_malloc() -> bool:
    """Let glibc keep freed blocks up to 32 MB for reuse instead of unmapping them (once per
    process; Linux with glibc only).

    PyTorch on CPU allocates every activation with ``malloc``. A batch of 64 patches of 128 px
    needs blocks of 8-17 MB, above glibc's default ``mmap`` threshold, so each forward pass
    mapped, page-faulted (zeroed) and unmapped them again: a third of the CPU time went to the
    kernel, and the unmaps stall every other thread of the process. Raising the ``mmap`` and
    trim thresholds keeps those blocks in the heap: on 2 CPU cores the bundled encoder ran
    1.6x faster and the demo classifier 1.3x (``bench/cpu_allocator.py``); the cost is that up
    to 256 MB of freed memory stays with the process.

    Batch threads (``models.inference.run_batches``) each got an arena of their own, made of
    64 MB heaps that glibc unmaps as soon as one falls empty, whatever the trim threshold: in
    some runs (it depends on the order of allocations) every batch faulted its activations in
    afresh again, with the thresholds set: 7k-506k page faults and up to 1.0 s of kernel time
    per 8192 patches of the encoder in two batch threads. So threads started from now on share
    the main arena (``M_ARENA_MAX`` 1; the big numeric work holds no allocator lock for long),
    and arenas made before (napari's threads, whose arenas new threads may take over) keep
    64 MB of free heap (``M_TOP_PAD``) instead of unmapping it: at most ~9k faults then, in
    every run (``bench/cpu_allocator.py``).

    Skipped when ``XHISTO_MALLOC_TUNING=0`` or when the user set glibc's own
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``; a user's ``MALLOC_ARENA_MAX`` or
    ``MALLOC_TOP_PAD_`` is kept (the rest is still set).

    Returns
    -------
    bool
        True when the thresholds are (now or already) set by this function.
    """
    global _tuned
    with _lock:
        if _tuned is not None:
            return _tuned
        _tuned = False
        if (os.environ.get("XHISTO_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux")
                or "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl or another C library: nothing to tune
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        ok = (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
              and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
        if ok and "MALLOC_ARENA_MAX" not in os.environ:
            ok = mallopt(_M_ARENA_MAX, 1) == 1
        if ok and "MALLOC_TOP_PAD_" not in os.environ:
            ok = mallopt(_M_TOP_PAD, TOP_PAD) == 1
        _tuned = bool(ok)
        log.debug("glibc malloc thresholds %s", "set" if ok else "not accepted")
        return _tuned
