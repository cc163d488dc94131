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

``--layouts nchw,nhwc`` measures every model in both memory layouts (``nhwc``: model and images
channels-last, as ``train.channels_last`` trains them), alternating per model, and adds a table
of each model's nhwc / nchw step time.

``--engine`` measures instead what the training engine (``gsbench train``) costs on top of the
step itself: a recipe (default ``pspnet101-smoke``) trained on synthetic data by

- ``loop``: a hand-written loop of the same model, loss, optimizer, poly schedule, dataset and
  loader (same batch, crop and loader workers), nothing else;
- ``engine``: :func:`gsbench.engine.train.train` with validation off (logging and checkpoints
  as the recipe ships them);
- ``engine+val``: the engine as the recipe ships (validation included);
- with ``--before REF``, ``before`` and ``before+val``: the same two with the engine of git
  revision REF (exported with ``git archive`` into a temporary folder), in the same run.

The variants of one code tree run in one process, interleaved round after round: each round
runs the hand loop, then the engine variants, so that every ratio compares runs seconds apart
on a machine whose speed drifts (the old tree runs in a second process, with its own loop). A
variant's time is that of its steady state: from the training forward of iteration
``warmup + 1`` to that of iteration ``warmup + iters + 1``, so it counts every iteration's
loading, step, logging, checkpoints and validations in between, and no start-up. Wall time and
the main process's CPU time are reported, with each variant's ratio to the loop of its round
(median over rounds).

    python benchmarks/bench_train.py --engine --before main --rounds 5
    python benchmarks/bench_train.py --engine --workers 0,1,2      # loader workers for all
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import parse_size


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
    if config.get("layout") == "nhwc":  # after the lazy modules have their shapes
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
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
        "layout": config.get("layout", "nchw"),
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
    ref = {(r["backbone"], r["layout"]): r for r in rows
           if r["model"] == reference and "error" not in r}
    lines = [
        f"| model | backbone | layout | params (M) | step (s) | images/s | peak mem (MB) "
        f"| step / {reference} | mem / {reference} |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['backbone']} | {r['layout']} | failed: {r['error']} "
                         "| | | | | |")
            continue
        base = ref.get((r["backbone"], r["layout"]))
        step_ratio = f"{r['step_s'] / base['step_s']:.2f}" if base else "-"
        mem_ratio = (
            f"{r['peak_mem_mb'] / base['peak_mem_mb']:.2f}"
            if base and base["peak_mem_mb"] > 0 else "-"
        )
        lines.append(
            f"| {r['model']} | {r['backbone']} | {r['layout']} | {r['params_m']:.1f} | "
            f"{r['step_s']:.3f} | {r['images_per_s']:.2f} | {r['peak_mem_mb']:.0f} | {step_ratio} "
            f"| {mem_ratio} |"
        )
    return "\n".join(lines)


def format_layout_table(rows: list[dict]) -> str:
    """Each model's channels-last step time against its plain-layout one."""
    steps = {(r["model"], r["backbone"], r["layout"]): r["step_s"]
             for r in rows if "error" not in r}
    lines = ["| model | backbone | nchw step (s) | nhwc step (s) | nhwc / nchw |",
             "| --- | --- | ---: | ---: | ---: |"]
    for (model, backbone, layout), nchw in steps.items():
        nhwc = steps.get((model, backbone, "nhwc"))
        if layout == "nchw" and nhwc is not None:
            lines.append(f"| {model} | {backbone} | {nchw:.3f} | {nhwc:.3f} | {nhwc / nchw:.2f} |")
    return "\n".join(lines)


# --- the engine against a hand-written loop (--engine) ----------------------------------------
ENGINE_VARIANTS = ("loop", "engine", "engine+val")
BEFORE_VARIANTS = ("before", "before+val")


def _stamping(model, stamps: list):
    """``model`` with a pre-forward hook that records (wall, CPU) time at every training forward."""
    def stamp(module, args):
        if module.training:
            stamps.append((time.perf_counter(), time.process_time()))
    model.register_forward_pre_hook(stamp)
    return model


