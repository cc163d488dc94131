"""Pictures of predictions: class colours, overlays, error and boundary maps, and the panels of
``gsbench predict`` and ``gsbench eval --show-dir``.

Colours: a dataset's official colour coding where it has one (:attr:`DatasetDescription.palette
<gsbench.data.description.DatasetDescription.palette>`: Cityscapes' label table, the ADE20K
SceneParsing colours, the PASCAL VOC colour map); for the others (PASCAL Context, COCO-Stuff,
a model without a dataset) the VOC devkit's colour map of index + 1 (:func:`fallback_palette`),
deterministic and without black, which stays the colour of ignored pixels (255).

A panel (:func:`prediction_panel`) shows one image in five tiles: the image, the ground truth,
the prediction, the errors (red: a wrong class, black: ignored in the ground truth, the image
dimmed where right) and the boundary matches of the boundary F-score at one radius (green:
ground-truth boundary pixels matched by the prediction, red: missed ones, blue: predicted
boundary pixels with no ground-truth boundary within the radius;
:func:`gsbench.metrics.boundary.boundary_match_maps`). Everything here is numpy and OpenCV on
uint8 RGB arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from gsbench.data.description import DatasetDescription
from gsbench.data.labels import IGNORE_INDEX
from gsbench.data.voc import voc_colormap
from gsbench.metrics.boundary import boundary_match_maps

#: Where ``gsbench eval RUN`` puts its panels, beside the metrics of the evaluation.
PANELS_DIR = "panels"
#: Colour of ignored pixels (and of labels outside the palette).
IGNORE_COLOUR = (0, 0, 0)
#: Boundary-match colours: matched, missed (ground truth), false (prediction).
MATCHED, MISSED, FALSE = (0, 200, 0), (255, 40, 40), (40, 120, 255)
#: Error-map colour of a wrong pixel.
WRONG = (255, 0, 0)
#: Widest tile of a panel, in pixels (larger images are shrunk to it).
TILE_WIDTH = 512


def fallback_palette(num_classes: int) -> np.ndarray:
    """``num_classes`` x 3 colours for a dataset without an official colour coding: the VOC
    devkit colour map at indices 1 .. num_classes (distinct, none black)."""
    return voc_colormap(num_classes + 1)[1:]


def palette_for(dataset: DatasetDescription | None, num_classes: int) -> np.ndarray:
    """The colours of trainIds 0 .. num_classes - 1: the dataset's official palette, else
    :func:`fallback_palette`."""
    palette = None if dataset is None else dataset.palette
    if palette is not None and len(palette) >= num_classes:
        return np.asarray(palette[:num_classes], np.uint8)
    return fallback_palette(num_classes)


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """HxW trainIds -> HxWx3 RGB; 255 (ignore) and any label outside the palette are black."""
    table = np.zeros((256, 3), np.uint8)
    table[:] = IGNORE_COLOUR
    table[: min(len(palette), 255)] = palette[:255]
    return table[labels if labels.dtype == np.uint8 else np.clip(labels, 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``colours`` blended over ``image`` with weight ``alpha`` (both HxWx3 uint8)."""
    return cv2.addWeighted(colours, alpha, image, 1.0 - alpha, 0.0)


