"""Helpers shared by the model benchmarks (bench_gff, bench_gpsnet, bench_gscnn, bench_loss,
bench_peers, bench_psanet, bench_train): timing with wall and CPU time, the opening machine
line, MiB formatting and the ``--size HxW`` argument.

The scripts are run as ``python benchmarks/bench_X.py``, which puts this folder on ``sys.path``,
so they import this module as ``_common``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a timer stops when the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``fn`` after one warm-up call.

    CPU time is that of all threads of the process: on a shared machine it is the stable figure,
    while wall time also counts waiting for a core.
    """
    fn()  # warm-up: cached indices, allocator
    sync(device)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def start_benchmark(args) -> torch.device:
    """Apply ``--threads`` to torch and print the machine line (torch version, device, threads,
    processor) that opens a benchmark's output; return the ``--device`` to run on."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}")
    return device


def mib(n: float) -> str:
    """A byte count as MiB with one decimal."""
    return f"{n / 2**20:.1f} MiB"


def parse_size(text: str) -> tuple[int, int]:
    """An ``HxW`` command-line size (e.g. ``128x256``) as (height, width)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 128x128") from None
    return height, width
