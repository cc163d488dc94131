"""mIoU, per-class IoU and iIoU against the official Cityscapes evaluator on the same files."""

from __future__ import annotations

import numpy as np
import pytest

from gsbench.data.cityscapes import (
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_INSTANCE_TRAIN_IDS,
    CITYSCAPES_LABEL_TO_TRAIN,
    CITYSCAPES_LABELS,
)
from gsbench.errors import GsbenchError
from gsbench.io import write_png
from gsbench.metrics import SegmentationMetrics

ev = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")

HEIGHT, WIDTH = 48, 96
ALL_LABEL_IDS = np.array([label.id for label in CITYSCAPES_LABELS if label.id >= 0])
INSTANCE_LABEL_IDS = [label.id for label in CITYSCAPES_LABELS if label.has_instances]  # incl. caravan/trailer


# A few labelIds only (road, unlabeled, static, parking, building, person, rider, car, caravan,
# bicycle), so that most classes are absent (nan IoU / iIoU) and void / ignored-in-eval occur.
FEW_LABEL_IDS = np.array([7, 0, 4, 9, 11, 24, 25, 26, 29, 33])


def _blob_label_ids(rng: np.random.Generator, choices: np.ndarray, random_base: bool) -> np.ndarray:
    """Rectangles of random labelIds (evaluated, void and ignored-in-eval) over a base."""
    if random_base:
        labels = rng.choice(choices, size=(HEIGHT, WIDTH)).astype(np.uint8)
    else:
        labels = np.full((HEIGHT, WIDTH), 7, np.uint8)
    for _ in range(25):
        top, left = rng.integers(0, HEIGHT - 2), rng.integers(0, WIDTH - 2)
        h, w = rng.integers(2, 20), rng.integers(2, 40)
        labels[top : top + h, left : left + w] = rng.choice(choices)
    labels[: HEIGHT // 8] = 0  # a void band ("unlabeled") like the ego vehicle / borders
    return labels


def _instance_ids(rng: np.random.Generator, label_ids: np.ndarray) -> np.ndarray:
    """instanceIds: instance classes split into instances labelId*1000+k (some left as groups)."""
    instance = label_ids.astype(np.int32)
    for label_id in INSTANCE_LABEL_IDS:
        mask = label_ids == label_id
        if not mask.any():
            continue
        # Instances = vertical stripes of the class area; stripe 0 stays a group (id = labelId).
        stripe = (np.arange(WIDTH) // rng.integers(5, 30))[None, :].repeat(HEIGHT, 0)
        ids = np.where(stripe == 0, label_id, label_id * 1000 + stripe)
        instance[mask] = ids[mask]
    return instance


def _prediction(rng: np.random.Generator, gt_label_ids: np.ndarray, choices: np.ndarray) -> np.ndarray:
    pred = gt_label_ids.copy()
    wrong = rng.random(pred.shape) < 0.3
    pred[wrong] = rng.choice(choices, size=int(wrong.sum()))
    pred[:, : rng.integers(0, WIDTH // 4)] = rng.choice(choices)  # a large wrong area
    return pred


def _run_official(monkeypatch, preds: list[str], gts: list[str]) -> dict:
    monkeypatch.setattr(np, "in1d", np.isin, raising=False)  # removed in NumPy 2.4
    for key, value in {
        "evalInstLevelScore": True,
        "evalPixelAccuracy": False,
        "quiet": True,
        "JSONOutput": False,
        "colorized": False,
    }.items():
        monkeypatch.setattr(ev.args, key, value)
    return ev.evaluateImgLists(preds, gts, ev.args)


@pytest.mark.parametrize("instance_dtype", [np.uint16, np.int32], ids=["uint16", "int32"])
@pytest.mark.parametrize("dense", [True, False], ids=["all-labels", "few-labels"])
def test_miou_iou_iiou_equal_official_evaluator(tmp_path, monkeypatch, dense, instance_dtype):
    """uint16 instanceIds (as their PNGs decode) take the compiled count where it is built,
    other integer types the NumPy form."""
    rng = np.random.default_rng(2024 + dense)
    choices = ALL_LABEL_IDS if dense else FEW_LABEL_IDS
    preds, gts = [], []
    metrics = SegmentationMetrics(19, CITYSCAPES_CLASS_NAMES, radii=(), crop_factors=(), with_instances=True)
    total_correct = total_valid = 0
    for i in range(6):
        gt_ids = _blob_label_ids(rng, choices, random_base=dense)
        instance = _instance_ids(rng, gt_ids)
        pred_ids = _prediction(rng, gt_ids, choices)
        if i == 5:  # a perfect prediction
            pred_ids = gt_ids.copy()
        stem = tmp_path / f"city_{i:06d}_000019"
        write_png(f"{stem}_gtFine_labelIds.png", gt_ids)
        write_png(f"{stem}_gtFine_instanceIds.png", instance.astype(np.uint16))
        write_png(f"{stem}_pred.png", pred_ids)
        preds.append(f"{stem}_pred.png")
        gts.append(f"{stem}_gtFine_labelIds.png")
        gt_train, pred_train = CITYSCAPES_LABEL_TO_TRAIN[gt_ids], CITYSCAPES_LABEL_TO_TRAIN[pred_ids]
        metrics.update(pred_train, gt_train, instance.astype(instance_dtype))
        valid = gt_train != 255
        total_correct += int((pred_train[valid] == gt_train[valid]).sum())
        total_valid += int(valid.sum())

    official = _run_official(monkeypatch, preds, gts)
    ours = metrics.compute()

    assert ours["miou"] == pytest.approx(100 * official["averageScoreClasses"], abs=1e-9)
    assert ours["iiou"] == pytest.approx(100 * official["averageScoreInstClasses"], abs=1e-9)
    for name in CITYSCAPES_CLASS_NAMES:
        expected = official["classScores"][name]
        if np.isnan(expected):
            assert ours["per_class_iou"][name] is None
        else:
            assert ours["per_class_iou"][name] == pytest.approx(100 * expected, abs=1e-9)
    assert set(ours["per_class_iiou"]) == {CITYSCAPES_CLASS_NAMES[t] for t in CITYSCAPES_INSTANCE_TRAIN_IDS}
    for name, value in ours["per_class_iiou"].items():
        expected = official["classInstScores"][name]
        assert (value is None) if np.isnan(expected) else value == pytest.approx(100 * expected, abs=1e-9)
    # The official pixel accuracy counts ignored pixels; compare with a direct count instead.
    assert ours["pixel_acc"] == pytest.approx(100 * total_correct / total_valid, abs=1e-9)
    # The data must exercise what it claims to: absent (nan) classes only with few labels.
    assert any(v is None for v in ours["per_class_iou"].values()) != dense
    assert any(v is None for v in ours["per_class_iiou"].values()) != dense
    assert sum(v is not None for v in ours["per_class_iiou"].values()) >= 3


def test_the_compiled_and_numpy_instance_counts_agree():
    from gsbench.metrics import instance as instance_module

    rng = np.random.default_rng(5)
    gt_ids = _blob_label_ids(rng, ALL_LABEL_IDS, random_base=True)
    ids = _instance_ids(rng, gt_ids).astype(np.uint16)
    pred = CITYSCAPES_LABEL_TO_TRAIN[_prediction(rng, gt_ids, ALL_LABEL_IDS)]
    assert instance_module._COUNTS.get() is not None  # a C compiler is part of the test setup
    native = instance_module.instance_weighted_counts(pred, ids)
    numpy_form = instance_module.instance_weighted_counts(pred, ids.astype(np.int32))
    for got, want in zip(native, numpy_form):
        np.testing.assert_array_equal(got, want)
    assert native[0].sum() > 0 and native[1].sum() > 0
    ids[3, 4] = 40001  # labelId 40 does not exist
    for form in (np.uint16, np.int32):
        with pytest.raises(GsbenchError, match="instance map holds id 40001"):
            instance_module.instance_weighted_counts(pred, ids.astype(form))
