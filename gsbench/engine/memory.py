"""Host memory kept for reuse between training and inference steps (glibc on Linux).

A CPU step frees its activations and allocates them again at the next step. glibc returns the
freed top of the heap to the operating system at once, so every step faults the same pages in
again: 1.8 M page faults in 100 steps of ``pspnet101-smoke`` at 128 x 256 (batch 4, one thread),
with 4.2 s of the 20 s spent in the kernel. Keeping :data:`TOP_PAD_BYTES` at the top of the heap
when it shrinks (glibc's ``M_TOP_PAD``) makes that 0.23 M faults and 1.1 s, 13-17 % less wall
time (benchmarks/RESULTS.md); the process keeps up to that much more memory resident. Blocks up
to the same size are taken from the heap rather than mapped one by one (``M_MMAP_THRESHOLD``),
which glibc's adaptive threshold did before ``M_TOP_PAD`` turned it off: a fresh 10 MB tensor
otherwise faults its 2,500 pages in at each allocation, which made the forward passes of
multi-scale inference 1.09-1.29x as slow (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import ctypes
import functools
import sys

#: ``M_TOP_PAD`` and ``M_MMAP_THRESHOLD`` of glibc's ``mallopt`` (malloc.h).
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
#: Bytes glibc keeps at the top of the heap when it trims it (default 128 KiB).
TOP_PAD_BYTES = 256 << 20


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Have glibc keep :data:`TOP_PAD_BYTES` of freed heap for the next step; whether it took
    (False off Linux, or where the C library has no ``mallopt`` or refuses it)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # Setting M_TOP_PAD turns off glibc's adaptive mmap threshold, which would leave every block
    # over 128 KiB to mmap, faulted in at each allocation: blocks up to the pad come from the
    # heap instead.
    return mallopt(_M_TOP_PAD, TOP_PAD_BYTES) == 1 and \
        mallopt(_M_MMAP_THRESHOLD, TOP_PAD_BYTES) == 1
