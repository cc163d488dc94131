"""The full-resolution part of a training step: upsampling the class logits to the label size
and their cross-entropy, forward and backward, in the layout gsbench uses against the plain one.

- ``nchw`` (the reference, the form most segmentation code writes): ``F.interpolate`` of the
  N x C x h x w logits, then ``F.cross_entropy`` of the N x C x H x W map;
- ``gsbench``: :func:`gsbench.models.common.upsample_logits` (the same bilinear values in
  channels-last layout) and :func:`gsbench.losses.common.cross_entropy_with_ignore` (pixels as
  rows of class scores).

With ``--ohem THRESH,MIN_KEPT`` the first term of each step keeps only OHEM's pixels: the
reference finds them with a softmax of its own (:func:`gsbench.losses.ohem_keep_mask` on the
N x C x H x W map) before ``F.cross_entropy``; gsbench reads them off the log-probabilities of its
cross-entropy (``cross_entropy_with_ignore(..., ohem=...)``).

Both get the same logits and labels; the script checks that the losses and the gradients agree
(float32 rounding) and prints the median CPU and wall time of each and their ratio, the two
forms interleaved in one process. On a small model (the smoke recipes, the quickstart) this part
costs as much as all the convolutions, because it runs at the label resolution.

    python benchmarks/bench_loss.py                         # quickstart shape, 1 thread
    python benchmarks/bench_loss.py --size 512x1024 --batch 2 --stride 8 --threads 2
    python benchmarks/bench_loss.py --ohem 0.7,20000                 # the quickstart's loss
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from _common import parse_size
from gsbench.losses import cross_entropy_with_ignore, ohem_keep_mask
from gsbench.models.common import upsample_logits


def nchw_loss(logits: torch.Tensor, label: torch.Tensor, ohem=None) -> torch.Tensor:
    up = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    if ohem is not None:
        keep = ohem_keep_mask(up, label, *ohem)
        label = torch.where(keep, label, torch.full_like(label, 255))
    total = F.cross_entropy(up, label, ignore_index=255, reduction="sum")
    return total / (label != 255).sum().clamp(min=1)


def gsbench_loss(logits: torch.Tensor, label: torch.Tensor, ohem=None) -> torch.Tensor:
    return cross_entropy_with_ignore(upsample_logits(logits, label.shape[-2:]), label, ohem=ohem)


def parse_ohem(text: str) -> tuple[float, int]:
    thresh, min_kept = text.split(",")
    return float(thresh), int(min_kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=(128, 256), help="label HxW")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--stride", type=int, default=8, help="output stride of the logits")
    parser.add_argument("--terms", type=int, default=2, help="loss terms per step (main + aux)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ohem", type=parse_ohem, default=None, metavar="THRESH,MIN_KEPT",
                        help="OHEM on the first term of each step")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    height, width = args.size
    logits = torch.randn(args.batch, args.classes, height // args.stride, width // args.stride,
                         requires_grad=True)
    label = torch.randint(0, args.classes, (args.batch, height, width))
    label[:, :4] = 255  # some ignored pixels

    def step(loss_fn) -> tuple[float, torch.Tensor]:
        logits.grad = None
        loss = sum(loss_fn(logits, label, args.ohem if term == 0 else None)
                   for term in range(args.terms))
        loss.backward()
        return float(loss.detach()), logits.grad.clone()

    (ref_loss, ref_grad), (our_loss, our_grad) = step(nchw_loss), step(gsbench_loss)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); logits "
          f"{tuple(logits.shape)} -> labels {tuple(label.shape)}, {args.terms} terms per step"
          + (f", OHEM {args.ohem} on the first" if args.ohem else ""))
    print(f"loss {ref_loss:.6f} / {our_loss:.6f}, largest gradient difference "
          f"{float((ref_grad - our_grad).abs().max()):.2e}")
    times: dict[str, list[tuple[float, float]]] = {"nchw": [], "gsbench": []}
    for _ in range(args.repeats):
        for name, fn in (("nchw", nchw_loss), ("gsbench", gsbench_loss)):
            wall, cpu = time.perf_counter(), time.process_time()
            step(fn)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    median = {name: [statistics.median(t[i] for t in values) * 1e3 for i in (0, 1)]
              for name, values in times.items()}
    for name, (wall, cpu) in median.items():
        print(f"{name:8s} {cpu:7.2f} ms CPU {wall:7.2f} ms wall  "
              f"ratio to nchw {cpu / median['nchw'][1]:.2f} (CPU)")


if __name__ == "__main__":
    main()
