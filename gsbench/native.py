"""Small C kernels compiled on first use, for the loops that vectorised NumPy or PyTorch cannot
make fast (RANet's segment walks, the boundary F-score's disk searches).

A kernel's C source is compiled with the system C compiler (``$CC``, else ``cc``) into a shared
library in gsbench's cache folder (``$GSBENCH_CACHE_DIR``, else ``~/.cache/gsbench``), named by
a hash of the source, flags and compiler, and loaded with :mod:`ctypes`. Without a working
compiler, or with ``GSBENCH_NATIVE=0``, :meth:`NativeLibrary.get` returns None and the caller
runs its vectorised form instead: same results, slower.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def native_enabled() -> bool:
    """False when ``GSBENCH_NATIVE=0`` asks for the vectorised forms only."""
    return os.environ.get("GSBENCH_NATIVE", "1") != "0"


def cache_dir() -> Path:
    root = os.environ.get("GSBENCH_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "gsbench"


class NativeLibrary:
    """One C source, built once per process (and once per machine, through the cache)."""

    def __init__(self, name: str, source: str, declare: Callable[[ctypes.CDLL], None],
                 flags: Sequence[str] = ("-O3", "-std=c99"), purpose: str = "") -> None:
        self.name, self.source, self.declare = name, source, declare
        self.flags, self.purpose = tuple(flags), purpose or name
        self._lock = threading.Lock()
        self._library: ctypes.CDLL | None = None
        self._tried = False

    def get(self) -> ctypes.CDLL | None:
        """The compiled library, or None (no compiler, a failed build, or ``GSBENCH_NATIVE=0``)."""
        if not native_enabled():
            return None
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self._library = self._compile()
                except (OSError, subprocess.SubprocessError) as error:
                    warnings.warn(f"the compiled {self.purpose} is unavailable ({error}); using the "
                                  "slower vectorised form", RuntimeWarning, stacklevel=3)
                    self._library = None
        return self._library

    def _compile(self) -> ctypes.CDLL | None:
        compiler = os.environ.get("CC") or "cc"
        if shutil.which(compiler) is None:
            return None
        key = "\0".join([self.source, compiler, *self.flags])
        tag = hashlib.sha256(key.encode()).hexdigest()[:16]
        target = cache_dir() / f"{self.name}_{tag}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                source = Path(scratch) / f"{self.name}.c"
                source.write_text(self.source)
                built = Path(scratch) / target.name
                subprocess.run([compiler, *self.flags, "-shared", "-fPIC", "-o", str(built),
                                str(source), "-lm"], check=True, capture_output=True, timeout=120)
                os.replace(built, target)  # atomic: a concurrent build replaces it whole
        library = ctypes.CDLL(str(target))
        self.declare(library)
        return library


_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process, threads, pool)
_pool_lock = threading.Lock()


def thread_pool(threads: int) -> ThreadPoolExecutor:
    """A pool of at least ``threads`` threads for the compiled calls (ctypes releases the GIL
    while they run), kept from call to call within a process (a forked child makes its own)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < threads:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)  # too small: its threads end once idle
            _pool = (os.getpid(), threads,
                     ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gsbench-native"))
        return _pool[2]


def spans(total: int, threads: int, min_span: int) -> list[tuple[int, int]]:
    """``range(total)`` as contiguous ``(start, end)`` ranges of near-equal size: one per
    thread, fewer where a range would hold under ``min_span`` items (at least one range)."""
    parts = max(1, min(threads, total // min_span))
    bounds = [total * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def run_in_spans(call: Callable[[int, int], None], total: int, threads: int,
                 min_span: int) -> None:
    """``call(start, end)`` over the :func:`spans` of ``range(total)``, in the calling thread
    where there is one span, else one span per thread of :func:`thread_pool`."""
    ranges = spans(total, threads, min_span)
    if len(ranges) == 1:
        call(*ranges[0])
        return
    for future in [thread_pool(len(ranges)).submit(call, *r) for r in ranges]:
        future.result()
