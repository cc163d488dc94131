"""The built-in synthetic dataset: procedural street scenes in the exact raw Cityscapes layout.

``gsbench prepare-data synthetic --out DIR`` writes

    DIR/leftImg8bit/{train,val}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    DIR/gtFine/{split}/{city}/{stem}_gtFine_{labelIds,instanceIds,color}.png + _polygons.json

(or, with ``layout="ade20k"``, ``DIR/ADEChallengeData2016/{images,annotations}/...``), so that
the real-data code paths (prepare-data, training, evaluation) run on it unchanged.

A scene is a street in perspective: a pinhole camera 1.5 m above a flat ground plane looks down
a road with sidewalks, terrain verges, walls and fences, fronted by building facades and trees,
under a sky. Poles carry traffic signs and lights; cars, trucks, buses, trams (on rail tracks),
persons, riders on bicycles or motorcycles and parked two-wheelers stand on the ground at random
depths, so their size in pixels follows ``f / Z`` (small and thin far away). Void classes appear
where Cityscapes has them: ego vehicle at the bottom, rectification border and out-of-roi at the
image edges, some static / dynamic objects and ground patches.

Every shape is a polygon drawn in painter's order (far to near), which yields the label map,
the instance map and the ``_polygons.json`` object list at once. Appearance comes from per-object
styles: a base colour drawn from distributions that overlap between classes (colour alone does
not give the class), and a per-class texture signature (asphalt grain, perspective-correct
paving tiles and bricks, fence slats, foliage, grass streaks, window grids, vehicle shading and
glass, clothing), followed by global lighting, shadows, colour cast and sensor noise.

Generation is deterministic: image ``index`` of ``split`` is rendered from its own random
generator seeded by ``(seed, split, index)``, so output bytes do not depend on the number of
worker processes.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from gsbench.data.ade20k import ADE20K_CLASS_NAMES
from gsbench.data.cityscapes import CITYSCAPES_CLASS_NAMES, CITYSCAPES_LABEL_BY_NAME, CITYSCAPES_LABELS
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_bytes, atomic_write_json, encode_png, read_json

# --- public constants ---------------------------------------------------------------------------

DEFAULT_SIZE = (256, 512)
DEFAULT_N_TRAIN = 32
DEFAULT_N_VAL = 8
DEFAULT_SEED = 0
MIN_SIZE = 64  # smallest height and width: below this the thin classes vanish
MAX_SIZE = 4096
LAYOUTS = ("cityscapes", "ade20k")
#: Marker written into an output folder; its presence allows regenerating into that folder.
MARKER_NAME = "gsbench-synthetic.json"
MARKER_FORMAT = "gsbench-synthetic/1"

TRAIN_CITIES = ("aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt",
                "hamburg", "hanover", "jena", "krefeld", "strasbourg", "stuttgart", "tubingen",
                "ulm", "weimar", "zurich")
VAL_CITIES = ("frankfurt", "lindau", "munster")
CITIES = {"train": TRAIN_CITIES, "val": VAL_CITIES}
#: Cityscapes numbers its annotated frames ..._000019 (the 20th frame of each 30-frame snippet).
ANNOTATED_FRAME = 19
SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}

#: Classes every street scene has; each rendered image shows all of them.
COMMON_CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "pole", "traffic light",
                  "traffic sign", "car", "person")
#: Rarer classes, shared round-robin between the images of a split so that every split (even with
#: two images) contains all 19 evaluated classes.
QUOTA_CLASSES = ("wall", "fence", "terrain", "truck", "bus", "train", "rider", "motorcycle",
                 "bicycle")
assert sorted(COMMON_CLASSES + QUOTA_CLASSES) == sorted(CITYSCAPES_CLASS_NAMES)

#: Cityscapes label -> ADE20K SceneParsing-150 annotation value (1-based; 0 = "other").
#: ADE20K has no rider (a rider is a person there) and no train or rail track (-> other).
CITYSCAPES_TO_ADE20K_NAME = {
    "road": "road", "sidewalk": "sidewalk", "building": "building", "wall": "wall",
    "fence": "fence", "pole": "pole", "traffic light": "traffic light",
    "traffic sign": "signboard", "vegetation": "tree", "terrain": "grass", "sky": "sky",
    "person": "person", "rider": "person", "car": "car", "truck": "truck", "bus": "bus",
    "motorcycle": "minibike", "bicycle": "bicycle", "ground": "earth",
}


def _cityscapes_to_ade20k_lut() -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)
    for name, ade_name in CITYSCAPES_TO_ADE20K_NAME.items():
        lut[CITYSCAPES_LABEL_BY_NAME[name].id] = ADE20K_CLASS_NAMES.index(ade_name) + 1
    return lut


#: Cityscapes labelId -> ADE20K annotation value.
CITYSCAPES_ID_TO_ADE20K = _cityscapes_to_ade20k_lut()


def _label_colour_lut() -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, 3] = 255
    for label in CITYSCAPES_LABELS:
        if label.id >= 0:
            lut[label.id, :3] = label.color
    return lut


#: Cityscapes labelId -> official colour (RGBA, opaque: cityscapesscripts' json2labelImg writes
#: the ``_gtFine_color.png`` files as RGBA), for the ``_gtFine_color.png`` files.
CITYSCAPES_ID_TO_COLOR = _label_colour_lut()


class SyntheticScene(NamedTuple):
    """One rendered scene (unpacks as ``rgb, label_ids, instance_ids, polygons``)."""

    rgb: np.ndarray  # H x W x 3 uint8
    label_ids: np.ndarray  # H x W uint8, official Cityscapes labelIds
    instance_ids: np.ndarray  # H x W uint16: labelId*1000+k for instance classes, else labelId
    polygons: list[dict[str, Any]]  # [{"label": name, "polygon": [[x, y], ...]}] in drawing order


# --- textures -----------------------------------------------------------------------------------
# Each style names one of these; the texture gives a luminance modulation around its base colour.
TEX_FLAT, TEX_ASPHALT, TEX_TILES, TEX_PLASTER, TEX_FOLIAGE, TEX_GRASS, TEX_SKY, TEX_BRICK, \
    TEX_SLATS, TEX_CYLINDER, TEX_METAL, TEX_CLOTH, TEX_GLASS = range(13)


@dataclass
class _Style:
    rgb: tuple[float, float, float]
    texture: int
    amplitude: float
    period: float = 0.5  # metres (tiles, bricks, slats on a plane) or pixels (screen space)
    plane_x: float = math.nan  # lateral position of the vertical plane the texture lies on
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x0, y0, x1, y1 (pixels)


@dataclass
class _Item:
    polygon: np.ndarray  # N x 2 int32 pixel coordinates
    style: int
    label: str | None  # None: appearance-only detail (a window, a lane marking)


@dataclass
class _Canvas:
    """Painter's list of polygons: labelled shapes and appearance-only details, drawn in order."""

    items: list[_Item] = field(default_factory=list)
    styles: list[_Style] = field(default_factory=lambda: [_Style((0.0, 0.0, 0.0), TEX_FLAT, 0.0)])

    def style(self, rgb, texture: int, amplitude: float, **kwargs) -> int:
        self.styles.append(_Style(tuple(float(c) for c in rgb), texture, amplitude, **kwargs))
        return len(self.styles) - 1

    def add(self, polygon, style: int, label: str | None = None) -> None:
        poly = np.round(np.asarray(polygon, dtype=np.float64)).astype(np.int64)
        # far-off-screen vertices (objects right in front of the camera) are clamped so that int32
        # drawing cannot overflow; clamping outside the image does not change the visible shape
        poly = np.clip(poly, -(1 << 20), 1 << 20).astype(np.int32).reshape(-1, 2)
        if len(poly) < 3:
            return
        style_obj = self.styles[style]
        if style_obj.bbox == (0.0, 0.0, 1.0, 1.0):  # shading is relative to the first polygon
            x0, y0 = poly.min(axis=0)
            x1, y1 = poly.max(axis=0)
            style_obj.bbox = (float(x0), float(y0), float(x1 + 1), float(y1 + 1))
        self.items.append(_Item(poly, style, label))


