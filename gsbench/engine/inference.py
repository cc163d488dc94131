"""Test-time inference under a test protocol: whole image or sliding windows, scales, flip.

Pure functions over a segmentation model whose ``forward(images)`` returns ``{"out": logits}``
with the logits at the input resolution (the gsbench model contract). Images are N x 3 x H x W
normalised floats; :func:`infer` returns class probabilities N x C x H x W whose argmax is the
prediction (:func:`predict`).

What is computed is the :class:`~gsbench.protocol.TestProtocol` of :class:`InferenceOptions`:
its procedure (gsbench's own, semseg's ``tool/test.py``, PSANet's Caffe evaluation, the
RANet/CCNet toolbox, mmseg) fixes the padding, the mirror form and what is averaged; its
parameters the windows, scales, resize rule and flip (:mod:`gsbench.protocol` describes each).
How it is computed:

- every forward pass takes a batch of views: the mirror image with the original, windows with
  each other (and, per-window flip, each window with its mirror), up to
  :attr:`InferenceOptions.batch` images per pass (default: as many as fit in
  :data:`BATCH_PIXELS`), so that small windows do not pay a forward call each;
- window scores are summed into one canvas per view and divided by the per-pixel window count
  (the count of a window grid is the outer product of its row and column coverage);
- each scale's views are merged at the scaled size where the procedure merges them there
  (logits of the mirror, windows' probabilities) and brought to the image size once.

A model may expose further class-logit maps that can be scored instead of ``"out"``
(:mod:`gsbench.engine.outputs`); :attr:`InferenceOptions.output` picks the map.

Running a trained model over a dataset split and scoring it is :mod:`gsbench.evaluation.model`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gsbench.engine import inference_native
from gsbench.engine.outputs import MAIN_OUTPUT, check_output
from gsbench.errors import GsbenchError
from gsbench.protocol import Procedure, TestProtocol, default_stride

#: Images per forward pass when :attr:`InferenceOptions.batch` is None: as many views or
#: windows as hold this many pixels together (at least one).
BATCH_PIXELS = 1 << 20


@dataclass(frozen=True)
class InferenceOptions:
    """How to turn a model into per-pixel class probabilities at test time.

    ``protocol`` needs a concrete ``crop_size`` for sliding windows
    (:meth:`TestProtocol.with_crop <gsbench.protocol.TestProtocol.with_crop>` fills in a run's
    training crop). ``output`` is the model output that is scored: ``"out"`` (the prediction)
    or one of the model's ``extra_outputs``. ``batch`` is the number of images (views, windows)
    per forward pass; it changes the speed and the memory, not the result (eval-mode layers
    treat each image of a batch on its own).
    """

    protocol: TestProtocol = field(default_factory=TestProtocol)
    output: str = MAIN_OUTPUT
    batch: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, TestProtocol):
            raise TypeError(f"protocol must be a TestProtocol, got {self.protocol!r}")
        if self.protocol.slide and self.protocol.crop_size is None:
            raise GsbenchError("sliding-window inference needs a crop size (test.crop_size)")
        if not isinstance(self.output, str) or not self.output:
            raise GsbenchError(f"inference output {self.output!r}: expected the name of a model output")
        if self.batch is not None and (isinstance(self.batch, bool) or not isinstance(self.batch, int)
                                       or self.batch < 1):
            raise GsbenchError(f"--batch {self.batch!r}: images per forward pass must be >= 1")


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


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis: every ``stride``, the last one flush with
    the end (``ceil((size - crop) / stride) + 1`` windows: semseg, PSANet Caffe, the toolbox and
    mmseg alike). A size not above the crop gives one window at 0."""
    if crop <= 0 or stride <= 0:
        raise GsbenchError(f"sliding window: crop {crop} and stride {stride} must be > 0")
    if size <= crop:
        return [0]
    grids = math.ceil((size - crop) / stride) + 1
    return sorted({min(i * stride, size - crop) for i in range(grids)})


def _coverage(size: int, window: int, starts: list[int]) -> torch.Tensor:
    counts = torch.zeros(size, dtype=torch.int64)
    for start in starts:
        counts[start : start + window] += 1
    return counts


