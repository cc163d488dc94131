"""Speed and memory of RANet's region attention (gsbench.models.ranet.RegionAttention).

1. Forward and forward+backward time of RCB + RIB on a 1 x 512 x S x S map, against the
   non-local block (gsbench.models.nonlocal_net.NonLocalBlock, RANet Table 1's pixel-wise
   attention) on the same map, measured in the same run.
2. Parameters, FLOPs (FlopCounterMode counts the convolutions and matrix products only; the
   pairwise segment maxima, Jensen-Shannon divergences and gathers of RCB are not counted) and
   the peak memory of forward and forward+backward on the paper's 1 x 512 x 97 x 97 map with
   :func:`gsbench.analysis.complexity.measure_peak_memory` (CUDA: allocator peak above the
   resident parameters; CPU: peak live tensor storage), for several ``max_chunk_elements``.

The cost of RIB depends on how many regions RCB finds. A random map with the initial heads
gives one region; by default the map is made piecewise constant (a random 6 x 6 map
upsampled by nearest neighbour, plus noise) and the class head is sharpened, so that the map
splits into several regions as a trained model's does (the paper: about 400 pixels per region).
The region count is printed.

    python benchmarks/bench_ranet.py                      # CUDA when available
    python benchmarks/bench_ranet.py --device cpu --size 33 --memory-size 33
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from gsbench.analysis.complexity import count_flops, count_parameters, measure_peak_memory
from gsbench.models.nonlocal_net import NonLocalBlock
from gsbench.models.ranet import DEFAULT_CHUNK_ELEMENTS, RegionAttention


class BlobMap(nn.Module):
    """Turns the random input of the complexity helpers into a piecewise-constant map (cheap:
    one pooling and one upsampling) and runs the region attention on it; returns O."""

    def __init__(self, channels: int, max_chunk_elements: int, blobs: bool):
        super().__init__()
        self.attention = RegionAttention(channels, 19, max_chunk_elements=max_chunk_elements)
        self.blobs = blobs
        if blobs:
            with torch.no_grad():
                self.attention.class_head.weight.normal_(0, 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.map(x))[0]

    def map(self, x: torch.Tensor) -> torch.Tensor:
        if not self.blobs:
            return x
        coarse = F.adaptive_avg_pool2d(x, 6) * 6
        return F.interpolate(coarse, size=x.shape[-2:], mode="nearest") + 0.2 * x

    @torch.no_grad()
    def count_regions(self, x: torch.Tensor) -> int:
        x = self.map(x)
        attention = self.attention
        n, _, h, w = x.shape
        boundary = torch.sigmoid(attention.boundary_head(x)).reshape(n, -1)[0]
        prob = torch.softmax(attention.class_head(x), 1).reshape(n, 19, -1)[0].T
        return int(attention.regions(boundary, prob, h, w).max()) + 1


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    """Median wall seconds of ``fn`` after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_module(module, x, device, repeats):
    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).float().mean().backward()

    module.eval()
    fw = timed(forward, device, repeats)
    module.train()
    return fw, timed(forward_backward, device, repeats)


def mib(n):
    return f"{n / 2**20:.1f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=97, help="timing input size S (1x512xSxS)")
    parser.add_argument("--memory-size", type=int, default=97)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-blobs", dest="blobs", action="store_false",
                        help="feed the raw random map (one region with the initial heads)")
    parser.add_argument("--chunks", type=int, nargs="+",
                        default=[1 << 21, DEFAULT_CHUNK_ELEMENTS, 1 << 25])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine())
    print(f"torch {torch.__version__}, device {device} ({name}), threads {torch.get_num_threads()}")

    c, s = args.channels, args.size
    torch.manual_seed(0)
    x = torch.randn(1, c, s, s, device=device, requires_grad=True)
    ranet = BlobMap(c, DEFAULT_CHUNK_ELEMENTS, args.blobs).to(device)
    baseline = NonLocalBlock(c).to(device)
    print(f"\n1x{c}x{s}x{s}, {ranet.count_regions(x.detach())} regions "
          f"({'blob' if args.blobs else 'random'} map), median of {args.repeats}:")
    results = {}
    for label, module in (("RANet RCB + RIB", ranet), ("non-local block", baseline)):
        fw, fb = time_module(module, x, device, args.repeats)
        results[label] = (fw, fb)
        print(f"  {label:16s} forward {fw * 1e3:9.1f} ms   forward+backward {fb * 1e3:9.1f} ms")
    (rf, rb), (nf, nb) = results.values()
    print(f"  RANet / non-local: forward x{rf / nf:.1f}, forward+backward x{rb / nb:.1f}")

    s = args.memory_size
    shape = (1, c, s, s)
    torch.manual_seed(0)
    probe = BlobMap(c, DEFAULT_CHUNK_ELEMENTS, args.blobs).to(device)
    print(f"\n1x{c}x{s}x{s}: {probe.count_regions(torch.randn(shape, device=device))} regions; "
          f"RCB + RIB {count_parameters(probe.attention) / 1e6:.3f} M parameters, "
          f"{count_flops(probe, shape).flops / 1e9:.2f} GFLOPs counted (multiply-add = 2); "
          f"non-local block {count_parameters(baseline) / 1e6:.3f} M, "
          f"{count_flops(baseline, shape).flops / 1e9:.2f} GFLOPs")
    for chunk in args.chunks:
        torch.manual_seed(0)
        module = BlobMap(c, chunk, args.blobs).to(device)
        peaks = [measure_peak_memory(module, shape, backward=b) for b in (False, True)]
        torch.manual_seed(0)
        xm = torch.randn(shape, device=device, requires_grad=True)
        _, fb = time_module(module, xm, device, 1)
        print(f"  RANet max_chunk_elements {chunk:>9d}: peak forward {mib(peaks[0].bytes)}, "
              f"forward+backward {mib(peaks[1].bytes)}, forward+backward {fb * 1e3:.0f} ms "
              f"({peaks[1].method})")
    peaks = [measure_peak_memory(baseline, shape, backward=b) for b in (False, True)]
    print(f"  non-local block:                     peak forward {mib(peaks[0].bytes)}, "
          f"forward+backward {mib(peaks[1].bytes)}")


if __name__ == "__main__":
    main()
