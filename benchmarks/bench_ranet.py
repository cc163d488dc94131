"""Speed and memory of RANet's released region attention at the paper's size (RANet Table 3).

One command prints every figure of the RANet section of benchmarks/RESULTS.md:

1. ``gsbench profile --module ranet --input 1x512x97x97`` itself, timed end to end (the
   figures of :func:`gsbench.analysis.attention.profile_attention_module` with its default
   latency settings: two warm-up calls and five timed calls, forward and forward + backward);
2. per input case (score maps of 24, 200 and 1 Voronoi cells: tens of regions as on a
   Cityscapes image, hundreds, and a single region), on the 512-channel map and on the
   2048-channel stage-5 map of the Table 3 scope: regions, parameters, GFLOPs (multiply-add
   = 2; the pairwise work of RCB is not a matrix product and is not counted), peak memory of
   a forward and of a forward + backward (CUDA: allocator peak; CPU: peak live tensors), and
   the median wall and CPU time of a forward and a forward + backward.

The paper's row (212 G, 21 M, 1893 MB) is printed beside them. On a shared machine compare CPU
times; wall time also counts waiting for a core.

    python benchmarks/bench_ranet.py                      # CUDA when available
    python benchmarks/bench_ranet.py --device cpu --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import mib, start_benchmark, sync, timed
from gsbench.analysis.attention import (
    RANET_CASES,
    build_attention_module,
    load_ranet_table3,
    profile_attention_module,
)
from gsbench.analysis.complexity import count_flops, count_parameters, measure_peak_memory


def time_case(module, shape, device, repeats):
    """Median (wall, CPU) seconds of a forward (eval, no grad) and a forward + backward."""
    x = torch.randn(shape, device=device)

    def forward():
        with torch.no_grad():
            module.eval()(x)

    def forward_backward():
        module.train()
        for m in module.modules():  # batch of one: BN keeps its running statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        module.zero_grad(set_to_none=True)
        module(x).float().mean().backward()

    return timed(forward, device, repeats), timed(forward_backward, device, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=97, help="map size S (1 x C x S x S)")
    parser.add_argument("--channels", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-profile", action="store_true",
                        help="do not time the `gsbench profile --module ranet` call")
    args = parser.parse_args()
    device = start_benchmark(args)
    paper = load_ranet_table3()["rows"]["ranet"]
    print(f"RANet Table 3 (paper): +{paper['gflops']} GFLOPS, +{paper['params_m']} M, "
          f"+{paper['memory_mb']} MB GPU memory on the 1x512x97x97 map")
    s = args.size

    if not args.skip_profile:
        wall, cpu = time.perf_counter(), time.process_time()
        figures = profile_attention_module("ranet", (1, 512, s, s), device=args.device,
                                           latency=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"\n`gsbench profile --module ranet --input 1x512x{s}x{s}`: {wall:.1f} s wall, "
              f"{cpu:.1f} s CPU (latency: forward {figures['latency_forward_ms']:.0f} ms, "
              f"forward+backward {figures['latency_forward_backward_ms']:.0f} ms)")

    for channels in args.channels:
        shape = (1, channels, s, s)
        print(f"\n1x{channels}x{s}x{s}, median of {args.repeats} after one warm-up:")
        for case in RANET_CASES:
            torch.manual_seed(0)
            with torch.device(device):
                module = build_attention_module("ranet", channels, "module", case)
            regions = module.regions(s, s)
            flops = count_flops(module, shape)
            peaks = [measure_peak_memory(module, shape, backward=b) for b in (False, True)]
            (fw, fw_cpu), (fb, fb_cpu) = time_case(module, shape, device, args.repeats)
            sync(device)
            print(f"  {case:8s} {regions:4d} regions: {count_parameters(module) / 1e6:.2f} M, "
                  f"{flops.gflops:.1f} GFLOPs; peak forward {mib(peaks[0].bytes)}, "
                  f"forward+backward {mib(peaks[1].bytes)}; forward {fw * 1e3:.0f} ms "
                  f"({fw_cpu * 1e3:.0f} ms CPU), forward+backward {fb * 1e3:.0f} ms "
                  f"({fb_cpu * 1e3:.0f} ms CPU)")
        print(f"  memory: {peaks[0].method}")


if __name__ == "__main__":
    main()
