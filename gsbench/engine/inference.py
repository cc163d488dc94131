"""Test-time inference: whole image, sliding window, multi-scale and horizontal flip.

Pure functions over a segmentation model whose ``forward(images)`` returns ``{"out": logits}``
with the logits at the input resolution (the gsbench model contract). Images are N x 3 x H x W
ImageNet-normalised floats; every function returns N x C x H x W at the input resolution.

A model may expose further class-logit maps that can be scored instead of ``"out"``
(:mod:`gsbench.engine.outputs`); :attr:`InferenceOptions.output` picks the map.

Conventions (those of mmsegmentation, which the papers' public code agrees with up to rounding):

- sliding window: windows of the crop size start every ``stride`` pixels, the last window of a
  row/column is shifted back to end at the image border, so every window lies inside the image;
  an image smaller than the crop is zero-padded (zero = the mean colour after normalisation, as
  semseg pads with the mean) at its bottom/right up to the crop and the padding is cut off again.
  The *logits* of overlapping windows are averaged, dividing by the exact count of windows that
  cover each pixel.
- multi-scale and flip (the "MS" / "MS+Flip" columns of PSANet Table 5, GPSNet and RANet): the
  image is resized by each scale (bilinear, align_corners=False), inferred (whole or slide), its
  logits resized back to the input size, and the *softmax probabilities* are averaged over all
  scales and flips. Averaging probabilities (not logits) is the convention of both semseg and
  mmsegmentation's test-time augmentation.

The second half runs a trained model (a run folder or checkpoint) over a split of a prepared
dataset, feeding the same metrics accumulator as ``gsbench eval --pred-dir``
(:func:`evaluate_model`), saving trainId maps and writing the Cityscapes test-server export.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gsbench.engine.eval_setting import DEFAULT_MS_SCALES, eval_tag
from gsbench.engine.outputs import MAIN_OUTPUT, check_output
from gsbench.errors import GsbenchError

if TYPE_CHECKING:
    from gsbench.data.manifest import Manifest, Sample
    from gsbench.recipes import Recipe

#: Inference modes understood by :func:`infer`.
INFERENCE_MODES = ("whole", "slide")


@dataclass(frozen=True)
class InferenceOptions:
    """How to turn a model into per-pixel class probabilities at test time.

    ``crop_size`` and ``stride`` are (height, width); ``stride`` defaults to 2/3 of the crop
    (semseg's ``stride_rate = 2/3``). ``crop_size`` is required for ``mode="slide"``.
    ``output`` is the model output that is scored: ``"out"`` (the prediction) or one of the
    model's ``extra_outputs`` (see :func:`gsbench.engine.outputs.model_outputs`).
    """

    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    output: str = MAIN_OUTPUT

    def __post_init__(self) -> None:
        if self.mode not in INFERENCE_MODES:
            raise GsbenchError(f"inference mode {self.mode!r}: expected one of {INFERENCE_MODES}")
        if self.mode == "slide" and self.crop_size is None:
            raise GsbenchError("sliding-window inference needs a crop size (crop_size)")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise GsbenchError(f"inference scales {self.scales}: need at least one scale, all > 0")
        if not isinstance(self.output, str) or not self.output:
            raise GsbenchError(f"inference output {self.output!r}: expected the name of a model output")

    @property
    def resolved_stride(self) -> tuple[int, int] | None:
        if self.crop_size is None:
            return None
        return self.stride or default_stride(self.crop_size)


def default_stride(crop_size: tuple[int, int]) -> tuple[int, int]:
    """2/3 of the crop, rounded up (semseg: ``ceil(crop * 2/3)``)."""
    return (math.ceil(crop_size[0] * 2 / 3), math.ceil(crop_size[1] * 2 / 3))


def _logits(model: nn.Module, images: torch.Tensor, output: str = MAIN_OUTPUT) -> torch.Tensor:
    if output == MAIN_OUTPUT:
        out = model(images)[MAIN_OUTPUT]
    else:
        out = model(images, outputs=(output,))[output]
    if out.shape[-2:] != images.shape[-2:]:
        raise GsbenchError(
            f"model returned logits of size {tuple(out.shape[-2:])} for an input of size "
            f"{tuple(images.shape[-2:])}; models must return logits at the input resolution"
        )
    return out


@torch.no_grad()
def infer_whole(model: nn.Module, images: torch.Tensor, output: str = MAIN_OUTPUT) -> torch.Tensor:
    """Logits (of the model output ``output``) of the whole image in one forward pass
    (N x C x H x W)."""
    return _logits(model, images, output)


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis: every ``stride``, the last one flush with
    the end (mmseg: ``grids = ceil((size - crop) / stride) + 1``, clipped to the border)."""
    if crop <= 0 or stride <= 0:
        raise GsbenchError(f"sliding window: crop {crop} and stride {stride} must be > 0")
    if size <= crop:
        return [0]
    grids = math.ceil((size - crop) / stride) + 1
    return sorted({min(i * stride, size - crop) for i in range(grids)})


def sliding_window_count(
    height: int, width: int, crop_size: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """How many windows cover each pixel of a (possibly padded) ``height x width`` image
    (int64, max(height, crop) x max(width, crop)); the divisor of :func:`infer_slide`."""
    padded_h, padded_w = max(height, crop_size[0]), max(width, crop_size[1])
    rows = torch.zeros(padded_h, dtype=torch.int64)
    cols = torch.zeros(padded_w, dtype=torch.int64)
    # Windows form a grid, so the count is the outer product of the per-axis coverages.
    for y in window_starts(padded_h, crop_size[0], stride[0]):
        rows[y : y + crop_size[0]] += 1
    for x in window_starts(padded_w, crop_size[1], stride[1]):
        cols[x : x + crop_size[1]] += 1
    return rows[:, None] * cols[None, :]


@torch.no_grad()
def infer_slide(
    model: nn.Module,
    images: torch.Tensor,
    crop_size: tuple[int, int],
    stride: tuple[int, int] | None = None,
    output: str = MAIN_OUTPUT,
) -> torch.Tensor:
    """Sliding-window logits (N x C x H x W): overlapping windows' logits averaged per pixel."""
    stride = stride or default_stride(crop_size)
    n, _, height, width = images.shape
    crop_h, crop_w = crop_size
    pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))  # zero = mean colour after normalisation
    padded_h, padded_w = images.shape[-2:]
    total: torch.Tensor | None = None
    for y in window_starts(padded_h, crop_h, stride[0]):
        for x in window_starts(padded_w, crop_w, stride[1]):
            window = _logits(model, images[:, :, y : y + crop_h, x : x + crop_w], output)
            if total is None:
                total = window.new_zeros((n, window.shape[1], padded_h, padded_w))
            total[:, :, y : y + crop_h, x : x + crop_w] += window
    assert total is not None  # window_starts always yields at least one window
    count = sliding_window_count(height, width, crop_size, stride).to(total.device, total.dtype)
    return (total / count)[:, :, :height, :width]