def sliding_window_count(
    height: int, width: int, crop_size: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """How many windows cover each pixel of a ``height x width`` image padded up to the crop
    (int64, max(height, crop) x max(width, crop)); the divisor of the window average."""
    padded_h, padded_w = max(height, crop_size[0]), max(width, crop_size[1])
    rows = _coverage(padded_h, crop_size[0], window_starts(padded_h, crop_size[0], stride[0]))
    cols = _coverage(padded_w, crop_size[1], window_starts(padded_w, crop_size[1], stride[1]))
    return rows[:, None] * cols[None, :]


# --- resizing -------------------------------------------------------------------------------------
def _matlab_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``imresize`` 'bilinear' (``contributions``): per output pixel the input indices
    and weights of a triangle kernel, widened by 1/scale when shrinking (antialiasing), indices
    outside mirrored, weights normalised to sum 1."""
    scale = out_size / in_size
    width = 2.0 / scale if scale < 1 else 2.0
    x = np.arange(1, out_size + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    if scale < 1:
        weights = scale * np.maximum(0.0, 1 - np.abs(scale * distance))
    else:
        weights = np.maximum(0.0, 1 - np.abs(distance))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(1, in_size + 1), np.arange(in_size, 0, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, len(mirror))] - 1
    keep = np.any(weights != 0, axis=0)
    return indices[:, keep], weights[:, keep]


def _matlab_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """MATLAB ``imresize(x, size, 'bilinear')`` over the last two axes (the axis with the
    smaller scale factor first, as ``imresize`` orders them)."""
    axes = sorted(((size[i] / x.shape[-2 + i], -2 + i) for i in range(2)), key=lambda a: a[0])
    for _, axis in axes:
        out_size = size[axis + 2]
        if x.shape[axis] == out_size:
            continue
        indices, weights = _matlab_weights(x.shape[axis], out_size)
        index = torch.from_numpy(indices).to(x.device)
        weight = torch.from_numpy(weights).to(x.device, x.dtype)
        shape = (-1, 1) if axis == -2 else (-1,)
        result = None
        for tap in range(index.shape[1]):
            term = x.index_select(axis, index[:, tap]) * weight[:, tap].reshape(shape)
            result = term if result is None else result.add_(term)
        x = result
    return x


def resize(x: torch.Tensor, size: tuple[int, int], kind: str) -> torch.Tensor:
    """``x`` (N x C x h x w) resized to ``size`` by a procedure's resize (see
    :class:`gsbench.protocol.Procedure`): ``half-pixel``, ``corners`` or ``matlab``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if kind == "matlab":
        return _matlab_resize(x, size)
    resized = inference_native.resize_planes(x, size, kind == "corners")
    if resized is not None:
        return resized
    return F.interpolate(x, size=size, mode="bilinear", align_corners=kind == "corners")


