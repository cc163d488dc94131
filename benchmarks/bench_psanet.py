"""Speed and memory of the PSA module (gsbench.models.psanet.PointwiseSpatialAttention).

1. Forward and forward+backward time of the bi-directional module at a fixed size, and of its
   attention step alone (window extraction + softmax + aggregation, both branches), with the
   vectorised window extraction (two cached gathers) against a reference that loops over the
   positions in Python and copies each position's window slice (what a straightforward port of
   the ``PSAMask`` op does), measured in the same run; the ratio is the figure to compare.
   Wall and CPU time (all threads of the process) are both printed; on CPU one thread by
   default, since on a shared machine a multi-threaded run stalls whenever one thread waits for
   a core, and CPU time is the stable figure.
2. Parameters, FLOPs, the attention tensor sizes and the peak memory of forward and
   forward+backward on a 1 x 2048 x 97 x 97 input (defaults: shrink 2 -> 49 x 49, full mask
   97 x 97), with :mod:`gsbench.analysis.complexity` (CUDA: allocator peak; CPU: peak live
   tensor storage, parameters excluded, input included).

    python benchmarks/bench_psanet.py                 # CPU (or CUDA when available)
    python benchmarks/bench_psanet.py --device cpu --size 33 --channels 1024
"""

from __future__ import annotations

import argparse
import contextlib
from unittest import mock

import torch
import torch.nn.functional as F

import gsbench.models.psanet as psanet
from gsbench.analysis.complexity import count_flops, count_parameters, measure_peak_memory
from gsbench.models.psanet import PointwiseSpatialAttention, full_mask_size, shrunk_size

from _common import mib, start_benchmark, timed


def looped_point_wise_attention(predicted, mode, mask_size, compact=False):
    """Reference: the window of each position copied slice by slice in a Python loop."""
    n, _, height, width = predicted.shape
    mask_h, mask_w = mask_size
    half_h, half_w = (mask_h - 1) // 2, (mask_w - 1) // 2
    cells = predicted.reshape(n, mask_h, mask_w, height, width)
    target_major = predicted.new_zeros(n, height, width, height, width)
    for h in range(height):
        for w in range(width):
            # Targets (h + i - half_h, w + j - half_w) that fall inside the map.
            i0, i1 = max(0, half_h - h), min(mask_h, height + half_h - h)
            j0, j1 = max(0, half_w - w), min(mask_w, width + half_w - w)
            target_major[:, i0 + h - half_h:i1 + h - half_h, j0 + w - half_w:j1 + w - half_w,
                         h, w] = cells[:, i0:i1, j0:j1, h, w]
    target_major = target_major.reshape(n, height * width, height * width)
    if mode == "collect":
        return F.softmax(target_major, dim=1)
    return F.softmax(target_major, dim=2).transpose(1, 2)