def _infer_once(model: nn.Module, images: torch.Tensor, options: InferenceOptions) -> torch.Tensor:
    if options.mode == "slide":
        assert options.crop_size is not None
        return infer_slide(model, images, options.crop_size, options.resolved_stride,
                           options.output)
    return infer_whole(model, images, options.output)


@torch.no_grad()
def infer(
    model: nn.Module, images: torch.Tensor, options: InferenceOptions = InferenceOptions()
) -> torch.Tensor:
    """Class probabilities (N x C x H x W) averaged over the scales and flips of ``options``.

    For each scale s the image is resized to round(s*H) x round(s*W), inferred whole or by
    sliding window, the logits resized back to H x W, then softmax; the flipped image's
    logits are flipped back before the softmax. The argmax is the prediction. The logits are
    those of the model output ``options.output``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise GsbenchError(f"images must be N x 3 x H x W, got shape {tuple(images.shape)}")
    check_output(model, options.output)
    height, width = images.shape[-2:]
    probabilities: torch.Tensor | None = None
    views = 0
    for scale in options.scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = images if size == (height, width) else F.interpolate(
            images, size=size, mode="bilinear", align_corners=False
        )
        if options.flip:
            # One forward for both views (eval-mode BatchNorm is per sample, so batching them
            # changes nothing but the number of kernel launches).
            both = _infer_once(model, torch.cat([scaled, scaled.flip(-1)]), options)
            view_logits = [both[: len(images)], both[len(images) :].flip(-1)]
        else:
            view_logits = [_infer_once(model, scaled, options)]
        for logits in view_logits:
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(
                    logits, size=(height, width), mode="bilinear", align_corners=False
                )
            probs = logits.softmax(dim=1)
            probabilities = probs if probabilities is None else probabilities + probs
            views += 1
    assert probabilities is not None
    return probabilities / views


def predict(
    model: nn.Module, images: torch.Tensor, options: InferenceOptions = InferenceOptions()
) -> torch.Tensor:
    """Predicted trainIds (N x H x W, uint8) under ``options``."""
    return infer(model, images, options).argmax(dim=1).to(torch.uint8)


def parse_scales(text: str | Sequence[float]) -> tuple[float, ...]:
    """Scales from ``"0.5,0.75,1.0"`` (or a sequence), for CLI options and recipes."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        scales = tuple(float(part) for part in parts if str(part).strip())
    except ValueError:
        raise GsbenchError(f"scales {text!r}: expected comma-separated numbers like 0.5,1.0,1.5")
    if not scales or any(s <= 0 for s in scales):
        raise GsbenchError(f"scales {text!r}: need at least one scale, all > 0")
    return scales