# --- one scale ------------------------------------------------------------------------------------
def _padding(protocol: TestProtocol, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding of a ``height x width`` image up to the window."""
    if not protocol.slide or protocol.info.padding == "none":
        return 0, 0, 0, 0
    pad_h = max(protocol.crop_size[0] - height, 0)
    pad_w = max(protocol.crop_size[1] - width, 0)
    if protocol.info.padding == "centre":  # semseg: int(pad / 2) before, the rest after
        return pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2
    return 0, pad_h, 0, pad_w


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=1)


def _add_mirrored(total: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """``total += mirrored.flip(-1)`` in place; on the CPU through NumPy's reversed view, one
    pass instead of torch's flipped copy and then the sum."""
    if total.device.type == "cpu" and mirrored.device.type == "cpu" and total.dtype in (
            torch.float32, torch.float64) and mirrored.dtype == total.dtype:
        target = total.numpy()
        np.add(target, mirrored.numpy()[..., ::-1], out=target)
        return total
    return total.add_(mirrored.flip(-1))


def _window_scores(logits: torch.Tensor, count: int, protocol: TestProtocol) -> torch.Tensor:
    """What a window adds to its canvas, from the logits of ``count`` window images (followed by
    their ``count`` mirrors when the procedure mirrors per window)."""
    info = protocol.info
    if info.flip_form == "window" and protocol.flip:
        plain, mirrored = logits[:count], logits[count:]
        if info.flip_merge == "summed-logits":  # PSANet caffe_process.m: softmax(z + z_m)
            return _softmax(_add_mirrored(plain, mirrored))
        return _add_mirrored(_softmax(plain), _softmax(mirrored)).mul_(0.5)  # semseg net_process
    return _softmax(logits) if info.window_merge == "probabilities" else logits


def _view_scores(model: nn.Module, views: list[torch.Tensor], options: InferenceOptions
                 ) -> list[torch.Tensor]:
    """Per view (the scaled image, its mirror), the window-averaged scores at the view's size
    (padding cut off): logits, or probabilities where the procedure averages them."""
    protocol = options.protocol
    n, _, height, width = views[0].shape
    top, bottom, left, right = _padding(protocol, height, width)
    if top or bottom or left or right:  # zero = the mean colour after normalisation
        views = [F.pad(view, (left, right, top, bottom)) for view in views]
    padded_h, padded_w = views[0].shape[-2:]
    if protocol.slide:
        win_h, win_w = min(protocol.crop_size[0], padded_h), min(protocol.crop_size[1], padded_w)
        stride = protocol.window_stride
        rows = window_starts(padded_h, win_h, stride[0])
        cols = window_starts(padded_w, win_w, stride[1])
    else:
        win_h, win_w, rows, cols = padded_h, padded_w, [0], [0]
    jobs = [(v, y, x) for v in range(len(views)) for y in rows for x in cols]
    mirrors = 2 if protocol.info.flip_form == "window" and protocol.flip else 1
    per_pass = options.batch or max(1, BATCH_PIXELS // (win_h * win_w))
    windows_per_pass = max(1, per_pass // (n * mirrors))
    single = len(rows) == len(cols) == 1 and (win_h, win_w) == (padded_h, padded_w)
    canvases: list[torch.Tensor | None] = [None] * len(views)
    for first in range(0, len(jobs), windows_per_pass):
        group = jobs[first : first + windows_per_pass]
        crops = torch.cat([views[v][:, :, y : y + win_h, x : x + win_w] for v, y, x in group])
        if mirrors == 2:
            crops = torch.cat([crops, crops.flip(-1)])
        scores = _window_scores(_logits(model, crops, options.output), len(crops) // mirrors,
                                protocol)
        for i, (v, y, x) in enumerate(group):
            part = scores[i * n : (i + 1) * n]
            if single:
                canvases[v] = part
                continue
            if canvases[v] is None:  # channels-last, like the logits added to it
                canvases[v] = part.new_zeros((n, padded_h, padded_w, part.shape[1])
                                             ).permute(0, 3, 1, 2)
            canvases[v][:, :, y : y + win_h, x : x + win_w] += part
    if not single:
        count = (_coverage(padded_h, win_h, rows)[:, None] * _coverage(padded_w, win_w, cols)[None])
        count = count.to(canvases[0].device, canvases[0].dtype)
        canvases = [canvas.div_(count) for canvas in canvases]
    return [canvas[:, :, top : top + height, left : left + width] for canvas in canvases]


def _scale_maps(model: nn.Module, scaled: torch.Tensor, options: InferenceOptions
                ) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
    """The maps one scale contributes, at the scaled size, as ``(plain, mirrored)`` pairs (the
    mirrored map still mirrored): the image's and its mirror's maps together where the
    procedure merges them there (their mean), each on its own where it averages them as
    probabilities at the image size (mmseg)."""
    protocol = options.protocol
    image_mirror = protocol.flip and protocol.info.flip_form == "image"
    views = [scaled, scaled.flip(-1)] if image_mirror else [scaled]
    maps = _view_scores(model, views, options)
    if not image_mirror:
        return [(maps[0], None)]
    if protocol.info.flip_merge == "logits":  # gsbench, toolbox: 0.5 * (z + z_m)
        return [(maps[0], maps[1])]
    return [(maps[0], None), (None, maps[1])]


def _accumulate(total: torch.Tensor | None, plain: torch.Tensor | None,
                mirrored: torch.Tensor | None, size: tuple[int, int], kind: str,
                info: Procedure) -> torch.Tensor:
    """``total`` (None: nothing yet) plus one map of a scale brought to the image as the
    procedure ``info`` does: the mean of ``plain`` and the mirror image of ``mirrored`` (or
    whichever is given), resized to ``size`` by the resize ``kind``, and its softmax where the
    scales average the probabilities of logits. On the CPU one compiled pass
    (:mod:`gsbench.engine.inference_native`), else PyTorch's operators."""
    softmax = info.scale_merge == "probabilities" and info.window_merge == "logits"
    if info.resize != "matlab" and kind != "matlab":
        result = inference_native.accumulate_scores(total, plain, mirrored, size,
                                                    kind == "corners", softmax)
        if result is not None:
            return result
    if plain is not None and mirrored is not None:
        scores = _add_mirrored(plain, mirrored).mul_(0.5)
    else:
        scores = plain if plain is not None else mirrored.flip(-1)
    if tuple(scores.shape[-2:]) != tuple(size):
        scores = resize(scores, size, kind)
        if info.resize == "matlab":  # scale_process.m: renormalised to sum 1
            scores = scores / scores.sum(dim=1, keepdim=True)
    if softmax:
        scores = _softmax(scores)
    # every map is a tensor of this call's own (model inputs are always fresh copies)
    return scores if total is None else total.add_(scores)


@torch.no_grad()
def infer(model: nn.Module, images: torch.Tensor,
          options: InferenceOptions = InferenceOptions()) -> torch.Tensor:
    """Class probabilities (N x C x H x W) of ``images`` under ``options.protocol``: for each
    scale the image is resized (the procedure's size rule and resize), inferred whole or by
    windows with the mirror image where asked, the scale's scores brought back to H x W, and
    the scales averaged as the procedure does (probabilities; the toolbox averages logits and
    the result is their softmax). The argmax is the prediction."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise GsbenchError(f"images must be N x 3 x H x W, got shape {tuple(images.shape)}")
    check_output(model, options.output)
    protocol = options.protocol
    info = protocol.info
    height, width = images.shape[-2:]
    back = "corners" if protocol.align_corners else info.resize
    total: torch.Tensor | None = None
    views = 0
    for scale in protocol.scales:
        size = protocol.scaled_size(height, width, scale)
        scaled = resize(images, size, info.resize)
        for plain, mirrored in _scale_maps(model, scaled, options):
            total = _accumulate(total, plain, mirrored, (height, width), back, info)
            views += 1
    assert total is not None
    if views > 1:
        total = total.div_(views)
    return _softmax(total) if info.scale_merge == "logits" else total


@torch.no_grad()
def infer_whole(model: nn.Module, images: torch.Tensor, output: str = MAIN_OUTPUT) -> torch.Tensor:
    """Logits (of the model output ``output``) of the whole image in one forward pass
    (N x C x H x W)."""
    return _logits(model, images, output)


@torch.no_grad()
def infer_slide(
    model: nn.Module,
    images: torch.Tensor,
    crop_size: tuple[int, int],
    stride: tuple[int, int] | None = None,
    output: str = MAIN_OUTPUT,
    batch: int | None = None,
) -> torch.Tensor:
    """Sliding-window logits (N x C x H x W) of gsbench's procedure: windows zero-padded at the
    bottom/right up to the crop, overlapping windows' logits averaged per pixel."""
    protocol = TestProtocol(mode="slide", crop_size=crop_size, stride=stride)
    return _view_scores(model, [images], InferenceOptions(protocol, output, batch))[0]


def predict(
    model: nn.Module, images: torch.Tensor, options: InferenceOptions = InferenceOptions()
) -> torch.Tensor:
    """Predicted trainIds (N x H x W, uint8) under ``options``."""
    return infer(model, images, options).argmax(dim=1).to(torch.uint8)


__all__ = ["BATCH_PIXELS", "InferenceOptions", "default_stride", "infer", "infer_slide",
           "infer_whole", "predict", "resize", "sliding_window_count", "window_starts"]
