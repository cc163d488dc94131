"""Rendering a synthetic scene: the painter's list rasterised into the label map, the instance
map and the ``_polygons.json`` object list at once, then shaded into the RGB image (per-texture
luminance: asphalt grain, perspective-correct paving tiles and bricks, fence slats, foliage,
grass streaks, window grids, vehicle shading and glass, clothing; then global lighting, shadows,
colour cast and sensor noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import cv2
import numpy as np

from gsbench.data.cityscapes import CITYSCAPES_CLASS_NAMES, CITYSCAPES_LABEL_BY_NAME
from gsbench.data.synthetic.canvas import (
    TEX_ASPHALT, TEX_BRICK, TEX_CLOTH, TEX_CYLINDER, TEX_FLAT, TEX_FOLIAGE, TEX_GLASS, TEX_GRASS,
    TEX_METAL, TEX_PLASTER, TEX_SKY, TEX_SLATS, TEX_TILES, Item,
)
from gsbench.data.synthetic.scene import COMMON_CLASSES, Street
from gsbench.errors import GsbenchError


class SyntheticScene(NamedTuple):
    """One rendered scene (unpacks as ``rgb, label_ids, instance_ids, polygons``)."""

    rgb: np.ndarray  # H x W x 3 uint8
    label_ids: np.ndarray  # H x W uint8, official Cityscapes labelIds
    instance_ids: np.ndarray  # H x W uint16: labelId*1000+k for instance classes, else labelId
    polygons: list[dict[str, Any]]  # [{"label": name, "polygon": [[x, y], ...]}] in drawing order


def _noise(rng: np.random.Generator, height: int, width: int, cell: float, aspect: float = 1.0):
    """Smooth Gaussian noise with features about ``cell`` pixels wide (``aspect`` x as tall),
    normalised to unit standard deviation."""
    gh = max(2, int(height / (cell * aspect)) + 2)
    gw = max(2, int(width / cell) + 2)
    small = rng.standard_normal((gh, gw), dtype=np.float32)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    big *= np.float32(1.0 / max(float(big[::7, ::7].std()), 1e-6))  # a subsample is enough
    return big


def _hash2(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [-0.5, 0.5) per integer cell (tile / brick shading)."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663)
    return ((h % 1009) / 1009.0 - 0.5).astype(np.float32)


def _rasterize(items: list[Item], height: int, width: int):
    style_map = np.zeros((height, width), np.uint16)
    labels = np.zeros((height, width), np.uint8)
    instances = np.zeros((height, width), np.uint16)
    polygons: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for item in items:
        pts = [item.polygon.reshape(-1, 1, 2)]
        cv2.fillPoly(style_map, pts, int(item.style))
        if item.label is None:
            continue
        label = CITYSCAPES_LABEL_BY_NAME[item.label]
        if label.has_instances:
            # numbered per class in drawing order from 0, as cityscapesscripts' json2instanceImg
            k = counts.get(item.label, 0)
            counts[item.label] = k + 1
            instance = label.id * 1000 + k
        else:
            instance = label.id
        cv2.fillPoly(labels, pts, label.id)
        cv2.fillPoly(instances, pts, instance)
        polygons.append({"label": item.label, "polygon": item.polygon.tolist()})
    return style_map, labels, instances, polygons


def _shade(rng: np.random.Generator, street: Street, style_map: np.ndarray) -> np.ndarray:
    """RGB image from the style map: base colours, per-texture luminance, lighting and noise."""
    H, W = style_map.shape
    styles = street.canvas.styles
    scale = W / 512.0
    rgb_table = np.array([s.rgb for s in styles], np.float32)
    texture_table = np.array([s.texture for s in styles], np.uint8)
    amp_table = np.array([s.amplitude for s in styles], np.float32)
    period_table = np.array([s.period for s in styles], np.float32)
    plane_table = np.array([s.plane_x for s in styles], np.float32)
    bbox_table = np.array([s.bbox for s in styles], np.float32)

    # uniform noise scaled to unit variance: as good as Gaussian grain here and much cheaper
    fine = (rng.random((H, W), dtype=np.float32) - np.float32(0.5)) * np.float32(math.sqrt(12))
    mid = _noise(rng, H, W, 6 * scale)
    low = _noise(rng, H, W, 60 * scale)
    flat_style = style_map.ravel()
    texture = texture_table[flat_style]
    lum = np.zeros(H * W, np.float32)
    f, cx, horizon, cam_h = street.f, street.cx, street.horizon, street.CAM_HEIGHT
    # noise fields only some textures need, generated once in a fixed order (determinism)
    leaf = 0.6 * _noise(rng, H, W, 2.5 * scale) + 0.5 * _noise(rng, H, W, 9 * scale)
    streak = _noise(rng, H, W, 1.2 * scale, aspect=5.0)
    cloth = _noise(rng, H, W, 2.5 * scale)

    for tex in np.unique(texture):
        idx = np.flatnonzero(texture == tex)
        s = flat_style[idx]
        amp = amp_table[s]
        v = (idx // W).astype(np.float32) + 0.5
        u = (idx % W).astype(np.float32) + 0.5
        n_fine = fine.ravel()[idx]
        if tex in (TEX_ASPHALT, TEX_TILES, TEX_GRASS):
            # world coordinates of the ground point seen at this pixel
            Z = f * cam_h / np.maximum(v - horizon, 0.5)
            X = (u - cx) * Z / f
        if tex == TEX_FLAT:
            value = 0.4 * amp * n_fine
        elif tex == TEX_ASPHALT:
            value = amp * (0.6 * n_fine + 0.5 * low.ravel()[idx] + 0.3 * mid.ravel()[idx])
        elif tex == TEX_TILES:
            p = period_table[s]
            gx, gz = X / p, Z / p
            # grout lines about 6 % of a tile wide, which alias into noise far away as they should
            grout = ((np.abs(gx - np.round(gx)) < 0.06) | (np.abs(gz - np.round(gz)) < 0.06))
            value = amp * (0.3 * n_fine + 0.8 * _hash2(np.floor(gx), np.floor(gz))) - 0.3 * grout
        elif tex == TEX_PLASTER:
            value = amp * (0.7 * mid.ravel()[idx] + 0.4 * n_fine + 0.5 * low.ravel()[idx])
        elif tex == TEX_FOLIAGE:
            value = amp * np.tanh(1.5 * leaf.ravel()[idx]) + 0.12 * n_fine
        elif tex == TEX_GRASS:
            value = amp * (0.8 * streak.ravel()[idx] + 0.3 * n_fine)
        elif tex == TEX_SKY:
            value = 0.02 * n_fine  # colour gradient and clouds are applied below
        elif tex in (TEX_BRICK, TEX_SLATS):
            p = period_table[s]
            plane = plane_table[s]
            on_plane = np.isfinite(plane)
            du = u - cx
            du = np.where(np.abs(du) < 0.5, 0.5, du)
            # depth and height on the vertical plane X = plane (perspective-correct pattern);
            # shapes without a plane use screen-space coordinates in units of 8 px
            Zp = np.where(on_plane, f * np.nan_to_num(plane) / du, u / (8 * scale))
            Zp = np.abs(Zp)
            Yp = np.where(on_plane, cam_h - (v - horizon) * Zp / f, -v / (8 * scale))
            if tex == TEX_BRICK:
                row = np.floor(Yp / p)
                col = np.floor(Zp / (2.2 * p) + 0.5 * (row % 2))
                mortar = (np.abs(Yp / p - np.round(Yp / p)) < 0.1) | \
                    (np.abs(Zp / (2.2 * p) + 0.5 * (row % 2) - np.round(Zp / (2.2 * p) + 0.5 * (row % 2)))
                     < 0.05)
                value = amp * (0.6 * _hash2(row, col) + 0.3 * n_fine) - 0.3 * mortar
            else:
                gap = (Zp / p) % 1.0 < 0.4
                value = np.where(gap, -0.45, 0.15) * (0.5 + amp) + 0.1 * n_fine
        elif tex == TEX_CYLINDER:
            x0, x1 = bbox_table[s, 0], bbox_table[s, 2]
            xn = (u - x0) / np.maximum(x1 - x0, 1.0)
            value = amp * (0.8 * np.cos(np.pi * (xn - 0.35)) - 0.4) + 0.08 * n_fine
        elif tex == TEX_METAL:
            y0, y1 = bbox_table[s, 1], bbox_table[s, 3]
            yn = (v - y0) / np.maximum(y1 - y0, 1.0)
            value = amp * (0.4 - 0.8 * yn + 0.9 * np.exp(-((yn - 0.3) / 0.06) ** 2)) + 0.08 * n_fine
        elif tex == TEX_CLOTH:
            value = amp * (0.7 * cloth.ravel()[idx] + 0.3 * n_fine)
        elif tex == TEX_GLASS:
            value = amp * (0.6 * np.sin((u + 0.6 * v) * 0.12 / scale) + 0.3 * mid.ravel()[idx])
        else:  # pragma: no cover - every texture constant is handled above
            raise AssertionError(f"unknown texture {tex}")
        lum[idx] = value

    # channel-first (3 x N) so that every operation runs over long contiguous rows
    light = 1.0 + lum
    light *= 1.0 + np.float32(rng.uniform(0.05, 0.2) * 0.5) * low.ravel()  # uneven illumination
    gain = (rng.uniform(0.75, 1.2) * (1 + rng.normal(0, 0.05, 3))).astype(np.float32)
    grain = np.float32(rng.uniform(1.5, 4.0)) * fine.ravel()
    sky = np.flatnonzero(texture == TEX_SKY)
    if sky.size:
        v = (sky // W).astype(np.float32)
        towards_horizon = 0.6 * np.clip(v / max(horizon, 1.0), 0, 1) ** 2
        clouds = np.clip(1.4 * low.ravel()[sky] + 0.15 * mid.ravel()[sky] - 0.2, 0, 1)
        clouds *= amp_table[flat_style[sky]]
    channels = []
    for c in range(3):
        channel = rgb_table[:, c][flat_style]
        if sky.size:  # haze towards the horizon, then clouds
            sky_c = channel[sky] * (1 - towards_horizon) + np.float32(228) * towards_horizon
            channel[sky] = sky_c * (1 - clouds) + np.float32(236) * clouds
        channel *= light
        channel *= gain[c]
        channel += grain
        channel += np.float32(0.5)  # round to nearest on the conversion below
        np.clip(channel, 0, 255, out=channel)
        channels.append(channel.astype(np.uint8).reshape(H, W))
    image = cv2.merge(channels)
    if rng.random() < 0.5:  # a little optical blur
        image = cv2.GaussianBlur(image, (0, 0), 0.6 * max(scale, 1.0) ** 0.5)
    return image


def render_scene(rng: np.random.Generator, height: int, width: int,
                 required: Iterable[str] = COMMON_CLASSES) -> SyntheticScene:
    """Render one street scene.

    ``required`` names Cityscapes classes that must be visible; the common street classes are
    always required. A class that the random layout hid or left out is added in front of the
    scene, so the guarantee holds for every seed.
    """
    required = set(required) | set(COMMON_CLASSES)
    unknown = required - set(CITYSCAPES_CLASS_NAMES)
    if unknown:
        raise GsbenchError(f"unknown required classes: {', '.join(sorted(unknown))}")
    if height < 8 or width < 8:
        raise GsbenchError(f"image size {height}x{width} is too small")
    street = Street(rng, height, width)
    street.build(required)
    street.draw_standing()
    scene_items = list(street.canvas.items)
    street.canvas.items.clear()
    street.ego_and_borders()
    frame_items = list(street.canvas.items)
    street.canvas.items.clear()
    forced: list[Item] = []
    for attempt in range(4):
        style_map, labels, instances, polygons = _rasterize(
            scene_items + forced + frame_items, height, width)
        present = set(np.flatnonzero(np.bincount(labels.ravel(), minlength=256)).tolist())
        missing = sorted(name for name in required if CITYSCAPES_LABEL_BY_NAME[name].id not in present)
        if not missing:
            break
        for name in missing:
            street.force(name, attempt)
        forced += street.canvas.items
        street.canvas.items.clear()
    else:  # pragma: no cover - forced objects are drawn in front, so this would be a bug
        raise AssertionError(f"could not place {missing} in a {height}x{width} scene")
    rgb = _shade(rng, street, style_map)
    return SyntheticScene(rgb, labels, instances, polygons)