def build(channels, size, device, seed=0):
    """The module with the full over-complete mask given up front (no warm-up forward needed,
    so nothing has run before a memory measurement) and an input that wants a gradient."""
    torch.manual_seed(seed)
    mask_size = full_mask_size(*shrunk_size(size, size, 2))
    module = PointwiseSpatialAttention(channels, channels // 4, "bi", mask_size=mask_size)
    x = torch.randn(1, channels, size, size, requires_grad=True)
    return module.to(device), x.to(device).detach().requires_grad_(True)


def run_timing(channels, size, device, repeats):
    """Median times {name: (forward, forward+backward)} of the whole module and of the window +
    softmax + aggregation step alone, vectorised and looped."""
    module, x = build(channels, size, device)
    small = shrunk_size(size, size, 2)
    mask = full_mask_size(*small)
    torch.manual_seed(1)
    predicted = torch.randn(1, mask[0] * mask[1], *small, device=device, requires_grad=True)
    features = torch.randn(1, channels // 4, *small, device=device, requires_grad=True)

    def attention_step(attention_fn):
        return sum(
            torch.bmm(features.flatten(2), attention_fn(predicted, mode, mask)).sum()
            for mode in ("collect", "distribute")
        )

    cases = {
        "module": lambda: module(x).sum(),
        "attention step": lambda: attention_step(psanet.point_wise_attention),
    }
    results = {}
    for name, patch in (("vectorised", None), ("loop", looped_point_wise_attention)):
        context = (mock.patch.object(psanet, "point_wise_attention", patch) if patch
                   else contextlib.nullcontext())
        with context:
            for case, fn in cases.items():

                def forward(fn=fn):
                    with torch.no_grad():
                        fn()

                def forward_backward(fn=fn):
                    for tensor in (x, predicted, features):
                        tensor.grad = None
                    module.zero_grad(set_to_none=True)
                    fn().backward()

                results[(case, name)] = (timed(forward, device, repeats),
                                         timed(forward_backward, device, repeats))
    with torch.no_grad():
        same = module(x)
        with mock.patch.object(psanet, "point_wise_attention", looped_point_wise_attention):
            torch.testing.assert_close(module(x), same)  # the two are the same computation
    return results


def tensor_sizes(channels, size, shrink_factor=2, bytes_per_value=4):
    h, w = shrunk_size(size, size, shrink_factor)
    mask_h, mask_w = full_mask_size(h, w)
    hw = h * w
    return {
        "attended map": f"{h}x{w} (HW = {hw}), mask {mask_h}x{mask_w}",
        "predicted mask N x mask_h*mask_w x h x w": mask_h * mask_w * hw * bytes_per_value,
        "gather intermediate N x h x mask_w x hw": h * mask_w * hw * bytes_per_value,
        "attention N x HW x HW (each of raw, softmax)": hw * hw * bytes_per_value,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=49, help="timing input size S (1xCxSxS)")
    parser.add_argument("--channels", type=int, default=2048, help="timing input channels C")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-size", type=int, default=97)
    parser.add_argument("--memory-channels", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1: stable CPU times on a shared machine)")
    args = parser.parse_args()
    device = start_benchmark(args)

    size = args.size
    print(f"\nPSA module (bi, shrink 2, full mask) on 1x{args.channels}x{size}x{size}, and its "
          f"attention step (both branches) alone: median of {args.repeats}")
    results = run_timing(args.channels, size, device, args.repeats)
    for case in ("module", "attention step"):
        for name in ("vectorised", "loop"):
            (fw, fc), (bw, bc) = results[(case, name)]
            print(f"  {case:14s} {name:10s}  forward {fw * 1e3:8.1f} ms wall {fc * 1e3:8.1f} ms CPU"
                  f"   forward+backward {bw * 1e3:8.1f} ms wall {bc * 1e3:8.1f} ms CPU")
        (_, vf), (_, vb) = results[(case, "vectorised")]
        (_, lf), (_, lb) = results[(case, "loop")]
        print(f"  {case:14s} loop / vectorised (CPU time): forward x{lf / vf:.2f}, "
              f"forward+backward x{lb / vb:.2f}")

    s, c = args.memory_size, args.memory_channels
    module, _ = build(c, s, device)
    shape = (1, c, s, s)
    print(f"\nPSA module (bi) on 1x{c}x{s}x{s}, float32: {count_parameters(module) / 1e6:.2f} M "
          f"parameters, {count_flops(module, shape).flops / 1e9:.1f} GFLOPs (multiply-add = 2)")
    for key, value in tensor_sizes(c, s).items():
        print(f"  {key}: {value if isinstance(value, str) else mib(value)}")
    for backward in (False, True):
        label = "forward+backward (train)" if backward else "forward (eval, no grad)"
        peak = measure_peak_memory(module, shape, backward=backward)
        print(f"  peak {label}: {mib(peak.bytes)} ({peak.method})")


if __name__ == "__main__":
    main()
