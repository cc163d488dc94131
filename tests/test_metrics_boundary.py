"""Boundary F-score against a slow implementation written straight from the DAVIS definition
(binary masks, seg2bmap, scipy binary_dilation with an explicit digital disk), in both of its
forms: the compiled one (:mod:`gsbench.metrics.boundary_native`) and the vectorised one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from gsbench.errors import GsbenchError
from gsbench.metrics import BoundaryFScore, boundary_fscore, boundary_native


@pytest.fixture(autouse=True, params=["native", "vectorised"])
def form(request, monkeypatch):
    """Every test of this file runs once per form of :func:`boundary_fscore`."""
    if request.param == "vectorised":
        monkeypatch.setattr(boundary_native.LIBRARY, "get", lambda: None)
    return request.param


def reference_boundary_map(mask: np.ndarray) -> np.ndarray:
    """DAVIS seg2bmap: differs from E, S or SE; last row vs E, last column vs S, corner 0."""
    height, width = mask.shape
    boundary = np.zeros(mask.shape, bool)
    for y in range(height):
        for x in range(width):
            neighbours = []
            if y == height - 1 and x == width - 1:
                continue
            if y == height - 1:
                neighbours = [(y, x + 1)]
            elif x == width - 1:
                neighbours = [(y + 1, x)]
            else:
                neighbours = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
            boundary[y, x] = any(mask[y, x] != mask[q] for q in neighbours)
    return boundary


def reference_disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def reference_image_scores(pred, gt, num_classes, radii, ignore_index=255):
    """(F per class x radius, class present in either zeroed mask) for one image."""
    fscore = np.zeros((num_classes, len(radii)))
    present = np.zeros(num_classes, bool)
    valid = gt != ignore_index
    for c in range(num_classes):
        pred_mask, gt_mask = (pred == c) & valid, (gt == c) & valid
        present[c] = pred_mask.any() or gt_mask.any()
        pred_b, gt_b = reference_boundary_map(pred_mask), reference_boundary_map(gt_mask)
        for i, radius in enumerate(radii):
            pred_dil = binary_dilation(pred_b, reference_disk(radius))
            gt_dil = binary_dilation(gt_b, reference_disk(radius))
            n_pred, n_gt = pred_b.sum(), gt_b.sum()
            if n_pred == 0 and n_gt == 0:
                p, r = 1.0, 1.0
            elif n_pred == 0:
                p, r = 1.0, 0.0
            elif n_gt == 0:
                p, r = 0.0, 1.0
            else:
                p, r = (pred_b & gt_dil).sum() / n_pred, (gt_b & pred_dil).sum() / n_gt
            fscore[c, i] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return fscore, present


def _blobs(rng, shape, num_classes, count=8):
    labels = np.full(shape, rng.integers(num_classes), np.uint8)
    for _ in range(count):
        top, left = rng.integers(-3, shape[0]), rng.integers(-3, shape[1])  # may touch borders
        h, w = rng.integers(1, shape[0]), rng.integers(1, shape[1])
        yy, xx = np.ogrid[: shape[0], : shape[1]]
        ellipse = ((yy - top) / max(h / 2, 1)) ** 2 + ((xx - left) / max(w / 2, 1)) ** 2 <= 1
        labels[ellipse] = rng.integers(num_classes)
    return labels


def _case(kind: str, seed: int):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 41)), int(rng.integers(20, 61)))
    num_classes = 6
    if kind == "random":
        gt = rng.integers(0, num_classes, shape).astype(np.uint8)
        pred = rng.integers(0, num_classes + 2, shape).astype(np.uint8)  # incl. non-classes
    elif kind == "blobs":
        gt = _blobs(rng, shape, num_classes)
        pred = np.roll(gt, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
        noise = rng.random(shape) < 0.02
        pred[noise] = rng.integers(0, num_classes, int(noise.sum()))
    elif kind == "empty-classes":  # classes 3.. never appear, class 2 only in one map
        gt = _blobs(rng, shape, 2)
        pred = gt.copy()
        pred[: shape[0] // 3, : shape[1] // 3] = 2
    elif kind == "void":
        gt = _blobs(rng, shape, num_classes)
        pred = _blobs(rng, shape, num_classes)
        gt[_blobs(rng, shape, 3) == 0] = 255
        gt[:, :3] = 255  # void along the border
    elif kind == "single-class":  # one class everywhere: no boundaries at all
        gt = np.full(shape, 1, np.uint8)
        pred = gt.copy()
    else:
        raise AssertionError(kind)
    return pred, gt, num_classes


KINDS = ["random", "blobs", "empty-classes", "void", "single-class"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_boundary_fscore_equals_reference(kind, seed):
    pred, gt, num_classes = _case(kind, seed)
    radii = (3, 5, 0, 1, 12)  # unsorted on purpose
    expected, present = reference_image_scores(pred, gt, num_classes, radii)
    scores = boundary_fscore(pred, gt, num_classes, radii)
    np.testing.assert_allclose(scores.fscore, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(scores.present, present)


@pytest.mark.parametrize("shape", [(1, 30), (30, 1), (2, 2), (1, 1), (5, 7)])
def test_thin_and_tiny_maps_equal_reference(shape):
    rng = np.random.default_rng(sum(shape))
    gt = rng.integers(0, 3, shape).astype(np.uint8)
    pred = rng.integers(0, 3, shape).astype(np.uint8)
    radii = (0, 1, 12)
    expected, present = reference_image_scores(pred, gt, 3, radii)
    scores = boundary_fscore(pred, gt, 3, radii)
    np.testing.assert_allclose(scores.fscore, expected, atol=1e-12)
    np.testing.assert_array_equal(scores.present, present)


def test_more_than_32_classes_equals_reference():
    rng = np.random.default_rng(7)
    gt = _blobs(rng, (30, 40), 40, count=30)
    pred = _blobs(rng, (30, 40), 40, count=30)
    gt[:4] = 255
    expected, _ = reference_image_scores(pred, gt, 40, (2, 4))
    np.testing.assert_allclose(boundary_fscore(pred, gt, 40, (2, 4)).fscore, expected, atol=1e-12)


@pytest.mark.parametrize("present", [1, 2, 8, 9, 16, 17, 32, 33, 45])
def test_every_bit_set_width_equals_reference(present):
    """The classes that bound some pixel go into one uint8 / uint16 word when 8 / 16 suffice,
    else uint32 words of 32: each width, and each edge between two, against the reference."""
    from gsbench.metrics.boundary import _class_blocks

    rng = np.random.default_rng(present)
    classes = rng.choice(50, present, replace=False).astype(np.uint8)  # 50 classes, some absent
    gt = classes[rng.integers(0, present, (24, 31))]
    pred = classes[rng.integers(0, present, (24, 31))]
    gt[:2, :5] = 255
    blocks = _class_blocks([gt.ravel(), pred.ravel()], 50)
    expected_words = {1: [np.uint8], 2: [np.uint8], 8: [np.uint8], 9: [np.uint16],
                      16: [np.uint16], 17: [np.uint32], 32: [np.uint32],
                      33: [np.uint32, np.uint32], 45: [np.uint32, np.uint32]}[present]
    assert [dtype for _, dtype in blocks] == expected_words
    expected, present_mask = reference_image_scores(pred, gt, 50, (0, 2, 5))
    scores = boundary_fscore(pred, gt, 50, (0, 2, 5))
    np.testing.assert_allclose(scores.fscore, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(scores.present, present_mask)


@pytest.mark.parametrize("convention", ["gscnn", "strict"])
def test_accumulator_conventions_and_merge(convention):
    radii = (1, 3)
    cases = [_case(kind, seed) for kind in KINDS for seed in (3, 4)]
    per_image = [reference_image_scores(p, g, c, radii) for p, g, c in cases]
    scores = np.stack([f for f, _ in per_image])
    present = np.stack([p for _, p in per_image])
    if convention == "gscnn":
        expected = scores.mean(axis=0)
    else:
        with np.errstate(invalid="ignore"):
            expected = (scores * present[:, :, None]).sum(0) / present.sum(0)[:, None]

    whole, first, second = (BoundaryFScore(6, radii, convention) for _ in range(3))
    for i, (pred, gt, _) in enumerate(cases):
        whole.update(pred, gt)
        (first if i % 2 else second).update(pred, gt)
    first.merge(second)
    for accumulator in (whole, first):
        result = accumulator.compute()
        np.testing.assert_allclose(result["per_class"], expected, atol=1e-12)
        np.testing.assert_allclose(result["mean"], np.nanmean(expected, axis=0), atol=1e-12)
    restored = BoundaryFScore(6, radii, convention)
    restored.load_state_dict(whole.state_dict())
    np.testing.assert_array_equal(restored.compute()["per_class"], whole.compute()["per_class"])


def test_strict_skips_absent_classes_gscnn_counts_them_as_one():
    gt = np.zeros((10, 10), np.uint8)
    pred = gt.copy()
    pred[:, 5:] = 1  # only the prediction has boundaries: F = 0 for classes 0 and 1
    gscnn, strict = BoundaryFScore(3, (2,), "gscnn"), BoundaryFScore(3, (2,), "strict")
    for acc in (gscnn, strict):
        acc.update(pred, gt)
        acc.update(gt, gt)  # class 0 fills both maps (F = 1), classes 1 and 2 absent
    # class 2 is absent from every image: 1 under "gscnn", undefined (nan) under "strict".
    np.testing.assert_array_equal(gscnn.compute()["per_class"][:, 0], [0.5, 0.5, 1.0])
    np.testing.assert_array_equal(strict.compute()["per_class"][:, 0], [0.5, 0.0, np.nan])
    np.testing.assert_allclose(strict.compute()["mean"], [0.25])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(GsbenchError, match=r"\(4, 5\).*\(5, 4\)"):
        boundary_fscore(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8), 3)
    with pytest.raises(GsbenchError, match="radii"):
        boundary_fscore(np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8), 3, radii=(2.5,))
    with pytest.raises(GsbenchError, match="convention"):
        BoundaryFScore(3, convention="davis")