def _hand_loop(recipe, data_root: str, total: int, stamps: list) -> None:
    """The reference: the recipe's model (in its memory layout), loss, SGD, poly schedule and
    loader, nothing more."""
    import torch
    from torch.utils.data import DataLoader

    from gsbench.data.dataset import SegmentationDataset
    from gsbench.data.manifest import Manifest
    from gsbench.data.transforms import train_transform
    from gsbench.engine.train import param_groups, poly_lr
    from gsbench.recipes import build_loss_from_recipe, build_model_from_recipe

    torch.manual_seed(recipe.seed)
    cfg = recipe.train
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = _stamping(build_model_from_recipe(recipe).to(memory_format=layout), stamps).train()
    loss_fn = build_loss_from_recipe(recipe)
    dataset = SegmentationDataset(Manifest.load(data_root), recipe.data.train_split,
                                  train_transform(recipe.data), seed=recipe.seed,
                                  with_edges=getattr(loss_fn, "needs_edges", False))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                        generator=torch.Generator().manual_seed(recipe.seed))
    optimizer = torch.optim.SGD(param_groups(model, cfg.head_lr_mult), lr=cfg.lr,
                                momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    iteration = 0
    while iteration < total:
        for batch in loader:
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(cfg.lr * group["lr_mult"], iteration, total, cfg.poly_power)
            losses = loss_fn(model(batch["image"].contiguous(memory_format=layout)), batch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            iteration += 1
            if iteration == total:
                break


def _measure_variant(variant: str, config: dict) -> dict:
    """One variant's steady-state seconds per iteration (wall and main-process CPU)."""
    from gsbench.engine.train import train
    from gsbench.recipes import build_model_from_recipe, load_recipe

    total = config["warmup"] + config["iters"] + 1
    overrides = [f"train.iterations={total}", f"train.num_workers={config['workers']}"]
    if variant in ("engine", "before"):
        overrides.append("train.val_every=0")
    recipe = load_recipe(config["recipe"], overrides)
    stamps: list = []
    if variant == "loop":
        _hand_loop(recipe, config["data"], total, stamps)
    else:
        with tempfile.TemporaryDirectory() as folder:
            train(recipe, Path(folder) / "run", data_root=config["data"], quiet=True,
                  build_model=lambda r: _stamping(build_model_from_recipe(r), stamps))
    (wall0, cpu0), (wall1, cpu1) = stamps[config["warmup"]], stamps[config["warmup"] + config["iters"]]
    return {"wall_s": (wall1 - wall0) / config["iters"], "cpu_s": (cpu1 - cpu0) / config["iters"]}


def measure_engine_child(config: dict) -> list[dict]:
    """``config["rounds"]`` rounds of ``config["variants"]`` (the hand loop first) in this one
    process, whose gsbench is the tree under test; each row carries its ratio to the loop of
    its round, measured seconds before it."""
    import torch

    import gsbench

    torch.set_num_threads(config["threads"])
    rows = []
    for round_ in range(config["rounds"]):
        loop = _measure_variant("loop", config)
        for variant in ("loop", *config["variants"]):
            times = loop if variant == "loop" else _measure_variant(variant, config)
            rows.append({"variant": variant, "tree": config["tree"], "workers": config["workers"],
                         "round": round_, **times,
                         "wall_ratio": times["wall_s"] / loop["wall_s"],
                         "cpu_ratio": times["cpu_s"] / loop["cpu_s"],
                         "gsbench": str(Path(gsbench.__file__).parent)})
    return rows


def _run_child(config: dict, pythonpath: str | None) -> list[dict]:
    env = dict(os.environ)
    if pythonpath:  # the old tree's gsbench shadows the installed one
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{config['tree']}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export_revision(ref: str, folder: Path) -> Path:
    """The tree of git revision ``ref`` of this repository, exported into ``folder``."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref], capture_output=True, check=True)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def engine_main(args) -> int:
    from gsbench.data.synthetic import prepare_synthetic
    from gsbench.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    workers = [int(w) for w in args.workers.split(",")] if args.workers else [recipe.train.num_workers]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        manifest = prepare_synthetic(scratch / "data", n_train=args.n_train, n_val=args.n_val,
                                     size=args.size, workers=1, progress=False)
        trees = [("this", ENGINE_VARIANTS[1:], None)]
        if args.before:
            trees.append((args.before, BEFORE_VARIANTS,
                          str(export_revision(args.before, scratch / "before"))))
        print(f"# {args.recipe}: {recipe.train.batch_size} x {recipe.data.crop_size} crops of "
              f"{args.n_train} synthetic {args.size[0]}x{args.size[1]} images, val every "
              f"{recipe.train.val_every} ({args.n_val} images), {args.threads} torch thread(s), "
              f"{args.rounds} rounds of {args.warmup} warm-up + {args.iters} timed iterations; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", flush=True)
        rows = []
        for w in workers:
            for tree, variants, path in trees:
                config = {"tree": tree, "variants": list(variants), "workers": w,
                          "recipe": args.recipe, "data": str(manifest.root),
                          "threads": args.threads, "warmup": args.warmup, "iters": args.iters,
                          "rounds": args.rounds}
                for row in _run_child(config, path):
                    rows.append(row)
                    print(f"{tree} round {row['round']} {row['variant']:>10} workers {w}: "
                          f"{1000 * row['wall_s']:.1f} ms/it wall, {1000 * row['cpu_s']:.1f} ms/it "
                          f"CPU ({row['cpu_ratio']:.2f} x loop)", flush=True)
    print()
    print(engine_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def engine_table(rows: list[dict]) -> str:
    """Per tree, loader workers and variant: median times over rounds and the median of the
    ratios to the loop of the same round (and process)."""
    lines = ["| code | variant | loader workers | wall ms/it | CPU ms/it | wall / loop | CPU / loop |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["tree"], r["workers"], r["variant"]), []).append(r)
    for (tree, w, variant), mine in groups.items():
        def median(key):
            return statistics.median(r[key] for r in mine)
        lines.append(f"| {tree} | {variant} | {w} | {1000 * median('wall_s'):.1f} | "
                     f"{1000 * median('cpu_s'):.1f} | {median('wall_ratio'):.2f} | "
                     f"{median('cpu_ratio'):.2f} |")
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
    parser.add_argument("--layouts", default="nchw",
                        help="nchw, nhwc or nchw,nhwc (both, one after the other per model)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    engine = parser.add_argument_group("--engine: the training engine against a hand-written loop")
    engine.add_argument("--engine", action="store_true", help="measure the engine, not the models")
    engine.add_argument("--recipe", default="pspnet101-smoke")
    engine.add_argument("--before", default="", help="git revision whose engine to measure too")
    engine.add_argument("--workers", default="", help="loader workers, comma-separated "
                        "(default: the recipe's)")
    engine.add_argument("--rounds", type=int, default=3)
    engine.add_argument("--n-train", type=int, default=40)
    engine.add_argument("--n-val", type=int, default=8)
    engine.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_engine_child(json.loads(args.child))))
        return 0
    if args.engine:
        if "--size" not in (argv if argv is not None else sys.argv):
            args.size = (128, 256)  # the quickstart's synthetic images
        if "--iters" not in (argv if argv is not None else sys.argv):
            args.iters, args.warmup = 60, 10
        args.threads = args.threads or 1
        return engine_main(args)

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
    layouts = [name.strip() for name in args.layouts.split(",") if name.strip()]
    if not layouts or set(layouts) - {"nchw", "nhwc"}:
        parser.error(f"--layouts takes nchw and/or nhwc, got {args.layouts!r}")
    rows = []
    for backbone in backbones:
        for model in models:
            for layout in layouts:
                config = {
                    "model": model, "backbone": backbone, "device": args.device,
                    "size": (height, width), "batch": args.batch, "num_classes": args.num_classes,
                    "output_stride": args.output_stride, "warmup": args.warmup,
                    "iters": args.iters, "threads": args.threads, "layout": layout,
                }
                try:
                    row = run_isolated(config)
                except Exception as exc:  # one failing model must not hide the others' figures
                    row = {"model": model, "backbone": backbone, "layout": layout,
                           "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:120]}
                rows.append(row)
                if "error" in row:
                    print(f"{model:>14} {backbone:>12} {layout}  FAILED {row['error']}", flush=True)
                else:
                    print(f"{model:>14} {backbone:>12} {layout}  {row['step_s']:.3f} s/step  "
                          f"{row['images_per_s']:.2f} img/s  {row['peak_mem_mb']:.0f} MB",
                          flush=True)
    print()
    print(format_table(rows, args.reference))
    if len(layouts) == 2:
        print()
        print(format_layout_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
