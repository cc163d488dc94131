"""Pictures of predictions: the datasets' colour codings, colour maps, error and boundary maps,
and the panels of `gsbench eval --show`."""

from __future__ import annotations

import numpy as np
import pytest

from gsbench.data.registry import DATASETS, get_dataset
from gsbench.data.voc import voc_colormap
from gsbench.metrics.boundary import boundary_fscore, boundary_match_maps
from gsbench.visualize import (
    FALSE, MATCHED, MISSED, WRONG, colorize, error_map, fallback_palette, overlay, palette_for,
    panel, prediction_panel,
)


def test_official_palettes():
    # Cityscapes' label table: road (128, 64, 128), ..., bicycle (119, 11, 32)
    cityscapes = get_dataset("cityscapes").palette
    assert cityscapes[0].tolist() == [128, 64, 128] and cityscapes[18].tolist() == [119, 11, 32]
    # ADE20K SceneParsing colours (color150.mat): wall, building, sky, ..., flag
    ade = get_dataset("ade20k").palette
    assert ade.shape == (150, 3)
    assert ade[:3].tolist() == [[120, 120, 120], [180, 120, 120], [6, 230, 230]]
    assert ade[-1].tolist() == [92, 0, 255]
    # PASCAL VOC devkit colour map: background black, aeroplane (128, 0, 0), void (224, 224, 192)
    voc = get_dataset("voc2012").palette
    assert voc.shape == (21, 3) and voc[1].tolist() == [128, 0, 0] and voc[20].tolist() == [0, 64, 128]
    assert voc_colormap(256)[255].tolist() == [224, 224, 192]


def test_every_dataset_gets_a_colour_per_class():
    for dataset in DATASETS.values():
        colours = palette_for(dataset, dataset.num_classes)
        assert colours.shape == (dataset.num_classes, 3) and colours.dtype == np.uint8
        if dataset.palette is None:  # the fallback: distinct colours
            assert len({tuple(c) for c in colours}) == dataset.num_classes, dataset.name
    fallback = fallback_palette(171)
    assert len({tuple(c) for c in fallback}) == 171
    assert not (fallback == 0).all(axis=1).any()  # black is kept for ignored pixels
    assert (palette_for(None, 5) == fallback_palette(5)).all()


def test_colorize_and_overlay():
    palette = fallback_palette(3)
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    colours = colorize(labels, palette)
    assert colours[0, 0].tolist() == palette[0].tolist() and colours[1, 0].tolist() == palette[2].tolist()
    assert colours[1, 1].tolist() == [0, 0, 0]  # ignore
    assert colorize(np.array([[7]], np.uint8), palette)[0, 0].tolist() == [0, 0, 0]  # no such class
    image = np.full((2, 2, 3), 200, np.uint8)
    assert overlay(image, colours, 0.5)[1, 1].tolist() == [100, 100, 100]


def test_error_map_marks_wrong_and_ignored_pixels():
    image = np.full((2, 3, 3), 100, np.uint8)
    gt = np.array([[0, 1, 255], [1, 1, 0]], np.uint8)
    pred = np.array([[0, 0, 1], [1, 1, 0]], np.uint8)
    errors = error_map(image, pred, gt)
    assert errors[0, 1].tolist() == list(WRONG)
    assert errors[0, 2].tolist() == [0, 0, 0]
    right = errors[0, 0].tolist()
    assert right not in (list(WRONG), [0, 0, 0]) and right[0] == right[1] == right[2]


def test_boundary_match_maps_agree_with_the_boundary_fscore():
    rng = np.random.default_rng(0)
    gt = np.zeros((48, 64), np.uint8)
    gt[10:30, 12:40] = 1
    gt[35:45, 5:60] = 2
    gt[:3] = 255
    pred = gt.copy()
    pred[12:34, 14:42] = 1
    pred[rng.random(gt.shape) < 0.01] = 2
    pred[:2] = rng.integers(0, 3, (2, 64))  # noise where the ground truth is void
    for radius in (0, 1, 3):
        gt_state, pred_state = boundary_match_maps(pred, gt, 3, radius)
        scores = boundary_fscore(pred, gt, 3, (radius,))
        # a pixel counts as matched only when all the classes it bounds are matched
        assert gt_state.dtype == np.int8 and set(np.unique(gt_state)) <= {-1, 0, 1}
        matched = (gt_state == 1).sum() / max((gt_state != 0).sum(), 1)
        assert matched <= scores.recall[:, 0].max() + 1e-9
        assert not pred_state[:2].any() and not gt_state[:2].any()  # void inside is no boundary
    gt_state, pred_state = boundary_match_maps(gt, gt, 3, 0)
    assert (gt_state >= 0).all() and (pred_state >= 0).all() and (gt_state == 1).any()


def test_boundary_match_maps_one_class_exact():
    gt = np.zeros((40, 60), np.uint8)
    gt[10:30, 20:40] = 1
    pred = np.zeros_like(gt)
    pred[12:32, 20:40] = 1  # shifted down by 2 rows
    for radius, matched in ((1, 42), (3, 80)):
        gt_state, pred_state = boundary_match_maps(pred, gt, 2, radius)
        assert (gt_state == 1).sum() == matched and (gt_state != 0).sum() == 80
        assert (pred_state == 1).sum() == matched and (pred_state != 0).sum() == 80
        scores = boundary_fscore(pred, gt, 2, (radius,))
        assert scores.recall[1, 0] == pytest.approx(matched / 80)
        assert scores.precision[1, 0] == pytest.approx(matched / 80)


def test_prediction_panel_shows_five_tiles_with_the_boundary_colours():
    gt = np.zeros((64, 128), np.uint8)
    gt[20:40, 30:90] = 1
    gt[:4] = 255
    pred = gt.copy()
    pred[20:44, 30:90] = 1
    pred[:4] = 0
    pred[50:60, 100:110] = 2
    image = np.random.default_rng(1).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    picture = prediction_panel(image, pred, gt, fallback_palette(3), radius=1)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    # two rows of three 128-pixel cells: five tiles under their captions, and the legend
    assert picture.shape[1] == 3 * 128 and picture.shape[0] % 2 == 0
    assert picture.shape[0] // 2 >= 64 + 21
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert {MATCHED, MISSED, FALSE, WRONG} <= colours
    legend = picture[picture.shape[0] // 2 :, 2 * 128 :]
    assert {MATCHED, MISSED, FALSE, WRONG, (0, 0, 0)} <= {tuple(c) for c in legend.reshape(-1, 3)}


def test_captions_wrap_at_whole_words():
    from gsbench.visualize import _wrap

    text = "boundaries at 3 px: 2964 matched, 99 missed, 180 false"
    lines = _wrap(text, 120)
    assert len(lines) > 1 and " ".join(lines) == text


def test_large_tiles_shrink_and_keep_their_one_pixel_lines():
    lines = np.zeros((400, 2000, 3), np.uint8)
    lines[200, :] = MISSED  # one-pixel line
    labels = np.zeros((400, 2000, 3), np.uint8)
    picture = panel([("labels", labels, "labels"), ("lines", lines, "lines")], columns=2,
                    tile_width=500)
    assert picture.shape[1] == 1000
    assert (picture[:, 500:] == MISSED).all(axis=2).any()
    with pytest.raises(ValueError, match="kind"):
        panel([("x", labels, "paint")])
