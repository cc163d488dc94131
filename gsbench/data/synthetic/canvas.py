"""What a synthetic scene is drawn with: the painter's list of polygons (:class:`Canvas`) with
the styles, textures and colour families of its polygons, polygon helpers, and the
:class:`Camera` that projects the world onto it.

Appearance comes from per-object styles: a base colour drawn from distributions that overlap
between classes (colour alone does not give the class) and a per-class texture signature, which
:mod:`gsbench.data.synthetic.render` turns into pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# --- textures -----------------------------------------------------------------------------------
# Each style names one of these; the texture gives a luminance modulation around its base colour.
TEX_FLAT, TEX_ASPHALT, TEX_TILES, TEX_PLASTER, TEX_FOLIAGE, TEX_GRASS, TEX_SKY, TEX_BRICK, \
    TEX_SLATS, TEX_CYLINDER, TEX_METAL, TEX_CLOTH, TEX_GLASS = range(13)


@dataclass
class Style:
    rgb: tuple[float, float, float]
    texture: int
    amplitude: float
    period: float = 0.5  # metres (tiles, bricks, slats on a plane) or pixels (screen space)
    plane_x: float = math.nan  # lateral position of the vertical plane the texture lies on
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x0, y0, x1, y1 (pixels)


@dataclass
class Item:
    polygon: np.ndarray  # N x 2 int32 pixel coordinates
    style: int
    label: str | None  # None: appearance-only detail (a window, a lane marking)


@dataclass
class Canvas:
    """Painter's list of polygons: labelled shapes and appearance-only details, drawn in order."""

    items: list[Item] = field(default_factory=list)
    styles: list[Style] = field(default_factory=lambda: [Style((0.0, 0.0, 0.0), TEX_FLAT, 0.0)])

    def style(self, rgb, texture: int, amplitude: float, **kwargs) -> int:
        self.styles.append(Style(tuple(float(c) for c in rgb), texture, amplitude, **kwargs))
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
        self.items.append(Item(poly, style, label))


def polygon_circle(cx, cy, rx, ry=None, n=None, start=0.0, stop=2 * math.pi):
    ry = rx if ry is None else ry
    if n is None:
        n = int(np.clip(max(rx, ry) * 1.5, 8, 48))
    t = np.linspace(start, stop, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def segment(p0, p1, width):
    """Quadrilateral of a thick line segment from p0 to p1."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9) * (width / 2)
    return np.stack([p0 + n, p1 + n, p1 - n, p0 - n])


def union_outline(parts: list[np.ndarray]) -> np.ndarray:
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
GREYS = ((70, 70, 72), (95, 95, 98), (120, 118, 115), (150, 148, 145), (180, 178, 172))
FACADES = ((196, 180, 150), (170, 150, 120), (150, 80, 60), (200, 200, 195), (130, 130, 135),
            (210, 190, 140), (120, 95, 80), (175, 175, 185), (160, 110, 90))
PAINTS = ((200, 200, 205), (30, 30, 35), (150, 20, 25), (30, 60, 140), (120, 125, 130),
           (230, 230, 225), (20, 70, 40), (180, 150, 60), (90, 90, 95), (110, 30, 60))
CLOTHES = ((40, 40, 50), (160, 30, 40), (30, 50, 120), (200, 190, 170), (90, 110, 60),
            (130, 130, 135), (220, 220, 220), (150, 90, 40), (60, 40, 30), (190, 120, 140))
GREENS = ((60, 90, 40), (85, 115, 45), (45, 70, 35), (110, 130, 60), (70, 100, 70),
           (130, 110, 50))


def pick(rng: np.random.Generator, family, jitter: float = 18.0) -> np.ndarray:
    base = np.asarray(family[rng.integers(len(family))], dtype=np.float64)
    return np.clip(base + rng.normal(0.0, jitter, 3), 8, 245)


# --- the camera ---------------------------------------------------------------------------------

class Camera:
    """A pinhole camera over flat ground, and the canvas it draws what it sees into.

    World coordinates in metres: X to the right, Y up from the ground, Z forward from the camera.
    A point projects to ``u = cx + f X / Z``, ``v = horizon + f (cam_height - Y) / Z``; horizon,
    principal point and focal length are drawn from ``rng``, the generator every object drawn
    through the camera takes its own draws from.
    """

    CAM_HEIGHT = 1.5

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng, self.H, self.W = rng, height, width
        self.horizon = height * rng.uniform(0.36, 0.46)
        self.cx = width * rng.uniform(0.42, 0.58)
        self.f = width * rng.uniform(0.55, 0.7)
        self.z_bottom = self.f * self.CAM_HEIGHT / (height - self.horizon)  # ground at last row
        self.canvas = Canvas()

    def project(self, X, Y, Z):
        X, Y, Z = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (X, Y, Z)))
        Z = np.maximum(Z, 0.05)
        return np.stack([self.cx + self.f * X / Z, self.horizon + self.f * (self.CAM_HEIGHT - Y) / Z],
                        axis=-1)

    def px(self, metres: float, Z: float) -> float:
        return self.f * metres / Z

    def ground_quad(self, x0, x1, z0, z1):
        return self.project([x0, x1, x1, x0], 0.0, [z0, z0, z1, z1])

    def side_quad(self, x, y0, y1, z0, z1):
        return self.project(x, [y0, y1, y1, y0], [z0, z0, z1, z1])

    def shape(self, label: str, polygon, style: int) -> None:
        """Draw a polygon of the Cityscapes class ``label`` (it goes into the label map)."""
        self.canvas.add(polygon, style, label)

    def detail(self, polygon, style: int) -> None:
        """Draw an appearance-only polygon (a window, a lane marking: no label of its own)."""
        self.canvas.add(polygon, style, None)
