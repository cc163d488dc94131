"""gsbench.engine.memory: freed heap kept for the next step, so a step does not fault its pages in
again (glibc on Linux)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gsbench.engine.memory import keep_freed_memory

# Page faults per forward + backward of a convolution once the allocator has settled, in a
# fresh process, with or without keep_freed_memory() first.
STEP_FAULTS = """
import resource, sys, torch
from gsbench.engine.memory import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.set_num_threads(1)
x = torch.randn(2, 64, 128, 256)
conv = torch.nn.Conv2d(64, 64, 3, padding=1)
for _ in range(3):
    conv(x).sum().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    conv(x).sum().backward()
print(took, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


def _step_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", STEP_FAULTS, mode], capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not keep_freed_memory(), reason="needs glibc's mallopt (Linux)")
def test_a_step_no_longer_faults_its_freed_memory_in_again():
    took, kept = _step_faults("keep")
    _, given_back = _step_faults("plain")
    assert took == "True"
    # about 14,000 faults per step against about 400 on the machines this was measured on
    assert kept * 5 < given_back, (kept, given_back)


def test_the_setting_is_made_once_and_says_whether_it_took():
    assert keep_freed_memory() is keep_freed_memory()
    assert isinstance(keep_freed_memory(), bool)



# Bytes of the process in blocks that glibc mapped one by one (mallinfo2's hblkhd) while a fresh
# 10 MB tensor is alive, with the settings made first or not at all.
MAPPED_BYTES = """
import ctypes, sys, torch
from gsbench.engine.memory import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
tensor = torch.empty(19 * 256 * 512)
print(mallinfo2().hblkhd)
"""


def _mapped_bytes(mode: str) -> int:
    return int(subprocess.run([sys.executable, "-c", MAPPED_BYTES, mode], capture_output=True,
                              text=True, check=True, timeout=120).stdout)


@pytest.mark.skipif(not keep_freed_memory(), reason="needs glibc's mallopt (Linux)")
def test_large_blocks_come_from_the_kept_heap():
    """M_TOP_PAD turns off glibc's adaptive mmap threshold; without M_MMAP_THRESHOLD every block
    over 128 KiB would be mapped (and faulted in) anew at each allocation."""
    size = 19 * 256 * 512 * 4
    assert _mapped_bytes("plain") >= size  # glibc maps a fresh process's first large block
    assert _mapped_bytes("keep") < size
