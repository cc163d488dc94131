"""Confusion matrix, mIoU and pixel accuracy over uint8 trainId maps.

Semantics follow the official Cityscapes pixel evaluator
(``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``): IoU_c = TP / (TP + FP + FN)
where FN counts every valid GT pixel of class c predicted as anything else (including labels
that are not evaluated), FP counts pixels predicted as c whose GT is another evaluated class
(never ignored GT), and mIoU is the mean over classes whose denominator is not zero.
"""

from __future__ import annotations

import ctypes

import cv2
import numpy as np

from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError
from gsbench.metrics._common import (
    ArrayState,
    as_label_map,
    check_num_classes,
    check_same_shape,
)
from gsbench.native import NativeLibrary


_COUNTS_SOURCE = r"""
#include <stdint.h>

/* Pixel counts per (region, GT value, prediction clipped to `other`): tables[k][(r * 256 + g)
   * (other + 1) + min(p, other)] for pixel i in copy k = i % 2 (`size` entries per copy);
   regions NULL: one region; a region value of num_regions or more is not counted (as
   OpenCV's histogram leaves values outside its range). */
void region_counts(const uint8_t *regions, int num_regions, const uint8_t *gt,
                   const uint8_t *pred, int64_t n, int other, int32_t *tables, int64_t size) {
    int64_t width = other + 1;
    for (int64_t i = 0; i < n; i++) {
        int p = pred[i] < other ? pred[i] : other;
        int64_t r = regions ? regions[i] : 0;
        if (r >= num_regions) continue;
        tables[(i & 1) * size + (r * 256 + gt[i]) * width + p]++;
    }
}
"""


def _declare(library: ctypes.CDLL) -> None:
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    library.region_counts.argtypes = [p, ctypes.c_int, p, p, i64, ctypes.c_int, p, i64]
    library.region_counts.restype = None


