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

Running a trained model over a dataset split and scoring it is :mod:`gsbench.evaluation.model`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gsbench.engine.outputs import MAIN_OUTPUT, check_output
from gsbench.errors import GsbenchError

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
