"""gsbench.native: C kernels built on first use into the cache folder, and the fallback (None)
when they cannot be built or are turned off."""

from __future__ import annotations

import ctypes

import pytest

from gsbench.native import NativeLibrary

SOURCE = "int twice(int x) { return 2 * x; }\n"


def _declare(library: ctypes.CDLL) -> None:
    library.twice.argtypes = [ctypes.c_int]
    library.twice.restype = ctypes.c_int


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GSBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GSBENCH_NATIVE", raising=False)
    monkeypatch.delenv("CC", raising=False)
    return tmp_path


def test_a_kernel_is_built_once_into_the_cache_and_loaded(cache):
    library = NativeLibrary("twice", SOURCE, _declare).get()
    assert library is not None and library.twice(21) == 42
    built = sorted(cache.glob("twice_*.so"))
    assert len(built) == 1 and not list(cache.glob("tmp*"))  # no scratch folder left
    stamp = built[0].stat().st_mtime_ns
    again = NativeLibrary("twice", SOURCE, _declare).get()  # another process's view
    assert again.twice(4) == 8 and built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_turned_off_or_without_a_compiler_there_is_no_kernel(cache, monkeypatch):
    monkeypatch.setenv("GSBENCH_NATIVE", "0")
    assert NativeLibrary("twice", SOURCE, _declare).get() is None
    monkeypatch.delenv("GSBENCH_NATIVE")
    monkeypatch.setenv("CC", str(cache / "no-such-compiler"))
    assert NativeLibrary("twice", SOURCE, _declare).get() is None
    assert not list(cache.iterdir())


def test_a_failed_build_warns_once_and_falls_back(cache, monkeypatch):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    library = NativeLibrary("twice", SOURCE, _declare, purpose="doubling kernel")
    with pytest.warns(RuntimeWarning, match="compiled doubling kernel is unavailable"):
        assert library.get() is None
    assert library.get() is None  # tried once per process
    assert not list(cache.glob("*.so"))


def test_spans_cover_the_range_once_and_run_in_the_kept_pool():
    from gsbench.native import run_in_spans, spans, thread_pool

    for total, threads, min_span in ((0, 4, 1), (1, 4, 16), (100, 3, 16), (100, 8, 16),
                                     (10_000, 2, 4096), (7, 7, 1)):
        ranges = spans(total, threads, min_span)
        assert ranges[0][0] == 0 and ranges[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert 1 <= len(ranges) <= max(1, min(threads, total // min_span))
    seen = []
    run_in_spans(lambda start, end: seen.append((start, end)), 100, 3, 16)
    assert sorted(seen) == spans(100, 3, 16) and len(seen) == 3
    assert thread_pool(2) is thread_pool(3)  # the pool of 3 made above, kept for up to 3
