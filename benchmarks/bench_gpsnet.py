"""Speed and memory of the GPS module (gsbench.models.gpsnet.SuperNet) against ASPP / DenseASPP,
and of the RF / SR walk (gsbench.analysis.rfsr).

1. Forward and forward+backward time, parameters, FLOPs and peak memory of the context modules
   on ResNet-101 stage-5 features (1 x 2048 x S x S), measured in the same run:
   DeepLabV3's ASPP (1x1, rates 12/24/36, image pooling, projection; the baseline), the
   DenseASPP block on rates {1, 12, 24, 36}, the ungated SuperNet and the GPS module (tuned
   dilations, gates). Timing at S = 49 on CPU (S = 97 is a 769 crop at output stride 8, the
   memory figures' size); wall and CPU time (all threads of the process) are printed, one thread
   by default since CPU time is the stable figure on a shared machine. FLOPs and peak memory come
   from :mod:`gsbench.analysis.complexity` on the meta device (no compute, same figures as CPU).
2. The RF / SR walk of Table 4 (boolean canvases shifted per layer) against the same walk over
   Python sets of positions (a straightforward port of Appendix A), both over the tuned grid.

    python benchmarks/bench_gpsnet.py                   # CPU (or CUDA when available)
    python benchmarks/bench_gpsnet.py --size 97 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import torch

from gsbench.analysis.complexity import count_flops, count_parameters, measure_peak_memory
from gsbench.analysis.rfsr import receptive_field, supernet_positions
from gsbench.models.deeplab import ASPP
from gsbench.models.denseaspp import DenseASPPBlock
from gsbench.models.gpsnet import TUNED_DILATIONS, UNTUNED_DILATIONS, SuperNet

from _common import start_benchmark, timed


def modules(channels):
    """name -> builder of each context module on ``channels`` inputs."""
    return {
        "ASPP (DeepLabV3, baseline)": lambda: ASPP(channels, (12, 24, 36)),
        "DenseASPP {1,12,24,36}": lambda: DenseASPPBlock(channels, (1, 12, 24, 36),
                                                         channels // 4, channels // 8),
        "SuperNet (untuned, no gate)": lambda: SuperNet(channels, UNTUNED_DILATIONS, gate=False),
        "GPS (tuned, gates)": lambda: SuperNet(channels, TUNED_DILATIONS, gate=True),
    }


def run_timing(channels, size, device, repeats):
    results = {}
    for name, build in modules(channels).items():
        torch.manual_seed(0)
        module = build().to(device)
        # batch 2: training-mode BN needs more than one value per channel after image pooling
        x = torch.randn(2, channels, size, size, device=device)

        def forward(module=module, x=x):
            module.eval()
            with torch.no_grad():
                module(x)

        def forward_backward(module=module, x=x):
            module.train()
            module.zero_grad(set_to_none=True)
            module(x).float().mean().backward()

        results[name] = (timed(forward, device, repeats), timed(forward_backward, device, repeats))
    return results


def run_complexity(channels, size):
    shape = (2, channels, size, size)
    rows = {}
    for name, build in modules(channels).items():
        with torch.device("meta"):
            module = build()
        rows[name] = (count_parameters(module), count_flops(module, shape).flops,
                      measure_peak_memory(module, shape, backward=False),
                      measure_peak_memory(module, shape, backward=True))
    return rows


def set_walk(grid):
    """Appendix A with Python sets of (y, x) offsets: the reference for the canvas walk."""
    def layer(points, r):
        return {(y + dy * r, x + dx * r) for y, x in points for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)}

    union, previous = {(0, 0)}, []
    for b, branch in enumerate(grid):
        horizontal, current = {(0, 0)}, []
        for index, r in enumerate(branch):
            merged = horizontal if b == 0 else horizontal | previous[index]
            horizontal = layer(merged, r)
            current.append(horizontal)
            union |= horizontal
        previous = current
    return union


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=49, help="timing input size S (2xCxSxS)")
    parser.add_argument("--channels", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-size", type=int, default=97)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1: stable CPU times on a shared machine)")
    args = parser.parse_args()
    device = start_benchmark(args)

    c, s = args.channels, args.size
    print(f"\nContext modules on 2x{c}x{s}x{s}: median of {args.repeats}")
    results = run_timing(c, s, device, args.repeats)
    base = "ASPP (DeepLabV3, baseline)"
    (_, base_f), (_, base_b) = results[base]
    for name, ((fw, fc), (bw, bc)) in results.items():
        print(f"  {name:28s} forward {fw * 1e3:8.1f} ms wall {fc * 1e3:8.1f} ms CPU   "
              f"forward+backward {bw * 1e3:8.1f} ms wall {bc * 1e3:8.1f} ms CPU   "
              f"vs ASPP (CPU) x{fc / base_f:.2f} / x{bc / base_b:.2f}")

    m = args.memory_size
    print(f"\nContext modules on 2x{c}x{m}x{m}, float32 (meta device):")
    for name, (params, flops, fwd, train) in run_complexity(c, m).items():
        print(f"  {name:28s} {params / 1e6:6.2f} M params  {flops / 1e9:7.1f} GFLOPs  "
              f"peak forward {fwd.mib:7.1f} MiB  peak forward+backward {train.mib:7.1f} MiB")

    wall = time.perf_counter()
    canvas = supernet_positions(TUNED_DILATIONS)
    canvas_s = time.perf_counter() - wall
    wall = time.perf_counter()
    points = set_walk(TUNED_DILATIONS)
    sets_s = time.perf_counter() - wall
    rf, count, sr = receptive_field(canvas)
    assert count == len(points)  # the same positions
    print(f"\nRF / SR walk of the tuned grid (RF {rf}, {count} positions, SR {sr:.3f}): "
          f"canvas {canvas_s * 1e3:.1f} ms, Python sets {sets_s * 1e3:.1f} ms "
          f"(x{sets_s / canvas_s:.0f})")


if __name__ == "__main__":
    main()
