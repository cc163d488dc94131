"""The objects that stand in a synthetic street: poles with traffic signs and lights, trees,
persons, two-wheelers (parked or ridden), cars, trucks, buses and trams, and small void objects.

Each is drawn at a ground position ``(X, Z)`` through a :class:`~.canvas.Camera`, so its size in
pixels follows ``f / Z``, with its random shape and style drawn from the camera's generator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

from gsbench.data.synthetic.canvas import (
    CLOTHES, FACADES, GREENS, GREYS, PAINTS, TEX_CLOTH, TEX_CYLINDER, TEX_FLAT, TEX_FOLIAGE,
    TEX_GLASS, TEX_METAL, Camera, pick, polygon_circle, segment, union_outline,
)


def tree(camera: Camera, X: float, Z: float, height: float, crown: float) -> None:
    """A tree ``height`` metres tall with a crown ``crown`` metres wide; trunk and crown are traced
    as one vegetation polygon, as an annotator would."""
    rng = camera.rng
    style = camera.canvas.style(pick(rng, GREENS, 14), TEX_FOLIAGE, rng.uniform(0.35, 0.6))
    trunk_w = camera.px(crown * 0.12, Z)
    base = camera.project(X, 0.0, Z)
    top = camera.project(X, height - crown, Z)
    cx, cy = camera.project(X, height - crown * 0.55, Z)
    r = camera.px(crown * 0.55, Z)
    n = 28
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    wobble = 1 + 0.18 * np.cumsum(rng.normal(0, 0.35, n)) / np.sqrt(n)
    wobble -= 0.18 * np.linspace(0, 1, n) * (wobble[-1] - wobble[0])
    crown_poly = np.stack([cx + r * wobble * np.cos(t), cy + 1.1 * r * wobble * np.sin(t)], 1)
    trunk = segment(base, top, max(trunk_w, 1.0))
    camera.shape("vegetation", union_outline([trunk, crown_poly]), style)
    bark = camera.canvas.style(pick(rng, ((80, 60, 45), (70, 65, 60)), 8), TEX_CYLINDER, 0.3)
    camera.detail(segment(base, (base[0], cy + r * 0.6), max(trunk_w, 1.0)), bark)


def pole(camera: Camera, X: float, Z: float, side: int, kinds: Iterable[str] | None = None) -> None:
    """A pole at the curb of ``side``, sometimes with an arm over the road, carrying ``kinds``
    (traffic sign, traffic light; drawn at random when None)."""
    rng = camera.rng
    h = rng.uniform(3.2, 7.0)
    w = rng.uniform(0.1, 0.22)
    base, top = camera.project(X, 0.0, Z), camera.project(X, h, Z)
    style = camera.canvas.style(pick(rng, GREYS + ((60, 80, 60),), 10), TEX_CYLINDER, 0.4)
    parts = [segment(base, top, max(camera.px(w, Z), 1.0))]
    arm_end = None
    if rng.random() < 0.3:  # an arm over the road
        arm_end = camera.project(X - side * rng.uniform(1.5, 4.0), h - 0.2, Z)
        parts.append(segment(camera.project(X, h - 0.2, Z), arm_end, max(camera.px(w * 0.7, Z), 1.0)))
    camera.shape("pole", union_outline(parts), style)
    if kinds is None:
        r = rng.random()
        kinds = ["traffic sign"] if r < 0.45 else ["traffic light"] if r < 0.8 else \
            ["traffic sign", "traffic light"] if r < 0.92 else []
    for i, kind in enumerate(kinds):
        y = h - 0.5 - i * 1.3
        anchor_x = X
        if kind == "traffic light" and arm_end is not None:
            anchor_x, y = X - side * (np.hypot(*(arm_end - top)) * Z / camera.f), h - 0.7
        if kind == "traffic sign":
            traffic_sign(camera, anchor_x, y, Z)
        else:
            traffic_light(camera, anchor_x, y, Z)


def traffic_sign(camera: Camera, X: float, Y: float, Z: float) -> None:
    rng = camera.rng
    size = rng.uniform(0.55, 0.9)
    cx, cy = camera.project(X, Y, Z)
    r = max(camera.px(size / 2, Z), 1.5)
    shape = rng.integers(4)
    if shape == 0:
        poly = polygon_circle(cx, cy, r)
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
    camera.shape("traffic sign", poly, camera.canvas.style(
        np.asarray(rim_rgb) + rng.normal(0, 8, 3), TEX_FLAT, 0.1))
    centre = poly.mean(axis=0)
    camera.detail(centre + (poly - centre) * 0.7,
                camera.canvas.style(np.asarray(face_rgb) + rng.normal(0, 8, 3), TEX_FLAT, 0.1))
    if r > 4:  # a pictogram
        camera.detail(segment(centre - (r * 0.3, 0), centre + (r * 0.3, 0), r * 0.18),
                    camera.canvas.style((30, 30, 30), TEX_FLAT, 0.1))


def traffic_light(camera: Camera, X: float, Y: float, Z: float) -> None:
    rng = camera.rng
    w, h = rng.uniform(0.3, 0.4), rng.uniform(0.85, 1.05)
    x0, y0 = camera.project(X - w / 2, Y + h / 2, Z)
    x1, y1 = camera.project(X + w / 2, Y - h / 2, Z)
    x1, y1 = max(x1, x0 + 1.5), max(y1, y0 + 2.5)
    housing = [(45, 45, 45), (60, 70, 50), (200, 170, 40)][rng.integers(3)]
    camera.shape("traffic light", [(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
               camera.canvas.style(np.asarray(housing) + rng.normal(0, 8, 3), TEX_FLAT, 0.15))
    lit = rng.integers(3)
    r = (x1 - x0) * 0.32
    if r >= 1.0:
        for i, colour in enumerate(((230, 40, 30), (240, 180, 20), (40, 220, 90))):
            c = np.asarray(colour, float) if i == lit else np.asarray(colour, float) * 0.3 + 20
            cy = y0 + (y1 - y0) * (i + 0.5) / 3
            camera.detail(polygon_circle((x0 + x1) / 2, cy, r), camera.canvas.style(c, TEX_FLAT, 0.05))


def person(camera: Camera, X: float, Z: float, label: str = "person") -> None:
    rng = camera.rng
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
    billboard(camera, label, X, Z, outline * h, camera.canvas.style(
        pick(rng, CLOTHES, 15), TEX_CLOTH, rng.uniform(0.25, 0.45)))
    legs = np.array([(-0.06 - s - 0.05, 0.0), (-0.06 - s + 0.05, 0.0), (0.0, 0.42),
                     (0.06 + s - 0.05, 0.0), (0.06 + s + 0.05, 0.0), (0.1, 0.49), (-0.1, 0.49)])
    billboard(camera, None, X, Z, legs * h, camera.canvas.style(
        pick(rng, CLOTHES, 15), TEX_CLOTH, rng.uniform(0.25, 0.45)))
    skin = pick(rng, ((225, 185, 160), (180, 130, 100), (120, 85, 60)), 10)
    head = np.array([(0.06 * math.cos(t), 0.905 + 0.06 * math.sin(t))
                     for t in np.linspace(0, 2 * math.pi, 10, endpoint=False)])
    billboard(camera, None, X, Z, head * h, camera.canvas.style(skin, TEX_FLAT, 0.1))
    hair = np.array([(0.065 * math.cos(t), 0.91 + 0.065 * math.sin(t))
                     for t in np.linspace(0, math.pi, 7)])
    billboard(camera, None, X, Z, hair * h, camera.canvas.style(
        pick(rng, ((40, 30, 25), (90, 60, 30), (160, 130, 80), (20, 20, 20)), 8), TEX_FLAT, 0.1))


def billboard(camera: Camera, label: str | None, X: float, Z: float, local: np.ndarray, style: int):
    """Draw a flat shape given in metres (x right, y up) standing on the ground at (X, Z)."""
    pts = camera.project(X + local[:, 0], local[:, 1], Z)
    if label is None:
        camera.detail(pts, style)
    else:
        camera.shape(label, pts, style)
    return pts


def two_wheeler(camera: Camera, kind: str, X: float, Z: float, ridden: bool) -> None:
    rng = camera.rng
    facing = 1 if rng.random() < 0.5 else -1
    r = 0.34 if kind == "bicycle" else 0.31
    half = 0.52 if kind == "bicycle" else 0.7
    u0, v0 = camera.project(X, 0.0, Z)
    k = camera.f / Z

    def p(x, y):  # metres in the bike's frame -> pixels
        return (u0 + facing * x * k, v0 - y * k)

    rear, front = np.array(p(-half, r)), np.array(p(half, r))
    rad = max(r * k, 1.5)
    thick = max(0.05 * k, 1.0)
    seat, bars = np.array(p(-0.18, 0.95)), np.array(p(half - 0.12, 1.05))
    crank = np.array(p(0.0, 0.3))
    wheels = [polygon_circle(*rear, rad), polygon_circle(*front, rad)]
    if kind == "bicycle":
        frame = [segment(rear, seat, thick), segment(seat, bars, thick),
                 segment(rear, crank, thick), segment(crank, seat, thick),
                 segment(crank, bars, thick), segment(bars, front, thick)]
        colour = pick(rng, PAINTS, 15)
    else:
        body = np.array([p(-half * 0.9, 0.55), p(-0.1, 0.95), p(half * 0.7, 0.95),
                         p(half * 0.8, 0.45), p(0.1, 0.3)])
        frame = [body, segment(np.array(p(half * 0.6, 0.9)), bars, thick * 1.5),
                 segment(bars, front, thick * 1.5)]
        colour = pick(rng, PAINTS, 15)
    camera.shape(kind, union_outline(wheels + frame), camera.canvas.style(colour * 0.6, TEX_FLAT, 0.2))
    tyre = camera.canvas.style((25, 25, 28), TEX_FLAT, 0.15)
    spokes = camera.canvas.style((150, 150, 155), TEX_FLAT, 0.6)
    for centre, wheel in zip((rear, front), wheels, strict=True):
        camera.detail(wheel, tyre)
        if rad * 0.75 >= 1:
            camera.detail(polygon_circle(*centre, rad * (0.78 if kind == "bicycle" else 0.55)),
                        spokes)
    paint = camera.canvas.style(colour, TEX_METAL if kind == "motorcycle" else TEX_FLAT, 0.3)
    for part in frame:
        camera.detail(part, paint)
    if ridden:
        lean = 0.1 if kind == "bicycle" else 0.05
        local = np.array([(-0.28, 0.88), (-0.1, 0.85), (0.05, 0.5), (0.12, 0.3), (0.2, 0.3),
                          (0.15, 0.6), (0.02, 0.95), (half - 0.1, 1.05), (half - 0.12, 1.12),
                          (0.05 + lean, 1.35), (0.03 + lean, 1.45),
                          *[(lean - 0.02 + 0.11 * math.cos(t), 1.56 + 0.11 * math.sin(t))
                            for t in np.linspace(-0.8, math.pi + 0.8, 9)],
                          (-0.12 + lean, 1.45), (-0.3, 1.1)])
        pts = np.array([p(x, y) for x, y in local])
        camera.shape("rider", pts, camera.canvas.style(pick(rng, CLOTHES, 15), TEX_CLOTH,
                                                   rng.uniform(0.25, 0.45)))
        if kind == "motorcycle" or rng.random() < 0.5:  # helmet
            camera.detail(polygon_circle(*p(lean - 0.02, 1.57), 0.1 * k),
                        camera.canvas.style(pick(rng, PAINTS, 10), TEX_METAL, 0.3))


def vehicle(camera: Camera, kind: str, X: float, Z: float) -> None:
    """A box-shaped vehicle whose rear (or, for a tram, front) face is at depth Z."""
    rng = camera.rng
    dims = {"car": ((1.65, 1.9), (1.35, 1.6), (3.9, 4.8)),
            "truck": ((2.3, 2.55), (2.9, 3.8), (6.5, 10.0)),
            "bus": ((2.5, 2.55), (2.9, 3.3), (11.0, 13.0)),
            "train": ((2.4, 2.65), (3.3, 3.6), (25.0, 35.0))}[kind]
    w, h, length = (rng.uniform(*d) for d in dims)
    x0, x1, z0, z1 = X - w / 2, X + w / 2, Z, Z + length

    def corners(xa, xb, ya, yb, za, zb):
        xs, ys, zs = np.meshgrid([xa, xb], [ya, yb], [za, zb], indexing="ij")
        return camera.project(xs.ravel(), ys.ravel(), zs.ravel())

    def hull(points):
        return cv2.convexHull(np.round(points).astype(np.int32)).reshape(-1, 2)

    if kind == "car":
        body_h = h * rng.uniform(0.5, 0.6)
        inset = w * 0.08
        cabin = (x0 + inset, x1 - inset, body_h, h, z0 + length * 0.22, z1 - length * 0.3)
        body = corners(x0, x1, 0.0, body_h, z0, z1)
        outline = hull(np.concatenate([body, corners(*cabin)]))
        palette, texture = PAINTS, TEX_METAL
    elif kind == "truck":
        cab_h = h * 0.8
        outline = hull(np.concatenate([corners(x0, x1, 0.0, h, z0, z1 - 2.4),
                                       corners(x0, x1, 0.0, cab_h, z1 - 2.3, z1)]))
        palette, texture = PAINTS + FACADES[:3], TEX_METAL
    else:
        outline = hull(corners(x0, x1, 0.0, h, z0, z1))
        palette = ((230, 200, 40), (200, 40, 40), (235, 235, 230), (40, 90, 170), (60, 150, 80))
        texture = TEX_METAL
    colour = pick(rng, palette, 14)
    style = camera.canvas.style(colour, texture, rng.uniform(0.2, 0.35))
    camera.shape(kind, outline, style)
    dark = camera.canvas.style((22, 22, 25), TEX_FLAT, 0.1)
    glass = camera.canvas.style(pick(rng, ((40, 50, 60), (60, 70, 85), (25, 30, 35)), 6),
                              TEX_GLASS, 0.4)
    side_x = x0 if X > 0 else x1  # the side the camera sees

    # wheels on the visible side, and the tyres under the near face
    wheel_r = 0.33 if kind == "car" else 0.5
    for zw in (z0 + length * 0.18, z1 - length * 0.18):
        t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        camera.detail(camera.project(side_x, wheel_r + wheel_r * np.sin(t), zw + wheel_r * np.cos(t)),
                    dark)
    for xt in (x0 + 0.05, x1 - 0.3):
        camera.detail(camera.project([xt, xt + 0.25, xt + 0.25, xt], [0, 0, 0.35, 0.35], z0), dark)
    if kind == "car":
        camera.detail(hull(corners(*cabin)), glass)
        camera.detail(camera.project([x0 + 0.1, x0 + 0.35, x0 + 0.35, x0 + 0.1],
                                 [body_h * 0.7, body_h * 0.7, body_h * 0.9, body_h * 0.9], z0),
                    camera.canvas.style((200, 30, 30), TEX_FLAT, 0.1))
        camera.detail(camera.project([x1 - 0.35, x1 - 0.1, x1 - 0.1, x1 - 0.35],
                                 [body_h * 0.7, body_h * 0.7, body_h * 0.9, body_h * 0.9], z0),
                    camera.canvas.style((200, 30, 30), TEX_FLAT, 0.1))
        camera.detail(camera.project([X - 0.26, X + 0.26, X + 0.26, X - 0.26],
                                 [0.35, 0.35, 0.47, 0.47], z0),
                    camera.canvas.style((230, 230, 225), TEX_FLAT, 0.05))
    elif kind == "truck":
        rib = camera.canvas.style(colour * 0.7, TEX_FLAT, 0.1)
        for xr in np.linspace(x0 + 0.2, x1 - 0.2, 5):
            camera.detail(camera.project([xr - 0.03, xr + 0.03, xr + 0.03, xr - 0.03],
                                     [0.5, 0.5, h - 0.1, h - 0.1], z0), rib)
        for zr in np.arange(z0 + 0.6, z1 - 2.4, 0.8):
            camera.detail(camera.side_quad(side_x, 0.5, h - 0.1, zr, zr + 0.08), rib)
    else:  # bus and tram: a band of windows along the side and a big window at the end
        y_lo, y_hi = (1.15, h - 0.35) if kind == "bus" else (1.2, h - 0.6)
        camera.detail(camera.project([x0 + 0.15, x1 - 0.15, x1 - 0.15, x0 + 0.15],
                                 [y_lo, y_lo, y_hi, y_hi], z0), glass)
        step = 1.4 if kind == "bus" else 1.1
        for zs in np.arange(z0 + 0.6, z1 - 0.6, step):
            camera.detail(camera.side_quad(side_x, y_lo, y_hi, zs, zs + step * 0.82), glass)
        if kind == "train":
            stripe = camera.canvas.style(pick(rng, ((200, 40, 40), (30, 30, 30), (40, 90, 170)), 8),
                                       TEX_FLAT, 0.1)
            camera.detail(camera.side_quad(side_x, 0.75, 1.0, z0, z1), stripe)
            camera.detail(camera.project([x0, x1, x1, x0], [0.75, 0.75, 1.0, 1.0], z0), stripe)
            lamp = camera.canvas.style((250, 245, 220), TEX_FLAT, 0.05)
            for xl in (x0 + 0.3, x1 - 0.55):
                camera.detail(camera.project([xl, xl + 0.25, xl + 0.25, xl], [0.45, 0.45, 0.6, 0.6],
                                         z0), lamp)


def box_object(camera: Camera, label: str, X: float, Z: float) -> None:
    """A small void object: a bin, bench or post box (static) or a cart / stroller (dynamic)."""
    rng = camera.rng
    w, h = rng.uniform(0.5, 1.6), rng.uniform(0.6, 1.2)
    local = np.array([(-w / 2, 0), (w / 2, 0), (w / 2, h), (-w / 2, h)])
    billboard(camera, label, X, Z, local, camera.canvas.style(
        pick(rng, PAINTS + GREYS, 15), TEX_METAL, 0.25))