def _dimmed(image: np.ndarray, weight: float = 0.35, floor: float = 0.0) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * weight + floor
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def error_map(image: np.ndarray, pred: np.ndarray, gt: np.ndarray,
              ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The image greyed and brightened where the prediction is right, red where it is wrong,
    black where the ground truth is ignored."""
    out = _dimmed(image, 0.4, 150.0)
    out[(pred != gt) & (gt != ignore_index)] = WRONG
    out[gt == ignore_index] = IGNORE_COLOUR
    return out


def boundary_matches(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     radius: int, ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, dict]:
    """The boundary pixels of ``gt`` and ``pred`` at ``radius`` over the darkened image (see
    the module docstring for the colours), and their counts (``matched``, ``missed``,
    ``false``)."""
    gt_state, pred_state = boundary_match_maps(pred, gt, num_classes, radius, ignore_index)
    out = _dimmed(image)
    out[pred_state == 1] = MATCHED
    out[gt_state == 1] = MATCHED
    out[pred_state == -1] = FALSE
    out[gt_state == -1] = MISSED
    counts = {"matched": int((gt_state == 1).sum()), "missed": int((gt_state == -1).sum()),
              "false": int((pred_state == -1).sum())}
    return out, counts


def boundary_probability_map(probability: np.ndarray) -> np.ndarray:
    """A boundary probability map (HxW floats in [0, 1]) as a white-on-black HxWx3 image."""
    grey = np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


#: How a panel tile is shrunk: ``image`` by area averaging, ``labels`` by nearest neighbour
#: (no blended colours), ``lines`` by area averaging with the boundary colours kept wherever a
#: line pixel falls (one-pixel lines survive).
TILE_KINDS = ("image", "labels", "lines")


def _shrink(tile: np.ndarray, scale: float, kind: str) -> np.ndarray:
    if scale >= 1.0:
        return tile
    height, width = tile.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if kind == "labels":
        return cv2.resize(tile, size, interpolation=cv2.INTER_NEAREST)
    out = cv2.resize(tile, size, interpolation=cv2.INTER_AREA)
    if kind == "lines":
        for colour in (MATCHED, FALSE, MISSED):
            mask = np.all(tile == colour, axis=2).astype(np.float32)
            out[cv2.resize(mask, size, interpolation=cv2.INTER_AREA) > 0] = colour
    return out


_FONT, _FONT_SCALE, _LINE_HEIGHT = cv2.FONT_HERSHEY_SIMPLEX, 0.42, 15


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of whole words that fit ``width`` pixels in the caption font (a word
    wider than that stands alone)."""
    lines: list[str] = []
    for word in text.split():
        wider = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(wider, _FONT, _FONT_SCALE, 1)[0][0] <= width:
            lines[-1] = wider
        else:
            lines.append(word)
    return lines or [""]


def _text_block(lines: list[str], width: int, height: int, light: bool = False,
                swatches: Sequence[tuple[int, int, int] | None] = ()) -> np.ndarray:
    """Lines of text, white on a dark block (dark on a light one with ``light``); a line with a
    swatch colour starts with a square of it."""
    block = np.full((height, width, 3), 240 if light else 32, np.uint8)
    ink = (20, 20, 20) if light else (255, 255, 255)
    for number, line in enumerate(lines):
        y = 5 + _LINE_HEIGHT * number
        x = 4
        colour = swatches[number] if number < len(swatches) else None
        if colour is not None:
            block[y + 1 : y + 11, x : x + 10] = colour
            x += 14
        cv2.putText(block, line, (x, y + 10), _FONT, _FONT_SCALE, ink, 1, cv2.LINE_AA)
    return block


def panel(tiles: Sequence[tuple[str, np.ndarray, str]], columns: int = 3,
          tile_width: int = TILE_WIDTH,
          legend: Sequence[tuple[tuple[int, int, int], str]] = ()) -> np.ndarray:
    """One RGB picture of ``(caption, HxWx3 tile, kind)`` tiles of one size, ``columns`` per
    row, each shrunk to at most ``tile_width`` pixels wide as its kind says
    (:data:`TILE_KINDS`), each under its caption (wrapped at whole words). ``legend``
    ``(colour, text)`` lines fill the first empty cell of the grid (or a cell of their own)."""
    height, width = tiles[0][1].shape[:2]
    scale = min(1.0, tile_width / width)
    shrunk = []
    for caption, tile, kind in tiles:
        if tile.shape[:2] != (height, width):
            raise ValueError(f"panel tile {caption!r}: shape {tile.shape[:2]}, expected {(height, width)}")
        if kind not in TILE_KINDS:
            raise ValueError(f"panel tile {caption!r}: kind {kind!r} is none of {TILE_KINDS}")
        shrunk.append((caption, _shrink(tile, scale, kind)))
    cell_width = shrunk[0][1].shape[1]
    captions = [_wrap(caption, cell_width - 8) for caption, _ in shrunk]
    bar = 6 + _LINE_HEIGHT * max(map(len, captions))
    cells = [np.concatenate([_text_block(lines, cell_width, bar), tile], axis=0)
             for lines, (_, tile) in zip(captions, shrunk)]
    cell_height = cells[0].shape[0]
    if legend:
        lines, swatches = [], []
        for colour, text in legend:
            wrapped = _wrap(text, cell_width - 22)
            lines += wrapped
            swatches += [colour] + [None] * (len(wrapped) - 1)
        needed = 10 + _LINE_HEIGHT * len(lines)
        if needed > cell_height:  # more legend than a cell holds: every cell grows
            cells = [np.concatenate([c, np.full((needed - cell_height, cell_width, 3), 255,
                                                np.uint8)]) for c in cells]
            cell_height = needed
        cells.append(_text_block(lines, cell_width, cell_height, True, swatches))
    blank = np.full_like(cells[0], 255)
    rows = []
    for start in range(0, len(cells), columns):
        row = cells[start : start + columns]
        row += [blank] * (columns - len(row))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def prediction_panel(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, palette: np.ndarray,
                     radius: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The five tiles of one evaluated image (see the module docstring) as one RGB picture."""
    matches, counts = boundary_matches(image, pred, gt, len(palette), radius, ignore_index)
    wrong = int(((pred != gt) & (gt != ignore_index)).sum())
    scored = int((gt != ignore_index).sum())
    return panel([
        ("image", image, "image"),
        ("ground truth", colorize(gt, palette), "labels"),
        ("prediction", colorize(pred, palette), "labels"),
        (f"errors: {100.0 * wrong / max(scored, 1):.1f} % of the scored pixels",
         error_map(image, pred, gt, ignore_index), "image"),
        (f"boundaries at {radius} px: {counts['matched']} matched, {counts['missed']} missed, "
         f"{counts['false']} false", matches, "lines"),
    ], legend=[
        (WRONG, "errors: a wrong class"), (IGNORE_COLOUR, "ignored in the ground truth"),
        (MATCHED, "boundary matched within the radius"), (MISSED, "ground-truth boundary missed"),
        (FALSE, "predicted boundary with no ground truth near"),
    ])


__all__ = [
    "FALSE", "IGNORE_COLOUR", "MATCHED", "MISSED", "PANELS_DIR", "TILE_KINDS", "TILE_WIDTH",
    "WRONG",
    "boundary_matches", "boundary_probability_map", "colorize", "error_map", "fallback_palette",
    "overlay", "palette_for", "panel", "prediction_panel",
]
