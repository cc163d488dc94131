"""The compiled form of the boundary F-score (:mod:`gsbench.metrics.boundary_native`) against
the vectorised one, on maps denser than the slow reference of test_metrics_boundary.py can
afford (that file runs its reference tests on both forms)."""

from __future__ import annotations

import numpy as np
import pytest

from gsbench.metrics import boundary_fscore, boundary_native


def test_the_compiled_form_is_built_here():
    assert boundary_native.LIBRARY.get() is not None  # a C compiler is part of the test setup


def _street(rng, shape, num_classes):
    """A dense label map: horizontal bands, blocks and thin poles of many classes, some void."""
    labels = np.repeat(rng.integers(0, num_classes, (shape[0] // 8 + 1, 1)), 8, axis=0)[: shape[0]]
    labels = np.broadcast_to(labels, shape).astype(np.uint8).copy()
    for _ in range(60):
        top, left = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        h, w = rng.integers(1, 30), rng.integers(1, 12)
        labels[top : top + h, left : left + w] = rng.integers(0, num_classes)
    labels[rng.random(shape) < 0.01] = 255
    return labels


@pytest.mark.parametrize("num_classes", [19, 40])
def test_the_two_forms_agree_on_dense_maps(num_classes):
    """Bit-identical scores on denser maps than the reference can afford: more than 32 classes
    (two class blocks), the compiled form's largest radius, radii beyond it (the vectorised
    form runs both calls) and beyond the diagonal."""
    rng = np.random.default_rng(num_classes)
    gt = _street(rng, (120, 200), num_classes)
    pred = np.roll(gt, (2, -3), axis=(0, 1))
    pred[_street(rng, (120, 200), 2) == 1] = rng.integers(0, num_classes)
    for radii in [(3, 5, 9, 12), (0, 1, 2), (64, 1), (70, 3), (1000, 40)]:
        native = boundary_fscore(pred, gt, num_classes, radii)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(boundary_native.LIBRARY, "get", lambda: None)
            vectorised = boundary_fscore(pred, gt, num_classes, radii)
        for got, want in zip(native, vectorised):
            np.testing.assert_array_equal(got, want)


def test_the_kept_bitmaps_are_all_zeros_after_each_image():
    """The workspace is reused from image to image: only the listed pixels' words are cleared,
    which must leave nothing behind (or the next image would see this one's boundaries)."""
    from gsbench.metrics.boundary import _WORKSPACES

    rng = np.random.default_rng(3)
    first, second = _street(rng, (90, 130), 19), _street(rng, (90, 130), 19)
    alone = boundary_fscore(second, first, 19)
    boundary_fscore(first, second, 19)
    workspace = _WORKSPACES.last
    assert isinstance(workspace, boundary_native.NativeWorkspace)
    assert not any(one.bitmaps.any() for one in workspace.maps)
    for got, want in zip(boundary_fscore(second, first, 19), alone):
        np.testing.assert_array_equal(got, want)