#: The confusion matrices' counting loop, compiled (gsbench.native): one pass (a pair's
#: confusion + crop matrices in 2.8 ms, 4.2 with OpenCV's joint histogram); calcHist or
#: np.bincount without a compiler.
_COUNTS = NativeLibrary("region_counts", _COUNTS_SOURCE, _declare, purpose="confusion counts")


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Pixel counts ``M[g, p]`` of GT class ``g`` predicted as ``p``; shape (C, C + 1), int64.

    Rows are GT classes 0..C-1 (GT pixels equal to ``ignore_index`` are skipped). Columns are
    predicted classes 0..C-1 plus a last "other" column for predictions outside [0, C): such a
    pixel is an error of its GT class but a false positive of no class, as in the official
    evaluator (predictions of non-evaluated labelIds). A GT value outside [0, C) that is not
    ``ignore_index`` raises :class:`GsbenchError`.
    """
    return confusion_matrices_by_region(pred, gt, num_classes, None, 1, ignore_index)[0]


def confusion_matrices_by_region(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    regions: np.ndarray | None,
    num_regions: int,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """One :func:`confusion_matrix` per region of a uint8 region map; shape (R, C, C + 1).

    ``regions`` holds values in [0, num_regions) with the same shape as ``gt`` (``None``: one
    region). All regions cost a single pass over the image, which makes e.g. crop rings cheap.
    """
    check_num_classes(num_classes, ignore_index)
    pred = as_label_map(pred, "prediction")
    gt = as_label_map(gt, "ground truth")
    check_same_shape(pred, gt)
    other = num_classes  # column of predictions outside [0, C)
    width = num_classes + 1
    if regions is not None and regions.shape != gt.shape:
        raise GsbenchError(f"region map shape {regions.shape} does not match ground truth shape {gt.shape}")
    library = _COUNTS.get() if gt.size < 1 << 31 and num_regions <= 256 else None
    if library is not None:
        # Two interleaved copies of the table: consecutive pixels of one region and class
        # count into different words, not into one word twice in a row.
        tables = np.zeros((2, num_regions * 256 * width), np.int32)
        regions = None if regions is None else np.ascontiguousarray(regions, np.uint8)
        gt, pred = np.ascontiguousarray(gt), np.ascontiguousarray(pred)
        library.region_counts(None if regions is None else regions.ctypes.data, num_regions,
                              gt.ctypes.data, pred.ctypes.data, gt.size, other,
                              tables.ctypes.data, tables.shape[1])
        counts = tables.sum(axis=0, dtype=np.int64).reshape(num_regions, 256, width)
    elif gt.size < 1 << 24 and num_regions <= 256:
        clipped = np.minimum(pred, np.uint8(other))
        # A joint histogram of (region, GT value, clipped prediction) over all 256 GT values,
        # OpenCV's calcHist: one pass, no index image (its float32 counts are exact below 2**24
        # pixels); the ignored pixels' rows are dropped afterwards.
        images, channels, bins, ranges = [gt, clipped], [0, 1], [256, width], [0, 256, 0, width]
        if regions is not None:
            images, bins = [regions, *images], [num_regions, *bins]
            channels, ranges = [0, 1, 2], [0, num_regions, *ranges]
        counts = cv2.calcHist(images, channels, None, bins, ranges)
        counts = counts.reshape(num_regions, 256, width).astype(np.int64)
    else:
        size = num_regions * 256 * width
        index = gt.astype(np.int64) * width + np.minimum(pred, np.uint8(other))
        if regions is not None:
            index += regions.astype(np.int64) * (256 * width)
        counts = np.bincount(index.ravel(), minlength=size).reshape(num_regions, 256, width)
    bad_rows = np.flatnonzero(counts[:, num_classes:].any(axis=(0, 2))) + num_classes
    bad_rows = bad_rows[bad_rows != ignore_index]
    if bad_rows.size:
        raise GsbenchError(
            f"ground truth holds value {int(bad_rows[0])}, outside [0, {num_classes}) "
            f"and not the ignore index {ignore_index}"
        )
    return counts[:, :num_classes].astype(np.int64, copy=False)


def scores_from_confusion(matrix: np.ndarray) -> dict[str, object]:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU (fractions, not percent).

    IoU_c = TP_c / (TP_c + FP_c + FN_c), nan where the denominator is 0 (class absent from GT
    and prediction); ``miou`` is the nanmean like the official tool. ``pixel_acc`` = correct /
    valid GT pixels; ``mean_acc`` = nanmean over classes of TP_c / GT_c.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    num_classes = matrix.shape[0]
    tp = np.diagonal(matrix[:, :num_classes]).astype(np.float64)
    gt_total = matrix.sum(axis=1).astype(np.float64)
    fp = matrix[:, :num_classes].sum(axis=0) - tp
    denominator = gt_total + fp  # = TP + FN + FP
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denominator > 0, tp / denominator, np.nan)
        class_acc = np.where(gt_total > 0, tp / gt_total, np.nan)
    valid = gt_total.sum()
    return {
        "miou": _nanmean(iou),
        "pixel_acc": float(tp.sum() / valid) if valid > 0 else float("nan"),
        "mean_acc": _nanmean(class_acc),
        "per_class_iou": iou,
    }


class ConfusionMatrix(ArrayState):
    """Accumulator of :func:`confusion_matrix` over images (``update``/``merge``/``compute``)."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        check_num_classes(num_classes, ignore_index)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._state = {"matrix": np.zeros((self.num_classes, self.num_classes + 1), np.int64)}

    @property
    def matrix(self) -> np.ndarray:
        return self._state["matrix"]

    def update(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Add one image; returns its confusion matrix (for metrics that reuse it)."""
        matrix = confusion_matrix(pred, gt, self.num_classes, self.ignore_index)
        self.add(matrix)
        return matrix

    def add(self, matrix: np.ndarray) -> None:
        """Add an already computed (C, C + 1) matrix (e.g. one computed for a crop)."""
        if matrix.shape != self.matrix.shape:
            raise GsbenchError(f"confusion matrix shape {matrix.shape}, expected {self.matrix.shape}")
        self._state["matrix"] += matrix

    def merge(self, other: ConfusionMatrix) -> None:
        self.add(other.matrix)

    def compute(self) -> dict[str, object]:
        return scores_from_confusion(self.matrix)
