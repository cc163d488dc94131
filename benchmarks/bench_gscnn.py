"""Speed and memory of Gated-SCNN's additions against its baseline, measured in the same run.

1. One training step (forward + loss + backward) of the whole model for the Table 3 variants -
   baseline (DeepLabV3+ regular stream, cross-entropy), + GCL (shape stream, no Canny) and
   + Gradients (shape stream + Canny) with the full Gated-SCNN loss (edge BCE, CE, dual-task
   regulariser) - and the ratio of each to the baseline.
2. The losses alone on fixed logits: cross-entropy vs the Gated-SCNN loss with and without the
   dual-task terms, and Canny on the batch.
3. Peak memory of forward + backward of the three models
   (:func:`gsbench.analysis.complexity.measure_peak_memory`: CUDA allocator peak, or on CPU the
   peak live tensor storage, parameters excluded), and their parameter counts.

Wall and CPU time (all threads of the process) are printed; on CPU one thread by default, since
on a shared machine CPU time is the stable figure.

    python benchmarks/bench_gscnn.py                               # resnet50, 1 x 3 x 256 x 512
    python benchmarks/bench_gscnn.py --backbone resnet101 --size 512x1024 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import warnings

import torch

from gsbench.analysis.complexity import count_parameters, measure_peak_memory
from gsbench.losses import SegmentationLoss
from gsbench.losses.gscnn import GatedSCNNLoss
from gsbench.models import build_model
from gsbench.models.gscnn import canny_edges

from _common import timed

VARIANTS = {  # name: method options of the gscnn builder
    "baseline (DeepLabV3+)": {"shape_stream": False, "use_canny": False},
    "+ GCL (shape stream)": {"shape_stream": True, "use_canny": False},
    "+ Gradients (Canny)": {"shape_stream": True, "use_canny": True},
}


def make_batch(n, h, w, classes, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, h, w, generator=g)
    # Blocky labels and their 2-px edge band, so that the boundary terms see real boundaries.
    coarse = torch.randint(0, classes, (n, 1, h // 32, w // 32), generator=g).float()
    label = torch.nn.functional.interpolate(coarse, size=(h, w), mode="nearest")[:, 0].long()
    shifted = torch.nn.functional.max_pool2d(coarse, 3, 1, 1)
    shifted = torch.nn.functional.interpolate(shifted, size=(h, w), mode="nearest")[:, 0]
    edge = (shifted != label.float()).float()
    return {"image": images.to(device), "label": label.to(device), "edge": edge.to(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", default="256x512", help="HEIGHTxWIDTH of the input")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # random-init backbone warnings
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, device "
          f"{device}, threads {torch.get_num_threads()}, backbone {args.backbone}, batch "
          f"{args.batch} x 3 x {height} x {width}, {args.classes} classes, median of "
          f"{args.repeats}")
    batch = make_batch(args.batch, height, width, args.classes, device)

    print("\n1. training step: forward + loss + backward (wall / CPU)")
    models, reference = {}, None
    for name, options in VARIANTS.items():
        torch.manual_seed(0)
        model = build_model("gscnn", num_classes=args.classes, backbone=args.backbone, aux=False,
                            **options).to(device).train()
        loss_fn = GatedSCNNLoss() if options["shape_stream"] else SegmentationLoss()
        models[name] = model

        def step(model=model, loss_fn=loss_fn):
            model.zero_grad(set_to_none=True)
            loss_fn(model(batch["image"]), batch)["loss"].backward()

        wall, cpu = timed(step, device, args.repeats)
        reference = reference or (wall, cpu)
        print(f"  {name:24s} {wall * 1e3:9.1f} ms / {cpu * 1e3:9.1f} ms   "
              f"x{wall / reference[0]:.2f} / x{cpu / reference[1]:.2f} of the baseline")

    print("\n2. losses alone on fixed logits (forward + backward), and Canny")
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(args.batch, args.classes, height, width, generator=g).to(device)
    edge_logits = torch.randn(args.batch, 1, height, width, generator=g).to(device)
    losses = {"cross-entropy": SegmentationLoss(),
              "Gated-SCNN, no dual-task": GatedSCNNLoss(dual_task=False),
              "Gated-SCNN (full)": GatedSCNNLoss()}
    reference = None
    for name, loss_fn in losses.items():
        def run(loss_fn=loss_fn):
            out = logits.clone().requires_grad_(True)
            edge = edge_logits.clone().requires_grad_(True)
            loss_fn({"out": out, "edge": edge}, batch)["loss"].backward()

        wall, cpu = timed(run, device, args.repeats)
        reference = reference or (wall, cpu)
        print(f"  {name:24s} {wall * 1e3:9.1f} ms / {cpu * 1e3:9.1f} ms   "
              f"x{wall / reference[0]:.2f} / x{cpu / reference[1]:.2f} of cross-entropy")
    wall, cpu = timed(lambda: canny_edges(batch["image"]), device, args.repeats)
    print(f"  {'Canny (whole batch)':24s} {wall * 1e3:9.1f} ms / {cpu * 1e3:9.1f} ms")

    print("\n3. parameters and peak memory of forward + backward (batch 1, BN in eval)")
    reference = None
    for name, model in models.items():
        peak = measure_peak_memory(model, (1, 3, height, width), backward=True)
        reference = reference or peak.bytes
        print(f"  {name:24s} {count_parameters(model) / 1e6:8.3f} M params   "
              f"{peak.bytes / 2**20:8.1f} MiB   x{peak.bytes / reference:.2f} of the baseline")
    print(f"  ({peak.method})")


if __name__ == "__main__":
    main()
