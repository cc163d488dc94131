"""Training-step time and peak memory of every registered model.

One training step = forward + loss (CE + aux 0.4) + backward + SGD step, on random images and
labels of a fixed size. Each (model, backbone) runs in a fresh process so that its peak memory
is its own:

- on CPU the peak is the process's resident-set high-water mark (``ru_maxrss``) minus the
  resident set just before the first step, i.e. what the training steps added;
- on CUDA it is ``torch.cuda.max_memory_allocated`` over the timed steps, the figure
  mmsegmentation's model zoo publishes (PSANet R-101 512x1024 batch 2: 10.5 GB; PSPNet R-101:
  9.6 GB).

Times and memory are also printed as ratios to a reference model of the same backbone measured
in the same run (``--reference``, default pspnet), which travel between machines better than
absolute figures.

    python benchmarks/bench_train.py                                  # CPU, 2x3x128x128
    python benchmarks/bench_train.py --device cuda --size 512x1024 --batch 2 --backbones resnet101
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from pathlib import Path


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 128x128") from None
    return height, width


def _current_rss_bytes() -> int:
    """Resident set size now (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _max_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure_one(config: dict) -> dict:
    """Time ``config["iters"]`` training steps of one model after warm-up; runs in a child process."""
    import torch

    from gsbench.losses import SegmentationLoss
    from gsbench.models.registry import build_model

    torch.manual_seed(0)
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    model = build_model(
        config["model"],
        num_classes=config["num_classes"],
        backbone=config["backbone"],
        output_stride=config["output_stride"],
        aux=True,
    ).to(device).train()
    height, width = config["size"]
    batch = config["batch"]
    images = torch.randn(batch, 3, height, width, device=device)
    labels = torch.randint(0, config["num_classes"], (batch, height, width), device=device)
    if any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in model.parameters()):
        # Lazy modules (PSANet's mask predictor sized from the feature map) need one forward
        # before the optimizer sees their parameters.
        with torch.no_grad():
            model(images)
    params = sum(p.numel() for p in model.parameters())
    criterion = SegmentationLoss(ignore_index=255, aux_weight=0.4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        losses = criterion(model(images), {"label": labels})
        losses["loss"].backward()
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rss_before = _current_rss_bytes()
    for _ in range(config["warmup"]):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(config["iters"]):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = max(_max_rss_bytes() - rss_before, 0)
    return {
        "model": config["model"],
        "backbone": config["backbone"],
        "params_m": params / 1e6,
        "step_s": median,
        "step_min_s": times[0],
        "images_per_s": batch / median,
        "peak_mem_mb": peak / 2**20,
    }


def run_isolated(config: dict) -> dict:
    """Run :func:`measure_one` in a fresh process (spawn), so peaks do not carry over."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(measure_one, (config,))


def format_table(rows: list[dict], reference: str) -> str:
    ref = {r["backbone"]: r for r in rows if r["model"] == reference and "error" not in r}
    lines = [
        f"| model | backbone | params (M) | step (s) | images/s | peak mem (MB) | step / {reference} "
        f"| mem / {reference} |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['backbone']} | failed: {r['error']} | | | | | |")
            continue
        base = ref.get(r["backbone"])
        step_ratio = f"{r['step_s'] / base['step_s']:.2f}" if base else "-"
        mem_ratio = (
            f"{r['peak_mem_mb'] / base['peak_mem_mb']:.2f}"
            if base and base["peak_mem_mb"] > 0 else "-"
        )
        lines.append(
            f"| {r['model']} | {r['backbone']} | {r['params_m']:.1f} | {r['step_s']:.3f} | "
            f"{r['images_per_s']:.2f} | {r['peak_mem_mb']:.0f} | {step_ratio} | {mem_ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--size", type=parse_size, default=(128, 128), help="HxW (default 128x128)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--backbones", default="resnet_tiny,resnet50",
                        help="comma-separated backbones (default resnet_tiny,resnet50)")
    parser.add_argument("--models", default="", help="comma-separated models (default: all registered)")
    parser.add_argument("--reference", default="pspnet", help="model the ratios refer to")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--output-stride", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    from gsbench.models.registry import list_models

    models = [m for m in args.models.split(",") if m] or list_models()
    backbones = [b for b in args.backbones.split(",") if b]
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device available")
        device_name = torch.cuda.get_device_name(0)
    else:
        device_name = platform.processor() or platform.machine()
    height, width = args.size
    print(f"# training step, batch {args.batch} x 3 x {height} x {width}, device {args.device} "
          f"({device_name}), output stride {args.output_stride}, median of {args.iters} "
          f"after {args.warmup} warm-up steps", flush=True)
    rows = []
    for backbone in backbones:
        for model in models:
            config = {
                "model": model, "backbone": backbone, "device": args.device,
                "size": (height, width), "batch": args.batch, "num_classes": args.num_classes,
                "output_stride": args.output_stride, "warmup": args.warmup,
                "iters": args.iters, "threads": args.threads,
            }
            try:
                row = run_isolated(config)
            except Exception as exc:  # one failing model must not hide the others' figures
                row = {"model": model, "backbone": backbone,
                       "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:120]}
            rows.append(row)
            if "error" in row:
                print(f"{model:>14} {backbone:>12}  FAILED {row['error']}", flush=True)
            else:
                print(f"{model:>14} {backbone:>12}  {row['step_s']:.3f} s/step  "
                      f"{row['images_per_s']:.2f} img/s  {row['peak_mem_mb']:.0f} MB", flush=True)
    print()
    print(format_table(rows, args.reference))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
