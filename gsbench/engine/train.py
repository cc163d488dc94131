"""The training loop: SGD with momentum, the poly schedule, checkpoints, resume, torchrun.

Implements the optimisation shared by all five papers (PSANet Sec. 5, GPSNet Sec. 4.1, GFF
Sec. 4, Gated-SCNN Sec. 4, RANet Sec. 4): SGD with momentum, learning rate
``lr_i = lr * (1 - i / iterations) ** power`` set at every iteration ``i`` (the "poly" policy,
power 0.9), weight decay on every parameter, and the head (every parameter outside
``model.backbone``) at ``head_lr_mult`` times the base rate as in hszhao/semseg.

A run writes its run folder (:mod:`gsbench.engine.run_dir`: the recipe, the command, versions,
seed, log, validation metrics and checkpoints), which is everything needed to understand and
continue it.

Reproducibility: one seed (the recipe's) initialises the model; the sampler order and the
class-uniform plan (``data.class_uniform``) depend on (seed, epoch) and every sample's
augmentation on (seed, epoch, index), independent of workers and processes. A resumed run
restores the model, optimizer, grad scaler, the global random states and the sampler position,
so on CPU it ends with bit-identical weights to an uninterrupted run.

Speed: one loader iterator serves the whole run (its workers live as long as the run, items are
keyed by (epoch, index), :class:`~gsbench.data.dataset.EpochStream`), batches go to the device
from pinned memory without blocking, and a step never waits for the device: the loss parts and
a "first non-finite loss" marker accumulate on the device and are read every
``train.log_every`` iterations, before a validation and before a checkpoint. A checkpoint is
written only from finite weights and optimizer state (:func:`checkpoint.first_nonfinite
<gsbench.engine.checkpoint.first_nonfinite>`), so when a loss turns NaN or infinite the
training stops with its last checkpoint finite. ``log.csv``'s ``sec_per_iter`` counts the
training steps only; ``val_time`` is the seconds a validation took.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import platform
import random
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

import gsbench
from gsbench.data.dataset import EpochStream, SegmentationDataset
from gsbench.data.manifest import Manifest
from gsbench.data.transforms import eval_transform, train_transform
from gsbench.data.uniform import ClassPixelIndex, build_class_index
from gsbench.engine.checkpoint import (
    capture_rng_state,
    first_nonfinite,
    initialise_from,
    load_checkpoint,
    load_error_text,
    restore_rng_state,
    save_checkpoint,
)
from gsbench.engine.distributed import (
    DistContext,
    all_reduce_mean,
    all_reduce_min,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from gsbench.engine.inference import infer_whole
from gsbench.engine.memory import keep_freed_memory
from gsbench.engine.run_dir import (
    CHECKPOINTS_DIR,
    FINAL_NAME,
    INIT_FROM_FILE,
    LAST_NAME,
    RECIPE_FILE,
    check_run_dir,
    run_dir_lock,
)
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_json, atomic_write_text, read_json
from gsbench.metrics.confusion import ConfusionMatrix
from gsbench.recipes import Recipe, build_loss_from_recipe, build_model_from_recipe


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int  # iterations done when the call returned
    finished: bool  # reached recipe.train.iterations (False when stopped by stop_after)
    metrics: dict | None = None  # the last validation, if any
    log: list[dict] = field(default_factory=list)
    is_main: bool = True  # False on torchrun ranks > 0, which write and print nothing


#: The "first non-finite loss" marker's value while every loss was finite.
_ALL_FINITE = 2**62

#: How often a plain (non-terminal) progress line is printed between logging steps, seconds.
_PLAIN_LINE_SECONDS = 30.0


def poly_lr(base_lr: float, iteration: int, iterations: int, power: float) -> float:
    """The poly policy: ``base_lr * (1 - iteration / iterations) ** power``."""
    return base_lr * (1.0 - iteration / iterations) ** power


def param_groups(model: nn.Module, head_lr_mult: float) -> list[dict]:
    """Backbone parameters at the base lr and every other parameter at ``head_lr_mult`` x."""
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) in backbone_ids], "lr_mult": 1.0, "name": "backbone"},
        {"params": [p for p in params if id(p) not in backbone_ids], "lr_mult": head_lr_mult, "name": "head"},
    ]
    return [g for g in groups if g["params"]]


def versions() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gsbench": gsbench.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
    }


def train(
    recipe: Recipe,
    run_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    resume: bool = False,
    device: str = "cpu",
    quiet: bool = False,
    command: list[str] | None = None,
    stop_after: int | None = None,
    build_model: Callable[[Recipe], nn.Module] | None = None,
) -> TrainResult:
    """Train ``recipe`` into ``run_dir`` (see the module docstring for the folder's contents).

    ``stop_after`` ends the call after that iteration with a checkpoint, as if interrupted (for
    time-limited cluster jobs; ``resume=True`` continues). ``build_model`` replaces the
    registry's model (default :func:`~gsbench.recipes.build_model_from_recipe`).
    Under torchrun every process calls this; the global batch is split across them.
    """
    keep_freed_memory()
    ctx = init_distributed(device)
    try:
        return _Trainer(recipe, Path(run_dir), ctx, data_root, resume, quiet, command,
                        stop_after, build_model).run()
    finally:
        shutdown_distributed()


class _Trainer:
    def __init__(self, recipe, run_dir, ctx: DistContext, data_root, resume, quiet, command,
                 stop_after, build_model):
        self.recipe, self.run_dir, self.ctx = recipe, run_dir, ctx
        self.resume, self.stop_after = resume, stop_after
        self.cfg = recipe.train
        self.quiet = quiet or not ctx.is_main
        self.command = command if command is not None else sys.argv
        self.build_model = build_model or build_model_from_recipe
        self.data_root = data_root if data_root is not None else recipe.data.root
        self.ckpt_dir = run_dir / CHECKPOINTS_DIR
        self.log_rows: list[dict] = []
        self.log_columns: list[str] | None = None
        self.metrics_history: list[dict] = []
        self.iteration = self.epoch = self.batches_done = 0
        self.elapsed_before = 0.0
        self.last_good: int | None = None
        self.tb = None
        # what the steps accumulate on the device, read at logging steps and checkpoints
        self.part_names: list[str] = []
        self.window_sum: torch.Tensor | None = None  # sum of [loss, parts...] since the last log
        self.window_steps = 0
        self.first_bad: torch.Tensor | None = None  # iteration of the first non-finite loss
        self.first_bad_loss: torch.Tensor | None = None  # and that loss

    # --- setup -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        with contextlib.ExitStack() as stack:
            problem = None
            if self.ctx.is_main:  # the other ranks work under rank 0's lock
                try:
                    stack.enter_context(run_dir_lock(self.run_dir))
                    problem = check_run_dir(self.run_dir, self.resume)
                except GsbenchError as exc:
                    problem = str(exc)
            problem = broadcast_object(self.ctx, problem)
            if problem:
                raise GsbenchError(problem)
            return self._run_locked()

    def _run_locked(self) -> TrainResult:
        if self.stop_after is not None and self.stop_after <= 0:
            raise GsbenchError(f"--stop-after must be positive, got {self.stop_after}")
        if self.data_root is None:
            raise GsbenchError("no dataset: pass --data DIR (a prepared folder) or set data.root in the recipe")
        manifest = Manifest.load(self.data_root)
        # the saved recipe names the data it was trained on, so --resume needs no --data
        self.recipe = replace(self.recipe, data=replace(self.recipe.data, root=str(manifest.root)))
        if manifest.num_classes != self.recipe.data.num_classes:
            raise GsbenchError(
                f"{manifest.root}: dataset has {manifest.num_classes} classes but the recipe's "
                f"data.num_classes is {self.recipe.data.num_classes}"
            )
        cfg = self.cfg
        if cfg.batch_size % self.ctx.world_size:
            raise GsbenchError(
                f"train.batch_size {cfg.batch_size} is not divisible by the {self.ctx.world_size} "
                "torchrun processes"
            )
        self.per_rank_batch = cfg.batch_size // self.ctx.world_size
        self.manifest = manifest
        self._seed_everything(self.recipe.seed)
        # a run stopped before its first checkpoint restarts from iteration 0 on --resume
        restoring = self.resume and (self.ckpt_dir / LAST_NAME).is_file()
        self._build(manifest, initialise=not restoring)
        if restoring:
            self._load_state()
        elif self.ctx.is_main:
            self._write_run_files()
            if self.resume:
                self._read_previous_log()
        barrier(self.ctx)
        return self._loop()

    def _seed_everything(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _build(self, manifest: Manifest, initialise: bool) -> None:
        """The model (initialised from ``train.init_from`` when ``initialise``; a restored run
        takes its weights from its checkpoint instead), optimizer, loss and datasets."""
        ctx, cfg = self.ctx, self.cfg
        self.on_cuda = ctx.device.type == "cuda"
        model = self.build_model(self.recipe)
        self.init_record = None
        if initialise and cfg.init_from is not None:
            self.init_record = initialise_from(model, cfg.init_from)
        if ctx.distributed and self.on_cuda:
            # SyncBN: batch statistics over the global batch (PyTorch supports it on GPUs only;
            # on CPU each process normalises with its own share of the batch)
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif ctx.distributed and ctx.is_main and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            warnings.warn("SyncBatchNorm needs CUDA: on CPU each process normalises with its own "
                          "share of the batch, so results differ slightly from one process")
        # NHWC activations: faster convolutions on CUDA and on the CPU alike (a smoke model's
        # step 0.82-1.01x of NCHW on a 2-core CPU, the same loss; benchmarks/RESULTS.md)
        self.channels_last = cfg.channels_last
        model = model.to(ctx.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.model = model
        self.optimizer = torch.optim.SGD(
            param_groups(model, cfg.head_lr_mult), lr=cfg.lr, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        self.amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
        self.use_amp = self.on_cuda and cfg.amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        if ctx.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.local_rank] if self.on_cuda else None
            )
        else:
            self.ddp = model
        self.loss_fn = build_loss_from_recipe(self.recipe).to(ctx.device)

        data = self.recipe.data
        self.dataset = SegmentationDataset(
            manifest, data.train_split, train_transform(data), seed=self.recipe.seed,
            with_edges=getattr(self.loss_fn, "needs_edges", False),  # decode what the loss reads
            class_uniform=data.class_uniform, class_index=self._class_index(manifest),
        )
        self.sampler = DistributedSampler(
            self.dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
            seed=self.recipe.seed, drop_last=False,
        )
        self.batches_per_epoch = self.sampler.num_samples // self.per_rank_batch
        if self.batches_per_epoch == 0:
            raise GsbenchError(
                f"{manifest.root}: split {data.train_split!r} has {len(self.dataset)} images, fewer "
                f"than one batch of {cfg.batch_size}"
            )
        self.val_dataset = None
        if cfg.val_every:
            self.val_dataset = SegmentationDataset(manifest, data.val_split, eval_transform(), with_edges=False)

    def _class_index(self, manifest: Manifest) -> ClassPixelIndex | None:
        """The class-uniform index of the training split (None when data.class_uniform is 0).
        Rank 0 builds it first, so that the other ranks read the cache it writes."""
        if self.recipe.data.class_uniform == 0:
            return None
        split = self.recipe.data.train_split
        index = problem = None
        if self.ctx.is_main:
            try:
                index = build_class_index(manifest, split)
            except GsbenchError as exc:
                problem = str(exc)
        problem = broadcast_object(self.ctx, problem)  # also keeps the other ranks waiting
        if problem:
            raise GsbenchError(problem)
        return index if index is not None else build_class_index(manifest, split)

    def _write_run_files(self) -> None:
        """The run's description; a restart (``--resume`` of a run stopped before its first
        checkpoint) adds its command line to command.txt."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / RECIPE_FILE, self.recipe.to_yaml())
        if self.resume:
            self._append_command()
        else:
            atomic_write_text(self.run_dir / "command.txt", shlex.join(self.command) + "\n")
        atomic_write_json(self.run_dir / "versions.json", versions())
        atomic_write_text(self.run_dir / "seed.txt", f"{self.recipe.seed}\n")
        if self.init_record is not None:
            atomic_write_json(self.run_dir / INIT_FROM_FILE, self.init_record)

    def _append_command(self) -> None:
        with open(self.run_dir / "command.txt", "a", encoding="utf-8") as f:
            f.write(shlex.join(self.command) + "\n")

    def _load_state(self) -> None:
        state = load_checkpoint(self.ckpt_dir / LAST_NAME)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.iteration = int(state["iteration"])
            self.epoch = int(state["epoch"])
            self.batches_done = int(state["batches_done"])
            self.elapsed_before = float(state.get("elapsed", 0.0))
            restore_rng_state(state["rng"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise GsbenchError(f"{self.ckpt_dir / LAST_NAME}: does not fit this run ({load_error_text(exc)})") from None
        self.last_good = self.iteration
        if self.ctx.is_main:
            self._read_previous_log()
            self._append_command()

    def _read_previous_log(self) -> None:
        log_file = self.run_dir / "log.csv"
        if log_file.is_file():
            with open(log_file, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                self.log_columns = list(reader.fieldnames or []) or None
                self.log_rows = [r for r in reader if int(r["iter"]) <= self.iteration]
        metrics_file = self.run_dir / "metrics.json"
        if metrics_file.is_file():
            history = read_json(metrics_file).get("history", [])
            self.metrics_history = [m for m in history if m["iteration"] <= self.iteration]

    # --- loop ------------------------------------------------------------------------------------
    def _loop(self) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        total = cfg.iterations
        end = total if self.stop_after is None else min(total, self.stop_after)
        self._open_tensorboard()
        self.start_time = window_start = time.perf_counter()
        first = self.iteration + 1
        metrics = self.metrics_history[-1] if self.metrics_history else None
        self.ddp.train()
        batches = iter(self._loader())
        try:
            with self._progress(total) as advance:
                while self.iteration < end:
                    self._step(next(batches))
                    self.iteration += 1
                    self.batches_done += 1
                    if self.batches_done == self.batches_per_epoch:
                        self.epoch, self.batches_done = self.epoch + 1, 0
                    it = self.iteration
                    row = None
                    if it % cfg.log_every == 0 or it == end:
                        now = time.perf_counter()
                        row = self._log((now - window_start) / self.window_steps)
                        window_start = now
                    elif it == first and not self.quiet:  # progress from the first iteration on
                        row = self._peek_row(time.perf_counter() - self.start_time)
                    advance(it, row)
                    if cfg.val_every and (it % cfg.val_every == 0 or it == total):
                        metrics, seconds = self._validate()
                        window_start += seconds  # seconds per iteration count the steps only
                    if it % cfg.checkpoint_every == 0 or it == end:
                        self._save_last()
        finally:
            del batches  # ends the loader's worker processes
        finished = self.iteration >= total
        if finished and ctx.is_main:
            save_checkpoint(self.ckpt_dir / FINAL_NAME, {
                "kind": "model", "iteration": self.iteration,
                "model": self.model.state_dict(), "recipe": self.recipe.to_dict(),
            })
        if self.tb is not None:
            self.tb.close()
        barrier(ctx)
        return TrainResult(self.run_dir, self.iteration, finished, metrics, list(self.log_rows), ctx.is_main)

    def _loader(self) -> DataLoader:
        """One loader for the whole run: an endless :class:`EpochStream` from the current
        position, so its workers start once and keep ``prefetch_factor`` batches ready."""
        cfg = self.cfg
        stream = EpochStream(self.sampler, self.batches_per_epoch * self.per_rank_batch,
                             self.epoch, self.batches_done * self.per_rank_batch)
        return DataLoader(
            self.dataset, batch_size=self.per_rank_batch, sampler=stream,
            num_workers=cfg.num_workers, pin_memory=self.on_cuda,
            # a private generator: creating loaders must not consume the global torch RNG,
            # whose state the checkpoints restore
            generator=torch.Generator().manual_seed(self.recipe.seed),
        )

    def _autocast(self):
        if self.use_amp:
            return torch.autocast("cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def _step(self, batch: dict) -> None:
        """One SGD iteration. The loss parts are added to the window on the device; nothing
        here waits for the device."""
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = poly_lr(cfg.lr * group["lr_mult"], self.iteration, cfg.iterations,
                                  cfg.poly_power)
        device = self.ctx.device
        images = batch["image"].to(device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        with self._autocast():
            outputs = self.ddp(images)
            losses = self.loss_fn(outputs, targets)
        self.part_names = ["loss"] + sorted(k for k in losses if k != "loss")
        self._accumulate(torch.stack([losses[k].detach().double() for k in self.part_names]))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _accumulate(self, values: torch.Tensor) -> None:
        """Add one step's [loss, parts...] to the window and mark the first non-finite loss."""
        if self.window_sum is None or self.window_sum.shape != values.shape:
            self.window_sum, self.window_steps = torch.zeros_like(values), 0
        if self.first_bad is None:
            self.first_bad = torch.full((), _ALL_FINITE, dtype=torch.int64, device=values.device)
            self.first_bad_loss = torch.zeros((), dtype=values.dtype, device=values.device)
        self.window_sum += values
        self.window_steps += 1
        newly_bad = ~torch.isfinite(values).all() & (self.first_bad == _ALL_FINITE)
        self.first_bad = torch.where(newly_bad, self.iteration + 1, self.first_bad)
        self.first_bad_loss = torch.where(newly_bad, values[0], self.first_bad_loss)

    def _check_losses(self) -> None:
        """Stop if any rank's loss was not finite since the run (re)started."""
        if self.first_bad is None:
            return
        first = int(all_reduce_min(self.ctx, self.first_bad).item())
        if first != _ALL_FINITE:
            value = self.first_bad_loss.item() if int(self.first_bad) == first else "not finite"
            self._stop(f"loss is {value} at iteration {first}")

    def _stop(self, what: str) -> None:
        if self.ctx.is_main:
            self._write_log()
        where = (
            f"{self.ckpt_dir / LAST_NAME} (iteration {self.last_good}) is the last good checkpoint"
            if self.last_good is not None else "no checkpoint was written yet"
        )
        raise GsbenchError(f"{what}; training stopped and {where} (try a lower train.lr than {self.cfg.lr})")

    # --- outputs ---------------------------------------------------------------------------------
    def _log(self, seconds_per_iter: float) -> dict:
        """The logging step: read the window (the one wait for the device between checkpoints),
        stop on a non-finite loss, else append a row to log.csv."""
        self._check_losses()
        means = all_reduce_mean(self.ctx, self.window_sum / self.window_steps).tolist()
        self.window_sum, self.window_steps = None, 0
        row = {
            "iter": self.iteration,
            "epoch": self.epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            **{name: float(v) for name, v in zip(self.part_names, means)},
            "time": round(self.elapsed_before + time.perf_counter() - self.start_time, 3),
            "sec_per_iter": round(seconds_per_iter, 4),
        }
        if self.ctx.is_main:
            self.log_rows.append(row)
            self._write_log()
            if self.tb is not None:
                for key in ["lr", *self.part_names]:
                    self.tb.add_scalar(f"train/{key}", row[key], self.iteration)
        return row

    def _peek_row(self, seconds: float) -> dict:
        """The window so far on this process, for the progress display only (not logged)."""
        means = (self.window_sum / self.window_steps).tolist()
        return {"lr": self.optimizer.param_groups[0]["lr"], "sec_per_iter": seconds / self.window_steps,
                **dict(zip(self.part_names, means))}

    def _write_log(self) -> None:
        if not self.log_rows:
            return
        if self.log_columns is None:
            self.log_columns = list(self.log_rows[0])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.log_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.log_rows)
        atomic_write_text(self.run_dir / "log.csv", buffer.getvalue())

    def _save_last(self) -> None:
        """Write the training state, if the losses since the last read and every weight and
        optimizer tensor are finite (on every rank); stop otherwise."""
        self._check_losses()
        names = {id(p): name for name, p in self.model.named_parameters()}
        optimizer_tensors = (
            (f"optimizer {key} of {names.get(id(param), 'a parameter')}", value)
            for param, state in self.optimizer.state.items() for key, value in state.items()
        )
        bad = first_nonfinite(itertools.chain(self.model.state_dict().items(), optimizer_tensors))
        flags = all_reduce_mean(self.ctx, torch.tensor([float(bad is not None)], dtype=torch.float64,
                                                       device=self.ctx.device))
        if bad is not None or float(flags[0]) > 0:
            self._stop(f"weights are not finite at iteration {self.iteration} "
                       f"({bad or 'on another process'})")
        if self.ctx.is_main:
            save_checkpoint(self.ckpt_dir / LAST_NAME, {
                "kind": "train",
                "iteration": self.iteration,
                "epoch": self.epoch,
                "batches_done": self.batches_done,
                "elapsed": self.elapsed_before + time.perf_counter() - self.start_time,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "rng": capture_rng_state(),
                "recipe": self.recipe.to_dict(),
            })
        self.last_good = self.iteration
        barrier(self.ctx)

    @torch.no_grad()
    def _validate(self) -> tuple[dict, float]:
        """mIoU on the validation split (whole images), shared across ranks, and the seconds it
        took (log.csv's ``val_time``)."""
        self._check_losses()  # no validation of weights a non-finite loss has reached
        started = time.perf_counter()
        model = self.model
        was_training = model.training
        model.eval()
        confusion = ConfusionMatrix(self.recipe.data.num_classes)
        for index in range(self.ctx.rank, len(self.val_dataset), self.ctx.world_size):
            item = self.val_dataset[index]
            images = item["image"][None].to(self.ctx.device)
            with self._autocast():
                logits = infer_whole(model, images)
            pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
            confusion.update(pred, item["label"].numpy().astype(np.uint8))
        confusion.all_reduce()
        model.train(was_training)
        result = {"iteration": self.iteration, "miou": confusion.compute()["miou"]}
        seconds = time.perf_counter() - started
        if self.ctx.is_main:
            self.metrics_history.append(result)
            atomic_write_json(self.run_dir / "metrics.json", {
                "split": self.recipe.data.val_split, **result, "history": self.metrics_history,
            })
            values = {"val_miou": result["miou"], "val_time": round(seconds, 3)}
            if self.log_rows and int(self.log_rows[-1]["iter"]) == self.iteration:
                self.log_rows[-1].update(values)
            else:
                self.log_rows.append({"iter": self.iteration, "epoch": self.epoch, **values})
            if self.log_columns is not None:
                self.log_columns += [key for key in values if key not in self.log_columns]
            self._write_log()
            if self.tb is not None:
                self.tb.add_scalar("val/miou", result["miou"], self.iteration)
        return result, seconds

    def _open_tensorboard(self) -> None:
        if not self.ctx.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: tensorboard is not a dependency
            return
        self.tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=self.iteration + 1)

    @contextlib.contextmanager
    def _progress(self, total: int):
        """A callback ``advance(iteration, row)``, called after every iteration (``row``: the
        logged values, or None): a rich bar with rate and time left on a terminal; otherwise a
        plain line at the first iteration, at every logging step and every half minute between
        them. Nothing with --quiet or on ranks > 0."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        if self.quiet:
            yield lambda it, row: None
            return
        if not console.is_terminal:
            started, first = time.perf_counter(), self.iteration
            last_line = [started]

            def advance(it, row):
                now = time.perf_counter()
                if row is None and now - last_line[0] < _PLAIN_LINE_SECONDS:
                    return
                last_line[0] = now
                rate = row["sec_per_iter"] if row else (now - started) / (it - first)
                parts = f"{' '.join(f'{k}={row[k]:.4f}' for k in self.part_names)} lr={row['lr']:.3g} " \
                    if row else ""
                console.print(f"iter {it}/{total} {parts}{rate:.3f}s/it "
                              f"ETA {_duration(rate * (total - it))}", highlight=False)
            yield advance
            return
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]}"),
            TimeRemainingColumn(), console=console,
        )
        with progress:
            task = progress.add_task(self.recipe.name, total=total, completed=self.iteration,
                                     loss="-", lr="-", speed="-")

            def advance(it, row):
                if row is None:
                    progress.update(task, completed=it)
                else:
                    progress.update(task, completed=it, loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.3g}",
                                    speed=f"{row['sec_per_iter']:.3f}s/it")

            yield advance


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"