# --- a trained model over a dataset split (``gsbench eval RUN_DIR|CHECKPOINT``) -----------------


@dataclass
class LoadedModel:
    """A model with its trained weights, in eval mode, and where they came from."""

    model: nn.Module
    recipe: Recipe
    checkpoint: Path
    run_dir: Path | None  # the run folder the checkpoint belongs to, if any
    iteration: int | None


def load_model_for_eval(target: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the recipe's model and load the trained weights of a run folder or checkpoint.

    The recipe is the run folder's ``recipe.yaml``, else the one stored in the checkpoint. The
    checkpoint is read with ``torch.load(weights_only=True)``; weights that do not fit the
    recipe's model (missing, unexpected or differently shaped tensors) raise a GsbenchError.
    """
    from gsbench.engine.checkpoint import load_checkpoint
    from gsbench.engine.run_dir import find_checkpoint, load_run_recipe
    from gsbench.recipes import build_model_from_recipe, recipe_from_dict

    checkpoint, run_dir = find_checkpoint(target)
    state = load_checkpoint(checkpoint)
    if not isinstance(state.get("model"), dict):
        raise GsbenchError(f"{checkpoint}: checkpoint has no 'model' weights")
    if run_dir is not None:
        recipe = load_run_recipe(run_dir)
    elif isinstance(state.get("recipe"), dict):
        recipe = recipe_from_dict(state["recipe"], source=f"{checkpoint} (stored recipe)")
    else:
        raise GsbenchError(f"{checkpoint}: no recipe.yaml beside it and none stored in it")
    # The trained weights replace every parameter, so no backbone weights need loading.
    model = build_model_from_recipe(recipe, pretrained=None)
    try:
        result = model.load_state_dict(state["model"], strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "")
        raise GsbenchError(
            f"{checkpoint}: weights do not fit recipe {recipe.name!r} ({detail or 'shape mismatch'})"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"{len(result.missing_keys)} missing, e.g. {result.missing_keys[0]}")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[0]}")
        raise GsbenchError(
            f"{checkpoint}: weights do not fit recipe {recipe.name!r} ({'; '.join(parts)})"
        )
    model = model.to(device).eval()
    iteration = state.get("iteration")
    return LoadedModel(model, recipe, checkpoint, run_dir, int(iteration) if iteration is not None else None)


def _single_item(items: list[dict]) -> dict:
    # Images of a split may differ in size, so they are inferred one at a time, unbatched.
    return items[0]


def predict_split(
    model: nn.Module,
    manifest: Manifest,
    split: str,
    options: InferenceOptions = InferenceOptions(),
    *,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> Iterator[tuple[Sample, np.ndarray]]:
    """Yield ``(sample, predicted trainIds as HxW uint8)`` for every image of ``split``, in
    manifest order. Images are read (and normalised) by ``num_workers`` loader processes."""
    from torch.utils.data import DataLoader

    from gsbench.data.dataset import SegmentationDataset

    dataset = SegmentationDataset(manifest, split, with_edges=False)
    loader = DataLoader(
        dataset, batch_size=1, shuffle=False, num_workers=num_workers,
        collate_fn=_single_item,
    )
    model.eval()
    for sample, item in zip(dataset.samples, loader):
        images = item["image"][None].to(device)
        labels = predict(model, images, options)[0]
        yield sample, labels.cpu().numpy()


def evaluate_model(
    loaded: LoadedModel,
    data: str | os.PathLike,
    *,
    split: str = "val",
    options: InferenceOptions = InferenceOptions(),
    device: str | torch.device = "cpu",
    save_pred_dir: str | os.PathLike | None = None,
    export: str | None = None,
    export_dir: str | os.PathLike | None = None,
    radii: Sequence[int] | None = None,
    crop_factors: Sequence[int] | None = None,
    fscore_convention: str = "gscnn",
    num_workers: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict | None:
    """Run ``loaded`` over ``split`` of the prepared dataset ``data``; return the metrics.json
    dict (as :func:`gsbench.evaluation.pred_dir.evaluate_prediction_dir` does, plus the inference
    settings), or None for a split without ground truth (e.g. the Cityscapes test split, which
    needs ``export``).

    ``save_pred_dir`` receives ``{stem}.png`` trainId maps; ``export="cityscapes"`` writes
    labelId PNGs with the test server's names into ``export_dir``. ``radii`` and
    ``crop_factors`` default to those of ``gsbench eval --pred-dir`` (``()`` switches one off).
    """
    from gsbench.data.manifest import Manifest
    from gsbench.engine.export import EXPORT_FORMATS, write_cityscapes_result
    from gsbench.evaluation.metrics_config import MetricsConfig, new_metrics
    from gsbench.io import read_label, write_png

    if export is not None and export not in EXPORT_FORMATS:
        raise GsbenchError(f"--export {export!r}: supported formats are {', '.join(EXPORT_FORMATS)}")
    if export is not None and export_dir is None:
        raise GsbenchError(f"--export {export} needs --out-dir DIR for the result files")
    recipe = loaded.recipe
    check_output(loaded.model, options.output, f"the {recipe.model.name} model of {loaded.checkpoint}")
    manifest = Manifest.load(data)
    if manifest.num_classes != recipe.data.num_classes:
        raise GsbenchError(
            f"{manifest.root}: dataset has {manifest.num_classes} classes but the model of "
            f"{loaded.checkpoint} predicts {recipe.data.num_classes}"
        )
    samples = manifest.split(split)
    if not samples:
        raise GsbenchError(f"{manifest.root / 'manifest.json'}: split {split!r} is empty")
    has_gt = all(s.label is not None for s in samples)
    if not has_gt and save_pred_dir is None and export is None:
        raise GsbenchError(
            f"{manifest.root / 'manifest.json'}: split {split!r} has no ground truth; "
            "use --export cityscapes --out-dir DIR or --save-pred DIR"
        )
    metrics = None
    if has_gt:
        metrics = new_metrics(MetricsConfig.for_dataset(
            manifest, radii=radii, crop_factors=crop_factors, fscore_convention=fscore_convention,
            with_instances=all(s.instance is not None for s in samples),
        ))
    for done, (sample, pred) in enumerate(
        predict_split(loaded.model, manifest, split, options, device=device, num_workers=num_workers),
        start=1,
    ):
        if save_pred_dir is not None:
            write_png(Path(save_pred_dir) / f"{sample.stem}.png", pred)
        if export is not None:
            write_cityscapes_result(export_dir, sample.stem, pred)
        if metrics is not None:
            gt = read_label(manifest.path(sample.label))
            instance = read_label(manifest.path(sample.instance)) if metrics.with_instances else None
            metrics.update(pred, gt, instance)
        if on_progress is not None:
            on_progress(done, len(samples))
    if metrics is None:
        return None
    return {
        "dataset": manifest.dataset,
        "split": split,
        "checkpoint": str(loaded.checkpoint),
        "iteration": loaded.iteration,
        "inference": inference_settings(options),
        **metrics.compute(),
    }


def inference_settings(options: InferenceOptions) -> dict:
    """The inference options as plain JSON values (recorded in metrics.json; ``output`` only
    when another output than the prediction was scored)."""
    settings = {
        "mode": options.mode,
        "crop_size": list(options.crop_size) if options.crop_size else None,
        "stride": list(options.resolved_stride) if options.resolved_stride else None,
        "scales": list(options.scales),
        "flip": options.flip,
    }
    if options.output != MAIN_OUTPUT:
        settings["output"] = options.output
    return settings


def inference_tag(options: InferenceOptions) -> str:
    """Short name of the settings for file names: ``ss``, ``ms``, ``ms-0.5-1.0-2.0_flip_slide``,
    ``ss_coarse`` ... (:func:`gsbench.engine.eval_setting.eval_tag`)."""
    return eval_tag(options.scales, options.flip, options.mode == "slide", options.output)
