"""Distance-based crop evaluation (Gated-SCNN Sec. 5, Fig. 3-5).

At 1024x2048 the image loses 100 px on the left, right and bottom (not the top), so that the
centre of the rest approximates the vanishing point; crop factor c then removes c more pixels
from the top and the bottom and 2c more from the left and the right, and mIoU is evaluated
inside the crop. Larger factors keep only the far-away, small objects.

For other image sizes every pixel amount scales with height / 1024 and is rounded to the
nearest integer, halves rounding up (``floor(amount * height / 1024 + 0.5)``, computed exactly
in integers).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError
from gsbench.metrics._common import (
    ArrayState,
    check_num_classes,
)
from gsbench.metrics.confusion import confusion_matrices_by_region, scores_from_confusion

DEFAULT_CROP_FACTORS = tuple(range(0, 401, 50))
REFERENCE_HEIGHT = 1024
BASE_MARGIN = 100  # px removed from left, right and bottom at the reference height


def _scaled(amount: int, height: int) -> int:
    """round(amount * height / 1024), halves up, in exact integer arithmetic."""
    return (2 * amount * height + REFERENCE_HEIGHT) // (2 * REFERENCE_HEIGHT)


def check_crop_factors(factors: Iterable[int]) -> tuple[int, ...]:
    factors = tuple(factors)
    for factor in factors:
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 0:
            raise GsbenchError(f"crop factors must be non-negative integers, got {factors}")
    if len(set(factors)) != len(factors):
        raise GsbenchError(f"crop factors must be distinct, got {factors}")
    if len(factors) > 254:  # ring indices are uint8
        raise GsbenchError(f"at most 254 crop factors, got {len(factors)}")
    return tuple(sorted(int(f) for f in factors))


def crop_box(height: int, width: int, factor: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` such that ``image[top:bottom, left:right]`` is the crop."""
    check_crop_factors((factor,))
    top = _scaled(factor, height)
    bottom = height - _scaled(BASE_MARGIN + factor, height)
    side = _scaled(BASE_MARGIN + 2 * factor, height)
    left, right = side, width - side
    if bottom <= top or right <= left:
        raise GsbenchError(
            f"crop factor {factor} leaves nothing of a {height}x{width} image "
            f"(rows {top}:{bottom}, columns {left}:{right})"
        )
    return top, bottom, left, right


@functools.lru_cache(maxsize=8)
def crop_rings(height: int, width: int, factors: tuple[int, ...]) -> np.ndarray:
    """uint8 map: how many of the (nested, ascending) crops contain each pixel.

    Ring k (value k) is crop k-1 minus crop k, so crop k is the union of rings k+1..K.
    """
    rings = np.zeros((height, width), np.uint8)
    for factor in factors:
        top, bottom, left, right = crop_box(height, width, factor)
        rings[top:bottom, left:right] += 1
    rings.setflags(write=False)
    return rings


def crop_confusion_matrices(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    factors: Iterable[int] = DEFAULT_CROP_FACTORS,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrices of every crop, shape (len(factors), C, C + 1), and of the whole image.

    One confusion matrix per ring between consecutive crops (one bincount), then cumulative
    sums from the innermost ring outwards.
    """
    factors = check_crop_factors(factors)
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise GsbenchError(f"ground truth must be a 2-D label map, got shape {gt.shape}")
    rings = crop_rings(gt.shape[0], gt.shape[1], factors)
    per_ring = confusion_matrices_by_region(pred, gt, num_classes, rings, len(factors) + 1, ignore_index)
    inside = np.cumsum(per_ring[::-1], axis=0)[::-1]  # inside[k] = sum of rings k..K
    return inside[1:], inside[0]


class CropMIoU(ArrayState):
    """Accumulator of the confusion matrix inside each crop; ``compute()`` -> {"0": miou, ...}."""

    def __init__(
        self,
        num_classes: int,
        factors: Iterable[int] = DEFAULT_CROP_FACTORS,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        check_num_classes(num_classes, ignore_index)
        self.num_classes = int(num_classes)
        self.factors = check_crop_factors(factors)
        self.ignore_index = int(ignore_index)
        shape = (len(self.factors), self.num_classes, self.num_classes + 1)
        self._state = {"matrices": np.zeros(shape, np.int64)}

    def update(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Add one image; returns its whole-image confusion matrix (free by-product)."""
        crops, whole = crop_confusion_matrices(pred, gt, self.num_classes, self.factors, self.ignore_index)
        self.add(crops)
        return whole

    def add(self, matrices: np.ndarray) -> None:
        if matrices.shape != self._state["matrices"].shape:
            raise GsbenchError(
                f"crop confusion matrices shape {matrices.shape}, expected {self._state['matrices'].shape}"
            )
        self._state["matrices"] += matrices

    def merge(self, other: CropMIoU) -> None:
        if (other.num_classes, other.factors) != (self.num_classes, self.factors):
            raise GsbenchError(
                f"cannot merge crop mIoU over factors {other.factors} into one over {self.factors}"
            )
        self.add(other._state["matrices"])

    def compute(self) -> dict[str, float]:
        """mIoU inside each crop (fraction), keyed by the crop factor as a string."""
        return {
            str(factor): scores_from_confusion(matrix)["miou"]
            for factor, matrix in zip(self.factors, self._state["matrices"])
        }
