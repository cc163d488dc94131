"""Confusion matrix and its scores against loop / np.add.at references, with and without the
compiled counting loop."""

from __future__ import annotations

import numpy as np
import pytest

from gsbench.errors import GsbenchError
from gsbench.metrics import ConfusionMatrix, confusion_matrix, scores_from_confusion


# every test of this file runs with the compiled counting loop and without it (conftest.py)
pytestmark = pytest.mark.usefixtures("confusion_counting")


def reference_confusion(pred, gt, num_classes, ignore_index=255):
    """Rows = GT class, columns = predicted class, last column = any prediction outside [0, C)."""
    matrix = np.zeros((num_classes, num_classes + 1), np.int64)
    valid = gt != ignore_index
    columns = np.where(pred[valid] < num_classes, pred[valid], num_classes)
    np.add.at(matrix, (gt[valid].astype(np.int64), columns.astype(np.int64)), 1)
    return matrix


def reference_scores(pred, gt, num_classes, ignore_index=255):
    """IoU, accuracies counted pixel by pixel, class by class."""
    valid = gt != ignore_index
    iou, class_acc = [], []
    for c in range(num_classes):
        tp = np.sum((pred == c) & (gt == c))
        fp = np.sum((pred == c) & (gt != c) & valid)
        fn = np.sum((gt == c) & (pred != c))
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
        class_acc.append(tp / np.sum(gt == c) if np.sum(gt == c) else np.nan)
    pixel_acc = np.sum((pred == gt) & valid) / np.sum(valid)
    return np.array(iou), np.nanmean(iou), pixel_acc, np.nanmean(class_acc)


@pytest.mark.parametrize("num_classes", [1, 5, 19, 150])
def test_confusion_matrix_equals_add_at_reference(num_classes):
    rng = np.random.default_rng(num_classes)
    gt = rng.integers(0, num_classes, (37, 53)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 256, gt.shape).astype(np.uint8)  # many predictions outside [0, C)
    pred = np.where(rng.random(gt.shape) < 0.5, gt, pred)  # half of them right (or 255)
    np.testing.assert_array_equal(confusion_matrix(pred, gt, num_classes), reference_confusion(pred, gt, num_classes))


def test_scores_equal_pixel_counting_reference():
    rng = np.random.default_rng(3)
    num_classes = 7
    gt = rng.integers(0, num_classes - 1, (40, 50)).astype(np.uint8)  # class 6 never in GT
    gt[:5] = 255
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 9, gt.shape)).astype(np.uint8)
    pred[pred == 5] = 4  # class 5 never predicted; class 6 predicted only where GT is ignored
    pred[0, 0] = 6
    pred[pred == 6] = np.where(gt[pred == 6] == 255, 6, 0)
    iou, miou, pixel_acc, mean_acc = reference_scores(pred, gt, num_classes)
    scores = ConfusionMatrix(num_classes)
    scores.update(pred, gt)
    result = scores.compute()
    assert np.isnan(result["per_class_iou"][6])
    np.testing.assert_allclose(result["per_class_iou"], iou, atol=1e-12)
    assert result["miou"] == pytest.approx(miou, abs=1e-12)
    assert result["pixel_acc"] == pytest.approx(pixel_acc, abs=1e-12)
    assert result["mean_acc"] == pytest.approx(mean_acc, abs=1e-12)


def test_accumulator_merge_state_dict_and_other_dtypes():
    rng = np.random.default_rng(5)
    pairs = [(rng.integers(0, 4, (9, 11)), rng.integers(0, 4, (9, 11)).astype(np.uint8)) for _ in range(4)]
    whole, first, second = ConfusionMatrix(4), ConfusionMatrix(4), ConfusionMatrix(4)
    for i, (pred, gt) in enumerate(pairs):
        whole.update(pred.astype(np.int64), gt)  # e.g. an argmax straight from torch
        (first if i < 2 else second).update(pred.astype(np.uint8), gt)
    first.merge(second)
    np.testing.assert_array_equal(first.matrix, whole.matrix)
    restored = ConfusionMatrix(4)
    restored.load_state_dict(whole.state_dict())
    np.testing.assert_array_equal(restored.matrix, whole.matrix)
    with pytest.raises(GsbenchError, match="matrix"):
        restored.load_state_dict({"matrix": np.zeros((3, 4))})


def test_empty_and_bad_inputs():
    result = scores_from_confusion(np.zeros((3, 4), np.int64))
    assert np.isnan(result["miou"]) and np.isnan(result["pixel_acc"])
    gt = np.zeros((4, 4), np.uint8)
    with pytest.raises(GsbenchError, match=r"\(4, 4\).*\(4, 5\)"):
        confusion_matrix(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), 3)
    gt[1, 1] = 7
    with pytest.raises(GsbenchError, match="value 7"):
        confusion_matrix(gt, gt, 3)
    with pytest.raises(GsbenchError, match="num_classes"):
        confusion_matrix(gt, gt, 300)
    with pytest.raises(GsbenchError, match="integer"):
        confusion_matrix(gt.astype(np.float32), gt, 3)
    wide = np.zeros((4, 4), np.int32)
    wide[2, 2] = 300  # not silently ignored in the GT; "no class" in a prediction
    with pytest.raises(GsbenchError, match="ground truth holds value 300"):
        confusion_matrix(wide, wide, 3)
    assert confusion_matrix(wide, np.zeros((4, 4), np.uint8), 3)[0].tolist() == [15, 0, 0, 1]


def test_region_matrices_equal_per_region_references_and_skip_regions_out_of_range():
    from gsbench.metrics.confusion import confusion_matrices_by_region

    rng = np.random.default_rng(11)
    gt = rng.integers(0, 6, (23, 31)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 8, gt.shape).astype(np.uint8)
    regions = rng.integers(0, 4, gt.shape).astype(np.uint8)  # region 3 is beyond num_regions
    matrices = confusion_matrices_by_region(pred, gt, 6, regions, 3)
    for r in range(3):
        inside = regions == r
        np.testing.assert_array_equal(matrices[r], reference_confusion(pred[inside], gt[inside], 6))
