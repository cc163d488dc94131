"""GPU readiness of training: seconds per iteration, images per second and peak memory of the
full-scale recipes at the papers' crop and per-GPU batch, beside mmsegmentation's published
training memory for the same models.

For each recipe (default: the eight below) every variant runs in a fresh process:

- source ``synthetic``: the training step alone (model, loss, SGD with the recipe's parameter
  groups, autocast and grad scaler as the engine sets them) on random images and labels;
- source ``loader``: ``gsbench train`` itself (:func:`gsbench.engine.train.train`) on a
  prepared dataset (``--data``, or synthetic street scenes of Cityscapes' size generated once),
  with the recipe's loader workers;

each with AMP on and off and channels_last on and off (AMP acts on CUDA only). A variant trains
``--warmup`` + ``--iters`` iterations; its time runs from the training forward of iteration
``warmup + 1`` to that of iteration ``warmup + iters + 1`` (the device synchronised at both
ends), its peak memory is ``torch.cuda.max_memory_allocated`` over that window (on a CPU: the
resident-set high-water mark above the resident set at its start).

On a machine without CUDA (or with ``--device cpu``) it runs the same at a small size: each
recipe's ``-smoke`` sibling (tiny backbone, small crop) on 128x256 synthetic images, AMP and
channels_last off only. That is the path the tests run.

    python benchmarks/bench_gpu.py --out bench-gpu              # CUDA if present, else CPU
    python benchmarks/bench_gpu.py --recipes psanet101 --iters 50 --data DATA --out bench-gpu

It writes ``OUT/bench_gpu.json`` (one row per variant) and ``OUT/bench_gpu.md`` (the table).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_train import _current_rss_bytes, _max_rss_bytes

#: The full-scale recipes, their per-GPU batch and where that batch comes from.
RECIPES: dict[str, tuple[int, str]] = {
    "pspnet101": (2, "hszhao/semseg: 16 on 8 GPUs"),
    "psanet101": (2, "hszhao/semseg: 16 on 8 GPUs"),
    "gscnn101": (2, "paper: 16 on 8 GPUs"),
    "gff101_dfp": (2, "paper: batch 8, GPUs not given (4 assumed)"),
    "gpsnet101_ocnet": (2, "paper: 8 on 4 GPUs"),
    "ranet101": (2, "paper: batch 8, GPUs not given (4 assumed)"),
    "ccnet101": (2, "mmsegmentation: 8 on 4 GPUs"),
    "danet101": (2, "mmsegmentation: 8 on 4 GPUs"),
}

#: mmsegmentation v1.2.2 model zoo (``configs/*/metafile.yaml``): training memory per GPU in
#: GB, R-101-D8 on Cityscapes, 2 images per GPU on 4 V100s, 40K schedule, by crop.
MMSEG_MEMORY_GB: dict[str, dict[str, float]] = {
    "pspnet101": {"512x1024": 9.6, "769x769": 10.9},
    "psanet101": {"512x1024": 10.5, "769x769": 11.9},
    "ccnet101": {"512x1024": 9.5, "769x769": 10.7},
    "danet101": {"512x1024": 10.9, "769x769": 12.8},
}

SOURCES = ("synthetic", "loader")


def variants(cuda: bool) -> list[dict]:
    """(source, amp, channels_last) of every variant; on a CPU both flags are off only (the
    small CPU run checks the script, not the layouts)."""
    flags = [True, False] if cuda else [False]
    return [{"source": s, "amp": a, "channels_last": c}
            for s, a, c in itertools.product(SOURCES, flags, flags)]


# --- one variant, in a child process ------------------------------------------------------------


def _recipe(config: dict):
    from gsbench.recipes import load_recipe

    total = config["warmup"] + config["iters"] + 1
    overrides = [
        f"train.batch_size={config['batch']}", f"train.iterations={total}",
        f"train.amp={str(config['amp']).lower()}",
        f"train.channels_last={str(config['channels_last']).lower()}",
        "train.val_every=0", f"train.log_every={total}", f"train.checkpoint_every={total}",
        "pretrained=null",  # ImageNet weights change nothing here and may not be on the machine
    ]
    if config["workers"] is not None:
        overrides.append(f"train.num_workers={config['workers']}")
    return load_recipe(config["recipe"], overrides), total


class _Window:
    """Stamps (time, memory) at the training forwards that open and close the timed window."""

    def __init__(self, device, warmup: int, iters: int):
        import torch

        self.torch, self.device = torch, device
        self.marks = {warmup: "start", warmup + iters: "end"}
        self.forwards = 0
        self.times: dict[str, float] = {}
        self.rss_start = 0

    def hook(self, module, args) -> None:
        if not module.training:
            return
        mark = self.marks.get(self.forwards)
        self.forwards += 1
        if mark is None:
            return
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)
        self.times[mark] = time.perf_counter()
        if mark == "start":
            if self.device.type == "cuda":
                self.torch.cuda.reset_peak_memory_stats(self.device)
            self.rss_start = _current_rss_bytes()

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return self.torch.cuda.max_memory_allocated(self.device)
        return max(_max_rss_bytes() - self.rss_start, 0)


def _synthetic_steps(recipe, total: int, window: _Window, device) -> None:
    """The engine's step on random tensors: nothing loaded, nothing logged."""
    import torch

    from gsbench.engine.train import param_groups, poly_lr
    from gsbench.recipes import build_loss_from_recipe, build_model_from_recipe

    cfg = recipe.train
    channels_last = cfg.channels_last
    use_amp = device.type == "cuda" and cfg.amp
    amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    model = build_model_from_recipe(recipe).to(
        device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    model.register_forward_pre_hook(window.hook)
    model.train()
    loss_fn = build_loss_from_recipe(recipe).to(device)
    optimizer = torch.optim.SGD(param_groups(model, cfg.head_lr_mult), lr=cfg.lr,
                                momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    height, width = recipe.data.crop_size
    generator = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(cfg.batch_size, 3, height, width, generator=generator).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    batch = {"label": torch.randint(0, recipe.data.num_classes, (cfg.batch_size, height, width),
                                    generator=generator).to(device)}
    if getattr(loss_fn, "needs_edges", False):
        batch["edge"] = (torch.rand(cfg.batch_size, height, width, generator=generator) < 0.05).float().to(device)
    for iteration in range(total):
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(cfg.lr * group["lr_mult"], iteration, total, cfg.poly_power)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            losses = loss_fn(model(images), batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()


def measure(config: dict) -> dict:
    """One variant's seconds per iteration, images per second and peak memory."""
    import torch

    from gsbench.engine.train import train
    from gsbench.recipes import build_model_from_recipe

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    recipe, total = _recipe(config)
    window = _Window(device, config["warmup"], config["iters"])
    if config["source"] == "synthetic":
        _synthetic_steps(recipe, total, window, device)
    else:
        def build(r):
            model = build_model_from_recipe(r)
            model.register_forward_pre_hook(window.hook)
            return model

        with tempfile.TemporaryDirectory() as folder:
            train(recipe, Path(folder) / "run", data_root=config["data"], device=device.type,
                  quiet=True, build_model=build)
    seconds = (window.times["end"] - window.times["start"]) / config["iters"]
    return {**{k: config[k] for k in ("recipe", "source", "amp", "channels_last", "batch")},
            "crop": list(recipe.data.crop_size), "workers": recipe.train.num_workers,
            "s_per_it": seconds, "images_per_s": config["batch"] / seconds,
            "peak_mem_gib": window.peak_bytes() / 2**30}


def _run_child(config: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                          capture_output=True, text=True)
    if done.returncode:
        return {**config, "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the table ----------------------------------------------------------------------------------


def mmseg_reference(recipe: str) -> str:
    """mmsegmentation's published memory of the same model (none for a small-size row)."""
    figures = MMSEG_MEMORY_GB.get(recipe)
    if not figures:
        return "-"
    return ", ".join(f"{gb} GB at {crop}" for crop, gb in figures.items())


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| recipe | crop | batch / GPU | source | AMP | channels_last | s/it | images/s "
             "| peak memory (GiB) | mmseg R-101-D8 training memory (V100, 2 / GPU) |",
             "| --- | --- | ---: | --- | --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        flags = f"{'on' if r['amp'] else 'off'} | {'on' if r['channels_last'] else 'off'}"
        if "error" in r:
            lines.append(f"| {r['recipe']} | | {r['batch']} | {r['source']} | {flags} | failed: "
                         f"{r['error']} | | | |")
            continue
        crop = "x".join(str(v) for v in r["crop"])
        lines.append(f"| {r['recipe']} | {crop} | {r['batch']} | {r['source']} | {flags} | "
                     f"{r['s_per_it']:.3f} | {r['images_per_s']:.2f} | {r['peak_mem_gib']:.3f} | "
                     f"{mmseg_reference(r['recipe'])} |")
    return "\n".join(lines) + "\n"


def _prepare_data(folder: Path, size: tuple[int, int], n_train: int) -> str:
    from gsbench.data.synthetic import prepare_synthetic

    return str(prepare_synthetic(folder, n_train=n_train, n_val=1, size=size, workers=2,
                                 progress=False).root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipes")
    parser.add_argument("--device", default="", help="cuda or cpu (default: cuda if present)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data", default="", help="a prepared dataset for the loader source "
                        "(default: synthetic images generated once)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: "
                        "the recipe's)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, required=False, default=Path("bench-gpu"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return 0

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    cuda = device == "cuda"
    names = [n for n in args.recipes.split(",") if n]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"--recipes: not a full-scale recipe of this benchmark: {', '.join(unknown)} "
                     f"(choose from {', '.join(RECIPES)})")
    card = torch.cuda.get_device_name(0) if cuda else (platform.processor() or platform.machine())
    scale = "full scale" if cuda else "small size (the -smoke recipes: tiny backbone, small crops)"
    header = (f"Training, {scale}, torch {torch.__version__}, {device} ({card}); "
              f"{args.warmup} warm-up + {args.iters} timed iterations per variant, each in a "
              "fresh process.")
    print(header, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or _prepare_data(Path(scratch) / "data", (1024, 2048) if cuda else (128, 256),
                                          n_train=8)
        for name in names:
            recipe = name if cuda else f"{name}-smoke"
            batch = RECIPES[name][0] if cuda else 2
            for variant in variants(cuda):
                config = {"recipe": recipe, **variant, "batch": batch, "device": device,
                          "iters": args.iters, "warmup": args.warmup, "data": data,
                          "workers": args.workers, "threads": args.threads}
                row = _run_child(config)
                rows.append(row)
                shown = row.get("error") or (f"{row['s_per_it']:.3f} s/it, {row['images_per_s']:.2f} "
                                             f"images/s, {row['peak_mem_gib']:.3f} GiB")
                print(f"{recipe} {variant['source']} amp={variant['amp']} "
                      f"channels_last={variant['channels_last']}: {shown}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_gpu.json").write_text(json.dumps(
        {"device": device, "card": card, "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    table = markdown(rows, header)
    (args.out / "bench_gpu.md").write_text(table)
    print()
    print(table)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