def _polygon_circle(cx, cy, rx, ry=None, n=None, start=0.0, stop=2 * math.pi):
    ry = rx if ry is None else ry
    if n is None:
        n = int(np.clip(max(rx, ry) * 1.5, 8, 48))
    t = np.linspace(start, stop, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _segment(p0, p1, width):
    """Quadrilateral of a thick line segment from p0 to p1."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9) * (width / 2)
    return np.stack([p0 + n, p1 + n, p1 - n, p0 - n])


def _union_outline(parts: list[np.ndarray]) -> np.ndarray:
    """One outline polygon around the union of several polygons (the way an annotator traces a
    composite object such as a person or a bicycle); holes are not kept."""
    pts = np.concatenate([np.round(p) for p in parts]).astype(np.int64)
    x0, y0 = pts.min(axis=0) - 2
    x1, y1 = pts.max(axis=0) + 2
    if (x1 - x0) * (y1 - y0) > 4_000_000:  # huge (off-screen) composite: its hull is good enough
        return cv2.convexHull(pts.astype(np.int32)).reshape(-1, 2)
    mask = np.zeros((int(y1 - y0) + 1, int(x1 - x0) + 1), np.uint8)
    offset = np.array([x0, y0])
    cv2.fillPoly(mask, [(np.round(p) - offset).astype(np.int32).reshape(-1, 1, 2) for p in parts], 1)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) == 1 and len(contours[0]) >= 3:
        return contours[0].reshape(-1, 2) + offset
    # parts that do not touch at this scale (a far-away bicycle): trace their hull instead
    return cv2.convexHull(pts.astype(np.int32)).reshape(-1, 2)


# --- colours ------------------------------------------------------------------------------------
# Base colour families (RGB). Several classes draw from the same families, so colour alone does
# not give the class; texture and shape do.
_GREYS = ((70, 70, 72), (95, 95, 98), (120, 118, 115), (150, 148, 145), (180, 178, 172))
_FACADES = ((196, 180, 150), (170, 150, 120), (150, 80, 60), (200, 200, 195), (130, 130, 135),
            (210, 190, 140), (120, 95, 80), (175, 175, 185), (160, 110, 90))
_PAINTS = ((200, 200, 205), (30, 30, 35), (150, 20, 25), (30, 60, 140), (120, 125, 130),
           (230, 230, 225), (20, 70, 40), (180, 150, 60), (90, 90, 95), (110, 30, 60))
_CLOTHES = ((40, 40, 50), (160, 30, 40), (30, 50, 120), (200, 190, 170), (90, 110, 60),
            (130, 130, 135), (220, 220, 220), (150, 90, 40), (60, 40, 30), (190, 120, 140))
_GREENS = ((60, 90, 40), (85, 115, 45), (45, 70, 35), (110, 130, 60), (70, 100, 70),
           (130, 110, 50))


def _pick(rng: np.random.Generator, family, jitter: float = 18.0) -> np.ndarray:
    base = np.asarray(family[rng.integers(len(family))], dtype=np.float64)
    return np.clip(base + rng.normal(0.0, jitter, 3), 8, 245)


# --- the scene ----------------------------------------------------------------------------------

class _Street:
    """A pinhole camera over a flat street; builds the painter's list of one scene.

    World coordinates in metres: X to the right, Y up from the ground, Z forward from the camera.
    A point projects to ``u = cx + f X / Z``, ``v = horizon + f (cam_height - Y) / Z``.
    """

    CAM_HEIGHT = 1.5

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng, self.H, self.W = rng, height, width
        self.horizon = height * rng.uniform(0.36, 0.46)
        self.cx = width * rng.uniform(0.42, 0.58)
        self.f = width * rng.uniform(0.55, 0.7)
        self.z_bottom = self.f * self.CAM_HEIGHT / (height - self.horizon)  # ground at last row
        self.canvas = _Canvas()
        self.ego_top = float(height)  # top row of the ego vehicle (set by ego_and_borders)
        self.standing: list[tuple[float, int, Any]] = []  # (depth, order, draw callable)

        # the street cross-section (metres, X of each boundary)
        self.road_left = -rng.uniform(3.5, 8.0)
        self.road_right = rng.uniform(3.5, 8.0)
        self.walk_left = self.road_left - rng.uniform(2.0, 4.5)
        self.walk_right = self.road_right + rng.uniform(2.0, 4.5)
        self.verge = {side: rng.uniform(1.5, 5.0) if rng.random() < 0.45 else 0.0
                      for side in (-1, 1)}
        self.z_end = rng.uniform(70.0, 160.0) if rng.random() < 0.5 else 400.0

    # geometry helpers
    def project(self, X, Y, Z):
        X, Y, Z = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (X, Y, Z)))
        Z = np.maximum(Z, 0.05)
        return np.stack([self.cx + self.f * X / Z, self.horizon + self.f * (self.CAM_HEIGHT - Y) / Z],
                        axis=-1)

    def px(self, metres: float, Z: float) -> float:
        return self.f * metres / Z

    def facade_x(self, side: int) -> float:
        walk = self.walk_left if side < 0 else self.walk_right
        return walk + side * self.verge[side]

    def ground_quad(self, x0, x1, z0, z1):
        return self.project([x0, x1, x1, x0], 0.0, [z0, z0, z1, z1])

    def side_quad(self, x, y0, y1, z0, z1):
        return self.project(x, [y0, y1, y1, y0], [z0, z0, z1, z1])

    def shape(self, label: str, polygon, style: int) -> None:
        self.canvas.add(polygon, style, label)

    def detail(self, polygon, style: int) -> None:
        self.canvas.add(polygon, style, None)

    def random_depth(self, near: float = 1.3, far: float = 70.0) -> float:
        lo = self.z_bottom * near
        hi = max(lo * 1.5, min(far, self.z_end * 0.9))
        return float(math.exp(self.rng.uniform(math.log(lo), math.log(hi))))

    def lateral_on_screen(self, Z: float, margin: float = 0.12) -> float:
        """A lateral position X whose projection at depth Z lies inside the image."""
        u = self.rng.uniform(margin, 1 - margin) * self.W
        return (u - self.cx) * Z / self.f

    # --- background: sky, ground, facades -----------------------------------------------------
    def build(self, required: set[str]) -> None:
        rng = self.rng
        want = {name: name in required for name in QUOTA_CLASSES}
        for name, p in (("wall", 0.35), ("fence", 0.4), ("terrain", 0.5), ("truck", 0.3),
                        ("bus", 0.25), ("train", 0.15), ("rider", 0.4), ("motorcycle", 0.3),
                        ("bicycle", 0.35)):
            want[name] = want[name] or bool(rng.random() < p)
        if want["terrain"] and not any(self.verge.values()):
            self.verge[int(rng.choice([-1, 1]))] = rng.uniform(1.5, 5.0)
        self._sky()
        tram_x = self._ground(want["train"])
        for side in (-1, 1):
            self._side_facades(side)
        self._end_of_street()
        for side in (-1, 1):
            self._barriers(side, want)
        self._populate(want, tram_x)

    def _sky(self) -> None:
        rgb = _pick(self.rng, ((110, 150, 200), (160, 180, 205), (190, 195, 200), (90, 130, 190),
                               (200, 185, 170)), 12)
        style = self.canvas.style(rgb, TEX_SKY, self.rng.uniform(0.3, 0.9))
        self.shape("sky", [(0, 0), (self.W - 1, 0), (self.W - 1, self.H - 1), (0, self.H - 1)], style)

    def _ground(self, with_tram: bool) -> float | None:
        rng, z0, z1 = self.rng, 0.5, self.z_end
        road = self.canvas.style(_pick(rng, _GREYS[:3], 10), TEX_ASPHALT, rng.uniform(0.12, 0.25))
        walk_style = [self.canvas.style(_pick(rng, _GREYS[1:] + ((150, 100, 90), (180, 160, 130)), 12),
                                        TEX_TILES, rng.uniform(0.15, 0.3),
                                        period=rng.uniform(0.3, 0.8)) for _ in range(2)]
        # the ground beyond the facades (seen only through gaps and far away)
        self.shape("ground", self.ground_quad(-200, 200, z0, 1e4),
                   self.canvas.style(_pick(rng, ((110, 100, 85), (95, 95, 90)), 10), TEX_ASPHALT, 0.2))
        terrain_style = self.canvas.style(_pick(rng, _GREENS + ((140, 130, 80),), 15), TEX_GRASS,
                                          rng.uniform(0.2, 0.35))
        for side in (-1, 1):
            walk = self.walk_left if side < 0 else self.walk_right
            if self.verge[side] > 0:
                outer = walk + side * self.verge[side]
                self.shape("terrain", self.ground_quad(min(walk, outer), max(walk, outer), z0, z1),
                           terrain_style)
        self.shape("sidewalk", self.ground_quad(self.walk_left, self.road_left, z0, z1), walk_style[0])
        self.shape("sidewalk", self.ground_quad(self.road_right, self.walk_right, z0, z1),
                   walk_style[1])
        self.shape("road", self.ground_quad(self.road_left, self.road_right, z0, z1), road)
        # curbs: a light band along the road edge, part of the sidewalk as in Cityscapes
        curb = self.canvas.style(_pick(rng, _GREYS[2:], 8), TEX_FLAT, 0.1)
        self.detail(self.ground_quad(self.road_left - 0.3, self.road_left, z0, z1), curb)
        self.detail(self.ground_quad(self.road_right, self.road_right + 0.3, z0, z1), curb)
        # lane markings: dashed lines every 3.2 m (part of the road class, as in Cityscapes)
        mark = self.canvas.style(_pick(rng, ((225, 225, 215), (220, 200, 90)), 6), TEX_FLAT, 0.1)
        phase = rng.uniform(0, 9)
        lanes = np.arange(self.road_left + 3.2, self.road_right - 1.5, 3.2)
        z_starts = phase + np.arange(0, min(z1, 120), 9.0)
        for x in lanes:
            for z in z_starts:
                self.detail(self.ground_quad(x - 0.07, x + 0.07, max(z, 0.5), z + 3.0), mark)
        if rng.random() < 0.3:  # a zebra crossing
            zc = rng.uniform(self.z_bottom * 1.5, 25)
            for x in np.arange(self.road_left + 0.3, self.road_right - 0.3, 1.0):
                self.detail(self.ground_quad(x, x + 0.5, zc, zc + 3.0), mark)
        # cast shadows and stains are darker details on the ground
        stain = self.canvas.style(np.asarray(self.canvas.styles[road].rgb) * 0.75, TEX_ASPHALT, 0.2)
        for _ in range(rng.integers(0, 4)):
            x = rng.uniform(self.road_left, self.road_right - 1)
            z = rng.uniform(self.z_bottom, 40)
            x_end = min(x + rng.uniform(0.5, 3), self.road_right)  # stains stay on the road
            self.detail(self.ground_quad(x, x_end, z, z + rng.uniform(1, 5)), stain)
        for _ in range(rng.integers(0, 3)):  # void ground patches beside the sidewalk
            side = int(rng.choice([-1, 1]))
            walk = self.walk_left if side < 0 else self.walk_right
            z = rng.uniform(self.z_bottom * 1.2, 40)
            inner = walk - side * rng.uniform(0.5, 1.5)
            self.shape("ground", self.ground_quad(min(walk, inner), max(walk, inner), z,
                                                  z + rng.uniform(1.5, 5)),
                       self.canvas.style(_pick(rng, ((120, 105, 85), (100, 95, 90)), 10), TEX_ASPHALT,
                                         0.25))
        if not with_tram:
            return None
        tram_x = float(np.clip(rng.uniform(self.road_left + 1.5, self.road_right - 1.5), -2.5, 2.5))
        self.shape("rail track", self.ground_quad(tram_x - 1.1, tram_x + 1.1, z0, z1),
                   self.canvas.style(_pick(rng, ((105, 95, 85), (90, 90, 90)), 8), TEX_ASPHALT, 0.3))
        steel = self.canvas.style((175, 175, 180), TEX_FLAT, 0.1)
        for x in (tram_x - 0.72, tram_x + 0.72):
            self.detail(self.ground_quad(x - 0.04, x + 0.04, z0, z1), steel)
        return tram_x

    def _building(self, side: int, x: float, z_near: float, z_far: float, height: float) -> None:
        rng = self.rng
        quad = self.side_quad(x, 0.0, height, z_far, z_near)
        style = self.canvas.style(_pick(rng, _FACADES, 15), TEX_PLASTER, rng.uniform(0.08, 0.18))
        self.shape("building", quad, style)
        glass = self.canvas.style(_pick(rng, ((40, 50, 60), (70, 85, 100), (25, 30, 35),
                                              (120, 130, 140)), 8), TEX_GLASS, 0.35)
        frame = rng.random() < 0.5
        floor_h = rng.uniform(2.8, 3.6)
        spacing = rng.uniform(2.2, 3.6)
        win_w, win_h = spacing * rng.uniform(0.35, 0.6), floor_h * rng.uniform(0.4, 0.6)
        # windows are skipped where they would be smaller than ~1.5 pixels
        if self.px(win_h, max(z_near, 1.0)) < 1.5:
            return
        ys = np.arange(floor_h * 1.3, height - floor_h * 0.7, floor_h)
        zs = np.arange(z_near + spacing * 0.5, z_far - spacing * 0.5, spacing)
        zs = zs[self.f * win_h / zs >= 1.5]
        Y, Zg = np.meshgrid(ys, zs, indexing="ij")

        def quads(pad: float) -> np.ndarray:  # one side_quad per window, projected at once
            y0, y1, z0, z1 = Y - pad, Y + win_h + pad, Zg - pad, Zg + win_w + pad
            return self.project(x, np.stack([y0, y1, y1, y0], -1),
                                np.stack([z0, z0, z1, z1], -1)).reshape(-1, 4, 2)

        if frame:
            frame_style = self.canvas.style(_pick(rng, ((225, 222, 215), (90, 80, 70)), 8), TEX_FLAT, 0.05)
            for quad in quads(0.15):
                self.detail(quad, frame_style)
        for quad in quads(0.0):
            self.detail(quad, glass)
        # a ground-floor shop window band or doors
        if rng.random() < 0.5:
            self.detail(self.side_quad(x, 0.3, 2.4, z_near + 1.0, z_far - 1.0), glass)

    def _tree(self, X: float, Z: float, height: float, crown: float) -> None:
        rng = self.rng
        style = self.canvas.style(_pick(rng, _GREENS, 14), TEX_FOLIAGE, rng.uniform(0.35, 0.6))
        trunk_w = self.px(crown * 0.12, Z)
        base = self.project(X, 0.0, Z)
        top = self.project(X, height - crown, Z)
        cx, cy = self.project(X, height - crown * 0.55, Z)
        r = self.px(crown * 0.55, Z)
        n = 28
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        wobble = 1 + 0.18 * np.cumsum(rng.normal(0, 0.35, n)) / np.sqrt(n)
        wobble -= 0.18 * np.linspace(0, 1, n) * (wobble[-1] - wobble[0])
        crown_poly = np.stack([cx + r * wobble * np.cos(t), cy + 1.1 * r * wobble * np.sin(t)], 1)
        trunk = _segment(base, top, max(trunk_w, 1.0))
        self.shape("vegetation", _union_outline([trunk, crown_poly]), style)
        bark = self.canvas.style(_pick(rng, ((80, 60, 45), (70, 65, 60)), 8), TEX_CYLINDER, 0.3)
        self.detail(_segment(base, (base[0], cy + r * 0.6), max(trunk_w, 1.0)), bark)

    def _side_facades(self, side: int) -> None:
        rng = self.rng
        x = self.facade_x(side)
        z = self.z_end
        segments = []
        while z > 0.6:
            length = rng.uniform(8, 30)
            segments.append((max(z - length, 0.5), z))
            z -= length
        for z_near, z_far in segments:  # far to near
            kind = rng.random()
            if kind < 0.72:
                self._building(side, x, z_near, z_far, rng.uniform(7, 26))
            else:  # a park: a hedge with trees
                style = self.canvas.style(_pick(rng, _GREENS, 14), TEX_FOLIAGE, rng.uniform(0.35, 0.6))
                h = rng.uniform(2.0, 4.0)
                zs = np.linspace(z_far, z_near, 12)
                hs = h * (1 + 0.25 * rng.normal(size=12))
                top = self.project(x, hs, zs)
                bottom = self.project(x, 0.0, zs[::-1])
                self.shape("vegetation", np.concatenate([top, bottom]), style)
                for zt in np.arange(z_far - 3, z_near + 2, -rng.uniform(5, 9)):
                    self._tree(x + side * rng.uniform(0, 2), zt, rng.uniform(6, 11), rng.uniform(3, 6))

    def _end_of_street(self) -> None:
        """Buildings and trees that close the view at the far end of the street."""
        rng = self.rng
        z = self.z_end
        x = self.facade_x(-1) - 30
        while x < self.facade_x(1) + 30:
            w = rng.uniform(6, 20)
            # never taller than ~12 % of the image above the horizon, so the sky stays visible
            h_max = (self.horizon - 0.12 * self.H) * z / self.f + self.CAM_HEIGHT
            h = min(rng.uniform(5, 25), max(h_max, 3.0))
            if rng.random() < 0.7 or z < 300:
                quad = self.project([x, x + w, x + w, x], [0, 0, h, h], z)
                self.shape("building", quad,
                           self.canvas.style(_pick(rng, _FACADES, 15), TEX_PLASTER, 0.12))
            else:
                self.shape("vegetation", self.project([x, x + w, x + w * 0.8, x + w * 0.2],
                                                      [0, 0, h * 0.5, h * 0.5], z),
                           self.canvas.style(_pick(rng, _GREENS, 14), TEX_FOLIAGE, 0.45))
            x += w

    def _barriers(self, side: int, want: dict[str, bool]) -> None:
        """Walls and fences along the outer edge of a sidewalk (in front of verge and facades)."""
        rng = self.rng
        walk = self.walk_left if side < 0 else self.walk_right
        for label, wanted in (("wall", want["wall"]), ("fence", want["fence"])):
            if not wanted or (side == 1 and rng.random() < 0.5):
                continue
            z_far = rng.uniform(15, 45)
            z_near = max(rng.uniform(self.z_bottom * 0.8, z_far * 0.6), 0.6)
            if label == "wall":
                h = rng.uniform(0.8, 2.6)
                style = self.canvas.style(_pick(rng, _FACADES + _GREYS, 12), TEX_BRICK,
                                          rng.uniform(0.2, 0.4), period=rng.uniform(0.2, 0.35),
                                          plane_x=walk)
            else:
                h = rng.uniform(1.0, 2.0)
                style = self.canvas.style(_pick(rng, _GREYS + ((90, 110, 80), (120, 90, 60)), 12),
                                          TEX_SLATS, rng.uniform(0.35, 0.6),
                                          period=rng.uniform(0.12, 0.25), plane_x=walk)
            self.shape(label, self.side_quad(walk, 0.0, h, z_far, z_near), style)
            if label == "fence":  # posts
                post = self.canvas.style(_pick(rng, _GREYS, 8), TEX_FLAT, 0.2)
                for z in np.arange(z_near + 0.5, z_far - 0.2, 2.5):
                    self.detail(self.side_quad(walk, 0.0, h, z, z + 0.12), post)

    # --- standing objects ----------------------------------------------------------------------
    def _populate(self, want: dict[str, bool], tram_x: float | None) -> None:
        rng = self.rng
        add = self.standing.append
        order = iter(range(10_000))

        def sidewalk_x(side=None) -> float:
            side = int(rng.choice([-1, 1])) if side is None else side
            lo, hi = ((self.walk_left + 0.4, self.road_left - 0.3) if side < 0
                      else (self.road_right + 0.3, self.walk_right - 0.4))
            return rng.uniform(lo, hi)

        def lane_x() -> float:
            return rng.uniform(self.road_left + 1.3, self.road_right - 1.3)

        for _ in range(rng.integers(2, 6)):  # poles at the curbs with signs / lights / lamps
            side = int(rng.choice([-1, 1]))
            x = (self.road_left - 0.5) if side < 0 else (self.road_right + 0.5)
            z = self.random_depth(1.6, 50)
            add((z, next(order), lambda x=x, z=z, s=side: self.pole(x, z, s)))
        for _ in range(rng.integers(0, 4)):  # street trees
            z = self.random_depth(1.5, 60)
            add((z, next(order), lambda x=sidewalk_x(), z=z: self._tree(
                x, z, rng.uniform(5, 10), rng.uniform(2.5, 5))))
        for _ in range(rng.integers(1, 6)):
            z = self.random_depth(1.3, 45)
            x = sidewalk_x() if rng.random() < 0.8 else lane_x()
            add((z, next(order), lambda x=x, z=z: self.person(x, z)))
        for _ in range(rng.integers(1, 5)):
            z = self.random_depth(1.2, 70)
            x = lane_x() if rng.random() < 0.7 else (self.road_left + 1.0 if rng.random() < 0.5
                                                     else self.road_right - 1.0)
            add((z, next(order), lambda x=x, z=z: self.vehicle("car", x, z)))
        for label in ("truck", "bus"):
            if want[label]:
                z = self.random_depth(1.5, 60)
                add((z, next(order), lambda x=lane_x(), z=z, lab=label: self.vehicle(lab, x, z)))
        if want["train"]:
            z = self.random_depth(1.8, 50)
            add((z, next(order), lambda z=z: self.vehicle("train", tram_x, z)))
        if want["rider"]:
            for _ in range(rng.integers(1, 3)):
                z = self.random_depth(1.3, 35)
                two = "motorcycle" if rng.random() < 0.4 else "bicycle"
                add((z, next(order), lambda x=lane_x(), z=z, t=two: self.two_wheeler(t, x, z, True)))
        for label in ("bicycle", "motorcycle"):
            if want[label]:
                z = self.random_depth(1.3, 30)
                add((z, next(order), lambda x=sidewalk_x(), z=z, lab=label:
                     self.two_wheeler(lab, x, z, False)))
        for _ in range(rng.integers(0, 3)):  # void objects: bins, benches (static), carts (dynamic)
            z = self.random_depth(1.4, 40)
            label = "static" if rng.random() < 0.7 else "dynamic"
            add((z, next(order), lambda x=sidewalk_x(), z=z, lab=label: self.box_object(lab, x, z)))

    def draw_standing(self) -> None:
        for _, _, draw in sorted(self.standing, key=lambda item: (-item[0], item[1])):
            draw()
        self.standing.clear()

    def pole(self, X: float, Z: float, side: int, kinds: Iterable[str] | None = None) -> None:
        rng = self.rng
        h = rng.uniform(3.2, 7.0)
        w = rng.uniform(0.1, 0.22)
        base, top = self.project(X, 0.0, Z), self.project(X, h, Z)
        style = self.canvas.style(_pick(rng, _GREYS + ((60, 80, 60),), 10), TEX_CYLINDER, 0.4)
        parts = [_segment(base, top, max(self.px(w, Z), 1.0))]
        arm_end = None
        if rng.random() < 0.3:  # an arm over the road
            arm_end = self.project(X - side * rng.uniform(1.5, 4.0), h - 0.2, Z)
            parts.append(_segment(self.project(X, h - 0.2, Z), arm_end, max(self.px(w * 0.7, Z), 1.0)))
        self.shape("pole", _union_outline(parts), style)
        if kinds is None:
            r = rng.random()
            kinds = ["traffic sign"] if r < 0.45 else ["traffic light"] if r < 0.8 else \
                ["traffic sign", "traffic light"] if r < 0.92 else []
        for i, kind in enumerate(kinds):
            y = h - 0.5 - i * 1.3
            anchor_x = X
            if kind == "traffic light" and arm_end is not None:
                anchor_x, y = X - side * (np.hypot(*(arm_end - top)) * Z / self.f), h - 0.7
            if kind == "traffic sign":
                self.traffic_sign(anchor_x, y, Z)
            else:
                self.traffic_light(anchor_x, y, Z)

    def traffic_sign(self, X: float, Y: float, Z: float) -> None:
        rng = self.rng
        size = rng.uniform(0.55, 0.9)
        cx, cy = self.project(X, Y, Z)
        r = max(self.px(size / 2, Z), 1.5)
        shape = rng.integers(4)
        if shape == 0:
            poly = _polygon_circle(cx, cy, r)
        elif shape == 1:
            poly = np.array([(cx, cy + r), (cx - r * 1.1, cy - r * 0.8), (cx + r * 1.1, cy - r * 0.8)])
        elif shape == 2:
            poly = np.array([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)])
        else:
            poly = np.array([(cx - r * 1.2, cy - r * 0.7), (cx + r * 1.2, cy - r * 0.7),
                             (cx + r * 1.2, cy + r * 0.7), (cx - r * 1.2, cy + r * 0.7)])
        rim_rgb, face_rgb = [((200, 30, 30), (235, 235, 230)), ((30, 70, 160), (40, 90, 180)),
                             ((230, 200, 40), (240, 240, 235)), ((235, 235, 230), (30, 90, 170)),
                             ((120, 120, 125), (150, 150, 155))][rng.integers(5)]
        self.shape("traffic sign", poly, self.canvas.style(
            np.asarray(rim_rgb) + rng.normal(0, 8, 3), TEX_FLAT, 0.1))
        centre = poly.mean(axis=0)
        self.detail(centre + (poly - centre) * 0.7,
                    self.canvas.style(np.asarray(face_rgb) + rng.normal(0, 8, 3), TEX_FLAT, 0.1))
        if r > 4:  # a pictogram
            self.detail(_segment(centre - (r * 0.3, 0), centre + (r * 0.3, 0), r * 0.18),
                        self.canvas.style((30, 30, 30), TEX_FLAT, 0.1))

    def traffic_light(self, X: float, Y: float, Z: float) -> None:
        rng = self.rng
        w, h = rng.uniform(0.3, 0.4), rng.uniform(0.85, 1.05)
        x0, y0 = self.project(X - w / 2, Y + h / 2, Z)
        x1, y1 = self.project(X + w / 2, Y - h / 2, Z)
        x1, y1 = max(x1, x0 + 1.5), max(y1, y0 + 2.5)
        housing = [(45, 45, 45), (60, 70, 50), (200, 170, 40)][rng.integers(3)]
        self.shape("traffic light", [(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
                   self.canvas.style(np.asarray(housing) + rng.normal(0, 8, 3), TEX_FLAT, 0.15))
        lit = rng.integers(3)
        r = (x1 - x0) * 0.32
        if r >= 1.0:
            for i, colour in enumerate(((230, 40, 30), (240, 180, 20), (40, 220, 90))):
                c = np.asarray(colour, float) if i == lit else np.asarray(colour, float) * 0.3 + 20
                cy = y0 + (y1 - y0) * (i + 0.5) / 3
                self.detail(_polygon_circle((x0 + x1) / 2, cy, r), self.canvas.style(c, TEX_FLAT, 0.05))

    def person(self, X: float, Z: float, label: str = "person") -> None:
        rng = self.rng
        h = rng.uniform(1.55, 1.95)
        s = rng.uniform(0.0, 0.09)  # stride
        arm = rng.uniform(0.0, 0.05)
        # a standing silhouette in units of body height (x right, y up), traced as one polygon
        outline = np.array([
            (-0.06 - s - 0.05, 0.0), (-0.06 - s + 0.05, 0.0), (0.0, 0.42), (0.06 + s - 0.05, 0.0),
            (0.06 + s + 0.05, 0.0), (0.1, 0.48), (0.13 + arm, 0.45), (0.17 + arm, 0.47),
            (0.15, 0.78), (0.05, 0.83), (0.045, 0.855),
            *[(0.068 * math.cos(t), 0.91 + 0.068 * math.sin(t))
              for t in np.linspace(-0.9, math.pi + 0.9, 12)],
            (-0.045, 0.855), (-0.05, 0.83), (-0.15, 0.78), (-0.17 - arm, 0.47), (-0.13 - arm, 0.45),
            (-0.1, 0.48),
        ])
        if rng.random() < 0.5:
            outline[:, 0] *= -1
        self._billboard(label, X, Z, outline * h, self.canvas.style(
            _pick(rng, _CLOTHES, 15), TEX_CLOTH, rng.uniform(0.25, 0.45)))
        legs = np.array([(-0.06 - s - 0.05, 0.0), (-0.06 - s + 0.05, 0.0), (0.0, 0.42),
                         (0.06 + s - 0.05, 0.0), (0.06 + s + 0.05, 0.0), (0.1, 0.49), (-0.1, 0.49)])
        self._billboard(None, X, Z, legs * h, self.canvas.style(
            _pick(rng, _CLOTHES, 15), TEX_CLOTH, rng.uniform(0.25, 0.45)))
        skin = _pick(rng, ((225, 185, 160), (180, 130, 100), (120, 85, 60)), 10)
        head = np.array([(0.06 * math.cos(t), 0.905 + 0.06 * math.sin(t))
                         for t in np.linspace(0, 2 * math.pi, 10, endpoint=False)])
        self._billboard(None, X, Z, head * h, self.canvas.style(skin, TEX_FLAT, 0.1))
        hair = np.array([(0.065 * math.cos(t), 0.91 + 0.065 * math.sin(t))
                         for t in np.linspace(0, math.pi, 7)])
        self._billboard(None, X, Z, hair * h, self.canvas.style(
            _pick(rng, ((40, 30, 25), (90, 60, 30), (160, 130, 80), (20, 20, 20)), 8), TEX_FLAT, 0.1))

    def _billboard(self, label: str | None, X: float, Z: float, local: np.ndarray, style: int):
        """Draw a flat shape given in metres (x right, y up) standing on the ground at (X, Z)."""
        pts = self.project(X + local[:, 0], local[:, 1], Z)
        if label is None:
            self.detail(pts, style)
        else:
            self.shape(label, pts, style)
        return pts

    def two_wheeler(self, kind: str, X: float, Z: float, ridden: bool) -> None:
        rng = self.rng
        facing = 1 if rng.random() < 0.5 else -1
        r = 0.34 if kind == "bicycle" else 0.31
        half = 0.52 if kind == "bicycle" else 0.7
        u0, v0 = self.project(X, 0.0, Z)
        k = self.f / Z

        def p(x, y):  # metres in the bike's frame -> pixels
            return (u0 + facing * x * k, v0 - y * k)

        rear, front = np.array(p(-half, r)), np.array(p(half, r))
        rad = max(r * k, 1.5)
        thick = max(0.05 * k, 1.0)
        seat, bars = np.array(p(-0.18, 0.95)), np.array(p(half - 0.12, 1.05))
        crank = np.array(p(0.0, 0.3))
        wheels = [_polygon_circle(*rear, rad), _polygon_circle(*front, rad)]
        if kind == "bicycle":
            frame = [_segment(rear, seat, thick), _segment(seat, bars, thick),
                     _segment(rear, crank, thick), _segment(crank, seat, thick),
                     _segment(crank, bars, thick), _segment(bars, front, thick)]
            colour = _pick(rng, _PAINTS, 15)
        else:
            body = np.array([p(-half * 0.9, 0.55), p(-0.1, 0.95), p(half * 0.7, 0.95),
                             p(half * 0.8, 0.45), p(0.1, 0.3)])
            frame = [body, _segment(np.array(p(half * 0.6, 0.9)), bars, thick * 1.5),
                     _segment(bars, front, thick * 1.5)]
            colour = _pick(rng, _PAINTS, 15)
        self.shape(kind, _union_outline(wheels + frame), self.canvas.style(colour * 0.6, TEX_FLAT, 0.2))
        tyre = self.canvas.style((25, 25, 28), TEX_FLAT, 0.15)
        spokes = self.canvas.style((150, 150, 155), TEX_FLAT, 0.6)
        for centre, wheel in zip((rear, front), wheels, strict=True):
            self.detail(wheel, tyre)
            if rad * 0.75 >= 1:
                self.detail(_polygon_circle(*centre, rad * (0.78 if kind == "bicycle" else 0.55)),
                            spokes)
        paint = self.canvas.style(colour, TEX_METAL if kind == "motorcycle" else TEX_FLAT, 0.3)
        for part in frame:
            self.detail(part, paint)
        if ridden:
            lean = 0.1 if kind == "bicycle" else 0.05
            local = np.array([(-0.28, 0.88), (-0.1, 0.85), (0.05, 0.5), (0.12, 0.3), (0.2, 0.3),
                              (0.15, 0.6), (0.02, 0.95), (half - 0.1, 1.05), (half - 0.12, 1.12),
                              (0.05 + lean, 1.35), (0.03 + lean, 1.45),
                              *[(lean - 0.02 + 0.11 * math.cos(t), 1.56 + 0.11 * math.sin(t))
                                for t in np.linspace(-0.8, math.pi + 0.8, 9)],
                              (-0.12 + lean, 1.45), (-0.3, 1.1)])
            pts = np.array([p(x, y) for x, y in local])
            self.shape("rider", pts, self.canvas.style(_pick(rng, _CLOTHES, 15), TEX_CLOTH,
                                                       rng.uniform(0.25, 0.45)))
            if kind == "motorcycle" or rng.random() < 0.5:  # helmet
                self.detail(_polygon_circle(*p(lean - 0.02, 1.57), 0.1 * k),
                            self.canvas.style(_pick(rng, _PAINTS, 10), TEX_METAL, 0.3))

    def vehicle(self, kind: str, X: float, Z: float) -> None:
        """A box-shaped vehicle whose rear (or, for a tram, front) face is at depth Z."""
        rng = self.rng
        dims = {"car": ((1.65, 1.9), (1.35, 1.6), (3.9, 4.8)),
                "truck": ((2.3, 2.55), (2.9, 3.8), (6.5, 10.0)),
                "bus": ((2.5, 2.55), (2.9, 3.3), (11.0, 13.0)),
                "train": ((2.4, 2.65), (3.3, 3.6), (25.0, 35.0))}[kind]
        w, h, length = (rng.uniform(*d) for d in dims)
        x0, x1, z0, z1 = X - w / 2, X + w / 2, Z, Z + length

        def corners(xa, xb, ya, yb, za, zb):
            xs, ys, zs = np.meshgrid([xa, xb], [ya, yb], [za, zb], indexing="ij")
            return self.project(xs.ravel(), ys.ravel(), zs.ravel())

        def hull(points):
            return cv2.convexHull(np.round(points).astype(np.int32)).reshape(-1, 2)

        if kind == "car":
            body_h = h * rng.uniform(0.5, 0.6)
            inset = w * 0.08
            cabin = (x0 + inset, x1 - inset, body_h, h, z0 + length * 0.22, z1 - length * 0.3)
            body = corners(x0, x1, 0.0, body_h, z0, z1)
            outline = hull(np.concatenate([body, corners(*cabin)]))
            palette, texture = _PAINTS, TEX_METAL
        elif kind == "truck":
            cab_h = h * 0.8
            outline = hull(np.concatenate([corners(x0, x1, 0.0, h, z0, z1 - 2.4),
                                           corners(x0, x1, 0.0, cab_h, z1 - 2.3, z1)]))
            palette, texture = _PAINTS + _FACADES[:3], TEX_METAL
        else:
            outline = hull(corners(x0, x1, 0.0, h, z0, z1))
            palette = ((230, 200, 40), (200, 40, 40), (235, 235, 230), (40, 90, 170), (60, 150, 80))
            texture = TEX_METAL
        colour = _pick(rng, palette, 14)
        style = self.canvas.style(colour, texture, rng.uniform(0.2, 0.35))
        self.shape(kind, outline, style)
        dark = self.canvas.style((22, 22, 25), TEX_FLAT, 0.1)
        glass = self.canvas.style(_pick(rng, ((40, 50, 60), (60, 70, 85), (25, 30, 35)), 6),
                                  TEX_GLASS, 0.4)
        side_x = x0 if X > 0 else x1  # the side the camera sees

        # wheels on the visible side, and the tyres under the near face
        wheel_r = 0.33 if kind == "car" else 0.5
        for zw in (z0 + length * 0.18, z1 - length * 0.18):
            t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
            self.detail(self.project(side_x, wheel_r + wheel_r * np.sin(t), zw + wheel_r * np.cos(t)),
                        dark)
        for xt in (x0 + 0.05, x1 - 0.3):
            self.detail(self.project([xt, xt + 0.25, xt + 0.25, xt], [0, 0, 0.35, 0.35], z0), dark)
        if kind == "car":
            self.detail(hull(corners(*cabin)), glass)
            self.detail(self.project([x0 + 0.1, x0 + 0.35, x0 + 0.35, x0 + 0.1],
                                     [body_h * 0.7, body_h * 0.7, body_h * 0.9, body_h * 0.9], z0),
                        self.canvas.style((200, 30, 30), TEX_FLAT, 0.1))
            self.detail(self.project([x1 - 0.35, x1 - 0.1, x1 - 0.1, x1 - 0.35],
                                     [body_h * 0.7, body_h * 0.7, body_h * 0.9, body_h * 0.9], z0),
                        self.canvas.style((200, 30, 30), TEX_FLAT, 0.1))
            self.detail(self.project([X - 0.26, X + 0.26, X + 0.26, X - 0.26],
                                     [0.35, 0.35, 0.47, 0.47], z0),
                        self.canvas.style((230, 230, 225), TEX_FLAT, 0.05))
        elif kind == "truck":
            rib = self.canvas.style(colour * 0.7, TEX_FLAT, 0.1)
            for xr in np.linspace(x0 + 0.2, x1 - 0.2, 5):
                self.detail(self.project([xr - 0.03, xr + 0.03, xr + 0.03, xr - 0.03],
                                         [0.5, 0.5, h - 0.1, h - 0.1], z0), rib)
            for zr in np.arange(z0 + 0.6, z1 - 2.4, 0.8):
                self.detail(self.side_quad(side_x, 0.5, h - 0.1, zr, zr + 0.08), rib)
        else:  # bus and tram: a band of windows along the side and a big window at the end
            y_lo, y_hi = (1.15, h - 0.35) if kind == "bus" else (1.2, h - 0.6)
            self.detail(self.project([x0 + 0.15, x1 - 0.15, x1 - 0.15, x0 + 0.15],
                                     [y_lo, y_lo, y_hi, y_hi], z0), glass)
            step = 1.4 if kind == "bus" else 1.1
            for zs in np.arange(z0 + 0.6, z1 - 0.6, step):
                self.detail(self.side_quad(side_x, y_lo, y_hi, zs, zs + step * 0.82), glass)
            if kind == "train":
                stripe = self.canvas.style(_pick(rng, ((200, 40, 40), (30, 30, 30), (40, 90, 170)), 8),
                                           TEX_FLAT, 0.1)
                self.detail(self.side_quad(side_x, 0.75, 1.0, z0, z1), stripe)
                self.detail(self.project([x0, x1, x1, x0], [0.75, 0.75, 1.0, 1.0], z0), stripe)
                lamp = self.canvas.style((250, 245, 220), TEX_FLAT, 0.05)
                for xl in (x0 + 0.3, x1 - 0.55):
                    self.detail(self.project([xl, xl + 0.25, xl + 0.25, xl], [0.45, 0.45, 0.6, 0.6],
                                             z0), lamp)

    def box_object(self, label: str, X: float, Z: float) -> None:
        """A small void object: a bin, bench or post box (static) or a cart / stroller (dynamic)."""
        rng = self.rng
        w, h = rng.uniform(0.5, 1.6), rng.uniform(0.6, 1.2)
        local = np.array([(-w / 2, 0), (w / 2, 0), (w / 2, h), (-w / 2, h)])
        self._billboard(label, X, Z, local, self.canvas.style(
            _pick(rng, _PAINTS + _GREYS, 15), TEX_METAL, 0.25))

    # --- void border, ego vehicle, forced classes ----------------------------------------------
    def ego_and_borders(self) -> None:
        rng, H, W = self.rng, self.H, self.W
        depth = H * rng.uniform(0.06, 0.13)
        self.ego_top = H - depth
        x = np.linspace(-0.02 * W, 1.02 * W, 33)
        bulge = 1 - 0.5 * ((x - W / 2) / (W / 2)) ** 2
        hood = np.concatenate([np.stack([x, H - depth * bulge], 1), [(1.02 * W, H + 5), (-0.02 * W, H + 5)]])
        paint = _pick(rng, ((25, 25, 30), (190, 190, 195), (30, 40, 80), (110, 110, 115)), 8)
        self.shape("ego vehicle", hood, self.canvas.style(paint, TEX_METAL, 0.3))
        self.detail(np.concatenate([np.stack([x, H - depth * bulge + 2], 1),
                                    np.stack([x[::-1], H - depth * bulge[::-1] + depth * 0.25], 1)]),
                    self.canvas.style(np.asarray(paint) * 0.6 + 80, TEX_METAL, 0.3))
        # the black wedges left by rectification, and a thin out-of-roi frame
        b = max(1.0, W * rng.uniform(0.004, 0.012))
        black = self.canvas.style((0, 0, 0), TEX_FLAT, 0.0)
        self.shape("rectification border", [(-1, -1), (b * 0.4, -1), (b, H), (-1, H)], black)
        self.shape("rectification border", [(W, -1), (W - b * 0.4, -1), (W - b, H), (W, H)], black)
        edge = max(1, round(W * 0.0025))
        for quad in ([(-1, -1), (W, -1), (W, edge - 1), (-1, edge - 1)],
                     [(-1, H - edge), (W, H - edge), (W, H), (-1, H)],
                     [(-1, -1), (edge - 1, -1), (edge - 1, H), (-1, H)],
                     [(W - edge, -1), (W, -1), (W, H), (W - edge, H)]):
            self.shape("out of roi", quad, black)

    def force(self, label: str, attempt: int) -> None:
        """Add a clearly visible object of ``label`` in front of the scene (after every other
        standing object), used when the random scene happened to hide or omit it."""
        rng = self.rng
        # stay above the ego vehicle: ground at row ego_top - margin has depth z_min
        margin = 0.04 * self.H
        z_min = self.f * self.CAM_HEIGHT / max(self.ego_top - margin - self.horizon, 1.0)
        Z = z_min * (1.6 - 0.2 * attempt) * rng.uniform(1.0, 1.4)
        # ... and far enough that the top of a tall object stays inside the image
        top = {"pole": 7.2, "traffic sign": 7.2, "traffic light": 7.2, "vegetation": 5.0,
               "truck": 3.9, "bus": 3.4, "train": 4.5}.get(label, 2.0)
        Z = max(Z, self.f * (top - self.CAM_HEIGHT) / max(self.horizon - 0.08 * self.H, 1.0))
        X = self.lateral_on_screen(Z, 0.2)
        if label in ("car", "truck", "bus", "train"):
            self.vehicle(label, X, Z)
        elif label in ("person",):
            self.person(X, Z)
        elif label in ("rider", "bicycle", "motorcycle"):
            self.two_wheeler("bicycle" if label == "rider" else label, X, Z, label == "rider")
        elif label in ("pole", "traffic sign", "traffic light"):
            kinds = [] if label == "pole" else [label]
            self.pole(X, Z, 1 if X < 0 else -1, kinds)
        elif label == "vegetation":
            self._tree(X, Z, rng.uniform(3, 5), rng.uniform(1.5, 2.5))
        else:  # stuff classes: a small patch of that class standing at (X, Z)
            texture = {"wall": TEX_BRICK, "fence": TEX_SLATS, "terrain": TEX_GRASS,
                       "building": TEX_PLASTER, "road": TEX_ASPHALT, "sidewalk": TEX_TILES,
                       "sky": TEX_SKY}[label]
            family = {"terrain": _GREENS, "sky": ((120, 160, 210),)}.get(label, _FACADES + _GREYS)
            w = rng.uniform(1.5, 3.0)
            h = {"terrain": 0.05, "road": 0.05, "sidewalk": 0.05}.get(label, rng.uniform(1.0, 2.0))
            if h < 0.1:  # flat patches lie on the ground
                poly = self.ground_quad(X - w / 2, X + w / 2, Z, Z + w)
            else:
                poly = self.project(X + np.array([-w / 2, w / 2, w / 2, -w / 2]),
                                    np.array([0, 0, h, h]), Z)
            self.shape(label, poly, self.canvas.style(_pick(rng, family, 12), texture, 0.3,
                                                      period=0.15 if label == "fence" else 0.25))


# --- rendering ----------------------------------------------------------------------------------

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


def _rasterize(items: list[_Item], height: int, width: int):
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


def _shade(rng: np.random.Generator, street: _Street, style_map: np.ndarray) -> np.ndarray:
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
    street = _Street(rng, height, width)
    street.build(required)
    street.draw_standing()
    scene_items = list(street.canvas.items)
    street.canvas.items.clear()
    street.ego_and_borders()
    frame_items = list(street.canvas.items)
    street.canvas.items.clear()
    forced: list[_Item] = []
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


# --- writing a dataset --------------------------------------------------------------------------

def quota_classes(index: int, n_images: int) -> tuple[str, ...]:
    """The rarer classes image ``index`` of a split with ``n_images`` images must show:
    :data:`QUOTA_CLASSES` dealt round-robin, so the split as a whole shows all of them."""
    return tuple(name for j, name in enumerate(QUOTA_CLASSES) if j % n_images == index % n_images)


def image_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The random stream of one image: depends only on (seed, split, index)."""
    return np.random.SeedSequence([seed, _SPLIT_CODE[split], index])


def cityscapes_stem(split: str, index: int) -> tuple[str, str]:
    """(city, stem) of image ``index`` of ``split``: cities in turn, sequence numbers counting up."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_{ANNOTATED_FRAME:06d}"


def _encode_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise GsbenchError(f"could not encode an image of shape {rgb.shape} as JPEG")
    return buf.tobytes()


def _write_image(job: tuple) -> tuple[str, int, list[int]]:
    out, layout, split, index, n_split, seed, height, width = job
    out = Path(out)
    rng = np.random.default_rng(image_seed(seed, split, index))
    scene = render_scene(rng, height, width, required=quota_classes(index, n_split))
    if layout == "cityscapes":
        city, stem = cityscapes_stem(split, index)
        image_dir = out / "leftImg8bit" / split / city
        gt_dir = out / "gtFine" / split / city
        atomic_write_bytes(image_dir / f"{stem}_leftImg8bit.png", encode_png(scene.rgb))
        atomic_write_bytes(gt_dir / f"{stem}_gtFine_labelIds.png", encode_png(scene.label_ids))
        atomic_write_bytes(gt_dir / f"{stem}_gtFine_instanceIds.png", encode_png(scene.instance_ids))
        atomic_write_bytes(gt_dir / f"{stem}_gtFine_color.png",
                           encode_png(CITYSCAPES_ID_TO_COLOR[scene.label_ids]))
        atomic_write_json(gt_dir / f"{stem}_gtFine_polygons.json", {
            "imgHeight": height, "imgWidth": width,
            "objects": [dict(obj, id=i, deleted=0, verified=0, date="", user="gsbench-synthetic")
                        for i, obj in enumerate(scene.polygons)],
        })
    else:
        folder = {"train": "training", "val": "validation"}[split]
        stem = f"ADE_{split}_{index + 1:08d}"
        base = out / "ADEChallengeData2016"
        atomic_write_bytes(base / "images" / folder / f"{stem}.jpg", _encode_jpeg(scene.rgb))
        atomic_write_bytes(base / "annotations" / folder / f"{stem}.png",
                           encode_png(CITYSCAPES_ID_TO_ADE20K[scene.label_ids]))
    counts = np.bincount(scene.label_ids.ravel(), minlength=256)[:34]
    return split, index, counts.tolist()


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _run(jobs: list[tuple], workers: int) -> Iterator[tuple[str, int, list[int]]]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _write_image(job)
        return
    # forkserver: children do not inherit the parent's threads (torch, OpenCV) as fork would
    context = multiprocessing.get_context("forkserver")
    with context.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_write_image, jobs)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HEIGHTxWIDTH`` (e.g. ``256x512``) or raise a one-line GsbenchError."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise GsbenchError(f"--size {text!r}: expected HEIGHTxWIDTH, e.g. 256x512")
    height, width = (int(p) for p in parts)
    check_size((height, width))
    return height, width


def check_size(size: tuple[int, int]) -> None:
    height, width = size
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        raise GsbenchError(f"--size {height}x{width}: height and width must be between "
                           f"{MIN_SIZE} and {MAX_SIZE}")


def _claim_output(out: Path, settings: dict[str, Any]) -> None:
    """Make ``out`` ready for writing: an empty or new folder, or an earlier synthetic output
    (recognised by its marker file), whose generated sub-folders are removed first."""
    if out.exists() and not out.is_dir():
        raise GsbenchError(f"{out}: exists and is not a folder")
    marker = out / MARKER_NAME
    if out.is_dir() and any(out.iterdir()):
        previous = read_json(marker) if marker.is_file() else None
        if not isinstance(previous, dict) or previous.get("format") != MARKER_FORMAT:
            raise GsbenchError(f"{out}: folder is not empty and is not a synthetic dataset "
                               f"(no {MARKER_NAME}); choose an empty or new --out")
        for name in ("leftImg8bit", "gtFine", "ADEChallengeData2016", "gsbench"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    # the marker goes first (complete: false), so an interrupted run can be regenerated in place
    atomic_write_json(marker, {"format": MARKER_FORMAT, **settings, "complete": False})


def generate_synthetic(
    out: str | os.PathLike,
    *,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    layout: str = "cityscapes",
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """Write a synthetic dataset in the raw Cityscapes (or ADE20K) layout into ``out``.

    Returns the raw dataset root to prepare: ``out`` for Cityscapes, ``out/ADEChallengeData2016``
    for ADE20K. Every split contains all 19 Cityscapes evaluation classes. The same arguments
    give byte-identical files whatever ``workers`` is.
    """
    if layout not in LAYOUTS:
        raise GsbenchError(f"--layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if n_train < 1:
        raise GsbenchError(f"--n-train {n_train}: need at least 1 training image")
    if n_val < 1:
        raise GsbenchError(f"--n-val {n_val}: need at least 1 validation image")
    if seed < 0:
        raise GsbenchError(f"--seed {seed}: must be >= 0")
    if workers < 1:
        raise GsbenchError(f"--workers {workers}: must be >= 1")
    height, width = (int(s) for s in size)
    check_size((height, width))
    out = Path(out).expanduser()
    settings = {"layout": layout, "n_train": n_train, "n_val": n_val,
                "size": [height, width], "seed": seed}
    _claim_output(out, settings)
    counts = {"train": n_train, "val": n_val}
    jobs = [(str(out), layout, split, i, counts[split], seed, height, width)
            for split in SPLITS for i in range(counts[split])]
    results = []
    with _progress_bar(progress, len(jobs), "synthetic images") as advance:
        for result in _run(jobs, workers):
            results.append(result)
            advance()
    pixels = {split: np.zeros(34, np.int64) for split in SPLITS}
    for split, _, class_counts in results:
        pixels[split] += np.asarray(class_counts, np.int64)
    atomic_write_json(out / MARKER_NAME, {
        "format": MARKER_FORMAT, **settings, "complete": True,
        "label_id_pixels": {split: pixels[split].tolist() for split in SPLITS},
    })
    return out if layout == "cityscapes" else out / "ADEChallengeData2016"


def prepare_synthetic(
    out: str | os.PathLike,
    *,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    layout: str = "cityscapes",
    workers: int = 2,
    progress: bool = True,
):
    """Generate the synthetic dataset into ``out`` and prepare it like the real one, leaving
    ready-to-train data in ``<raw root>/gsbench`` (see :func:`generate_synthetic`). Returns the
    :class:`~gsbench.data.manifest.Manifest` of the prepared data."""
    from gsbench.data.prepare import prepare_raw

    root = generate_synthetic(out, n_train=n_train, n_val=n_val, size=size, seed=seed,
                              layout=layout, workers=workers, progress=progress)
    # a layout is named after the dataset whose raw layout it writes
    return prepare_raw(layout, root, None, workers=workers, progress=progress).manifest


class _progress_bar:
    """A rich progress bar on stderr when asked for and stderr is a terminal; else silent."""

    def __init__(self, enabled: bool, total: int, description: str):
        self.enabled = enabled and sys.stderr.isatty()
        self.total, self.description = total, description
        self._progress = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        task = self._progress.add_task(self.description, total=self.total)
        return lambda: self._progress.advance(task)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
        return False
