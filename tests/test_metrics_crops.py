"""Gated-SCNN distance crops: boxes from the definition, crop mIoU against cropped arrays."""

from __future__ import annotations

import numpy as np
import pytest

from gsbench.errors import GsbenchError
from gsbench.metrics import CropMIoU, crop_box


# every test of this file runs with the compiled counting loop and without it (conftest.py)
pytestmark = pytest.mark.usefixtures("confusion_counting")


def reference_miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    ious = []
    valid = gt != 255
    for c in range(num_classes):
        tp = np.sum((pred == c) & (gt == c))
        union = np.sum(((pred == c) & valid) | (gt == c))
        if union:
            ious.append(tp / union)
    return float(np.mean(ious)) if ious else float("nan")


def test_crop_box_at_full_resolution_follows_the_paper():
    # 100 px off left, right and bottom; then c off top and bottom, 2c off left and right.
    assert crop_box(1024, 2048, 0) == (0, 924, 100, 1948)
    assert crop_box(1024, 2048, 50) == (50, 874, 200, 1848)
    assert crop_box(1024, 2048, 400) == (400, 524, 900, 1148)


def test_crop_box_scales_with_height_rounding_halves_up():
    assert crop_box(512, 1024, 50) == (25, 437, 100, 924)
    # factor 1 at half resolution: 0.5 -> 1, 50.5 -> 51, 51 -> 51
    assert crop_box(512, 1024, 1) == (1, 461, 51, 973)
    assert crop_box(1000, 2000, 50) == (49, 854, 195, 1805)  # 48.83 -> 49, 146.48 -> 146, 195.3 -> 195


def test_empty_crop_raises():
    with pytest.raises(GsbenchError, match="462.*1024x2048"):
        crop_box(1024, 2048, 462)
    with pytest.raises(GsbenchError, match="non-negative"):
        crop_box(1024, 2048, -50)


def test_crop_miou_equals_miou_of_cropped_arrays():
    rng = np.random.default_rng(11)
    num_classes, factors = 5, (0, 50, 100, 250, 400)
    height, width = 64, 128
    accumulator = CropMIoU(num_classes, factors)
    pairs = []
    for _ in range(3):
        gt = rng.integers(0, num_classes, (height, width)).astype(np.uint8)
        gt[rng.random(gt.shape) < 0.1] = 255
        gt[:, : width // 3] = rng.integers(0, num_classes)  # structure that varies with the crop
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, num_classes + 1, gt.shape))
        pred = pred.astype(np.uint8)
        pairs.append((pred, gt))
        accumulator.update(pred, gt)
    result = accumulator.compute()
    assert list(result) == [str(f) for f in factors]
    for factor in factors:
        top, bottom, left, right = crop_box(height, width, factor)
        pred_all = np.concatenate([p[top:bottom, left:right].ravel() for p, _ in pairs])
        gt_all = np.concatenate([g[top:bottom, left:right].ravel() for _, g in pairs])
        assert result[str(factor)] == pytest.approx(reference_miou(pred_all, gt_all, num_classes), abs=1e-12)
    assert len(set(result.values())) == len(factors)  # the crops really differ


def test_merge_and_state_dict():
    rng = np.random.default_rng(12)
    pairs = [tuple(rng.integers(0, 3, (2, 32, 64)).astype(np.uint8)) for _ in range(3)]
    whole, part = CropMIoU(3, (0, 100)), CropMIoU(3, (100, 0))  # factor order does not matter
    for pred, gt in pairs:
        whole.update(pred, gt)
    part.update(*pairs[0])
    rest = CropMIoU(3, (0, 100))
    rest.load_state_dict(whole.state_dict())
    assert rest.compute() == whole.compute()
    other = CropMIoU(3, (0, 100))
    for pred, gt in pairs[1:]:
        other.update(pred, gt)
    part.merge(other)
    assert part.compute() == whole.compute()
    with pytest.raises(GsbenchError, match="factors"):
        part.merge(CropMIoU(3, (0, 50)))
