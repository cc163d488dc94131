"""Speed and memory of the GFF head (gsbench.models.gff.GFFHead) against PSPNet's head.

1. Forward and forward+backward time, parameters, FLOPs and peak memory of the decode heads on
   the feature pyramid of one ResNet-101 image at output stride 8 (default 512 x 512: c2 256 x
   128 x 128, c3-c5 512 / 1024 / 2048 x 64 x 64): PSPNet's head (the baseline), PSPNet + GFF and
   PSPNet + GFF + DFP (optionally the Table 1 fusion variants), all measured in the same run.
2. The Eq. 5 fusion step alone: :func:`~gsbench.models.gff.gated_fully_fusion` (each level's gated
   map resized once per receiving resolution, the sum over i != l taken as total minus own term)
   against the literal pairwise sum (one resize per pair of levels), same inputs, same run.

CPU times are medians of CPU time (all threads of the process) with one thread by default, the
stable figure on a shared machine; wall time is printed beside it. Peak memory comes from
:func:`gsbench.analysis.complexity.measure_peak_memory` (CUDA: allocator peak; CPU: peak live
tensor storage, parameters excluded, the input pyramid included).

    python benchmarks/bench_gff.py                    # CPU (or CUDA when available)
    python benchmarks/bench_gff.py --size 256 --variants
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsbench.analysis.complexity import count_flops, count_parameters, measure_peak_memory
from gsbench.models.common import resize
from gsbench.models.gff import GFFHead, gated_fully_fusion
from gsbench.models.pspnet import PSPHead

from _common import mib, start_benchmark, timed

CHANNELS = (256, 512, 1024, 2048)  # ResNet-50/101 stages 2-5


class HeadOnPyramid(nn.Module):
    """A decode head fed with a backbone-like pyramid made from one input tensor (c2).

    c3-c5 are c2 average-pooled to stride 8 and tiled to their channel counts, so that the
    complexity helpers, which feed a single input tensor, measure the head with the same input
    for every head (the pyramid's cost is the same for all of them).
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, c2: Tensor) -> Tensor:
        pooled = F.avg_pool2d(c2, 2)
        levels = [c2] + [pooled.repeat(1, c // c2.shape[1], 1, 1) for c in CHANNELS[1:]]
        return self.head(levels)


def heads(num_classes: int, variants: bool) -> dict[str, nn.Module]:
    built = {
        "pspnet (baseline)": PSPHead(CHANNELS[-1], num_classes),
        "pspnet + gff": GFFHead(CHANNELS, num_classes, dfp=False),
        "pspnet + gff + dfp": GFFHead(CHANNELS, num_classes, dfp=True),
    }
    if variants:
        for fusion in ("concat", "add", "fpn", "gated_fpn"):
            built[f"pspnet + {fusion}"] = GFFHead(CHANNELS, num_classes, fusion=fusion, dfp=False)
    return {name: HeadOnPyramid(head) for name, head in built.items()}


def time_head(model: nn.Module, c2: Tensor, device, repeats):
    def forward():
        model.eval()
        with torch.no_grad():
            model(c2)

    def forward_backward():
        model.train()
        for m in model.modules():  # a batch of one: BatchNorm keeps its running statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        model.zero_grad(set_to_none=True)
        model(c2).logsumexp(1).mean().backward()

    return timed(forward, device, repeats), timed(forward_backward, device, repeats)


def pairwise_gff(features: list[Tensor], gates: list[Tensor]) -> list[Tensor]:
    """Eq. 5 written literally: for every receiving level, resize each other level's gated map."""
    fused = []
    for l, (x, g) in enumerate(zip(features, gates)):
        received = sum(resize(gi * xi, x.shape[-2:])
                       for i, (xi, gi) in enumerate(zip(features, gates)) if i != l)
        fused.append((1 + g) * x + (1 - g) * received)
    return fused


def time_fusion(size, channels, device, repeats):
    torch.manual_seed(0)
    shapes = [(size // 4, size // 4)] + [(size // 8, size // 8)] * 3
    features = [torch.randn(1, channels, h, w, device=device, requires_grad=True)
                for h, w in shapes]
    gates = [torch.rand(1, 1, h, w, device=device, requires_grad=True) for h, w in shapes]
    results = {}
    for name, fn in (("gated_fully_fusion", gated_fully_fusion), ("pairwise", pairwise_gff)):
        def forward(fn=fn):
            with torch.no_grad():
                fn(features, gates)

        def forward_backward(fn=fn):
            for t in features + gates:
                t.grad = None
            sum(f.sum() for f in fn(features, gates)).backward()

        results[name] = (timed(forward, device, repeats), timed(forward_backward, device, repeats))
    with torch.no_grad():
        for a, b in zip(gated_fully_fusion(features, gates), pairwise_gff(features, gates)):
            torch.testing.assert_close(a, b)  # the same computation
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=512, help="image size S; the pyramid of S x S")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", action="store_true", help="also the Table 1 fusion variants")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1: stable CPU times on a shared machine)")
    args = parser.parse_args()
    device = start_benchmark(args)

    s = args.size
    shape = (1, CHANNELS[0], s // 4, s // 4)
    print(f"\nDecode heads on the ResNet-101 pyramid of a {s}x{s} image (c2 {s // 4}x{s // 4}, "
          f"c3-c5 {s // 8}x{s // 8}), {args.classes} classes, median of {args.repeats}")
    torch.manual_seed(0)
    c2 = torch.randn(shape, device=device)
    rows = {}
    for name, model in heads(args.classes, args.variants).items():
        model.to(device)
        (fw, fc), (bw, bc) = time_head(model, c2, device, args.repeats)
        params = count_parameters(model.head) / 1e6
        gflops = count_flops(model, shape).gflops
        peak_f = measure_peak_memory(model, shape, backward=False)
        peak_b = measure_peak_memory(model, shape, backward=True)
        rows[name] = (fc, bc, peak_b.bytes)
        print(f"  {name:20s} {params:6.2f} M {gflops:7.1f} GFLOPs | "
              f"forward {fw * 1e3:7.1f} ms wall "
              f"{fc * 1e3:7.1f} ms CPU | fwd+bwd {bw * 1e3:7.1f} ms wall {bc * 1e3:7.1f} ms CPU | "
              f"peak fwd {mib(peak_f.bytes)}, fwd+bwd {mib(peak_b.bytes)}")
    base = rows["pspnet (baseline)"]
    for name, (fc, bc, peak) in rows.items():
        if name != "pspnet (baseline)":
            print(f"  {name:20s} / baseline: forward x{fc / base[0]:.2f}, "
                  f"fwd+bwd x{bc / base[1]:.2f}"
                  f" (CPU time), peak fwd+bwd x{peak / base[2]:.2f}")
    print(f"  memory: {peak_b.method}")

    print(f"\nEq. 5 fusion step alone, 4 levels x 256 channels ({s // 4}^2 and 3 x {s // 8}^2), "
          f"one-channel gates")
    fusion = time_fusion(s, 256, device, args.repeats)
    for name, ((fw, fc), (bw, bc)) in fusion.items():
        print(f"  {name:18s} forward {fw * 1e3:7.1f} ms wall {fc * 1e3:7.1f} ms CPU | "
              f"fwd+bwd {bw * 1e3:7.1f} ms wall {bc * 1e3:7.1f} ms CPU")
    (_, vf), (_, vb) = fusion["gated_fully_fusion"]
    (_, pf), (_, pb) = fusion["pairwise"]
    print(f"  pairwise / gated_fully_fusion (CPU time): forward x{pf / vf:.2f}, "
          f"fwd+bwd x{pb / vb:.2f}")


if __name__ == "__main__":
    main()
