"""A synthetic street scene: a pinhole camera 1.5 m above a flat ground plane looks down a road
with sidewalks, terrain verges, walls and fences, fronted by building facades and trees, under a
sky. Poles carry traffic signs and lights; cars, trucks, buses, trams (on rail tracks), persons,
riders on bicycles or motorcycles and parked two-wheelers (:mod:`.objects`) stand on the ground
at random depths, so their size in pixels follows ``f / Z`` (small and thin far away). Void
classes appear where Cityscapes has them: ego vehicle at the bottom, rectification border and
out-of-roi at the image edges, some static / dynamic objects and ground patches.

Every shape is a polygon drawn in painter's order (far to near) into the camera's canvas, from
which :mod:`.render` makes the label map, the instance map, the polygon list and the image.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gsbench.data.cityscapes import CITYSCAPES_CLASS_NAMES
from gsbench.data.synthetic.canvas import (
    FACADES, GREENS, GREYS, TEX_ASPHALT, TEX_BRICK, TEX_FLAT, TEX_FOLIAGE, TEX_GLASS, TEX_GRASS,
    TEX_METAL, TEX_PLASTER, TEX_SKY, TEX_SLATS, TEX_TILES, Camera, pick,
)
from gsbench.data.synthetic.objects import box_object, person, pole, tree, two_wheeler, vehicle

#: Classes every street scene has; each rendered image shows all of them.
COMMON_CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "pole", "traffic light",
                  "traffic sign", "car", "person")
#: Rarer classes, shared round-robin between the images of a split so that every split (even with
#: two images) contains all 19 evaluated classes.
QUOTA_CLASSES = ("wall", "fence", "terrain", "truck", "bus", "train", "rider", "motorcycle",
                 "bicycle")
assert sorted(COMMON_CLASSES + QUOTA_CLASSES) == sorted(CITYSCAPES_CLASS_NAMES)


class Street(Camera):
    """A street seen by the camera: its cross-section (road, sidewalks, verges, facades), and
    the building of the painter's list of one scene.
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        super().__init__(rng, height, width)
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

    # geometry of the street
    def facade_x(self, side: int) -> float:
        walk = self.walk_left if side < 0 else self.walk_right
        return walk + side * self.verge[side]

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
        rgb = pick(self.rng, ((110, 150, 200), (160, 180, 205), (190, 195, 200), (90, 130, 190),
                               (200, 185, 170)), 12)
        style = self.canvas.style(rgb, TEX_SKY, self.rng.uniform(0.3, 0.9))
        self.shape("sky", [(0, 0), (self.W - 1, 0), (self.W - 1, self.H - 1), (0, self.H - 1)], style)

    def _ground(self, with_tram: bool) -> float | None:
        rng, z0, z1 = self.rng, 0.5, self.z_end
        road = self.canvas.style(pick(rng, GREYS[:3], 10), TEX_ASPHALT, rng.uniform(0.12, 0.25))
        walk_style = [self.canvas.style(pick(rng, GREYS[1:] + ((150, 100, 90), (180, 160, 130)), 12),
                                        TEX_TILES, rng.uniform(0.15, 0.3),
                                        period=rng.uniform(0.3, 0.8)) for _ in range(2)]
        # the ground beyond the facades (seen only through gaps and far away)
        self.shape("ground", self.ground_quad(-200, 200, z0, 1e4),
                   self.canvas.style(pick(rng, ((110, 100, 85), (95, 95, 90)), 10), TEX_ASPHALT, 0.2))
        terrain_style = self.canvas.style(pick(rng, GREENS + ((140, 130, 80),), 15), TEX_GRASS,
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
        curb = self.canvas.style(pick(rng, GREYS[2:], 8), TEX_FLAT, 0.1)
        self.detail(self.ground_quad(self.road_left - 0.3, self.road_left, z0, z1), curb)
        self.detail(self.ground_quad(self.road_right, self.road_right + 0.3, z0, z1), curb)
        # lane markings: dashed lines every 3.2 m (part of the road class, as in Cityscapes)
        mark = self.canvas.style(pick(rng, ((225, 225, 215), (220, 200, 90)), 6), TEX_FLAT, 0.1)
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
                       self.canvas.style(pick(rng, ((120, 105, 85), (100, 95, 90)), 10), TEX_ASPHALT,
                                         0.25))
        if not with_tram:
            return None
        tram_x = float(np.clip(rng.uniform(self.road_left + 1.5, self.road_right - 1.5), -2.5, 2.5))
        self.shape("rail track", self.ground_quad(tram_x - 1.1, tram_x + 1.1, z0, z1),
                   self.canvas.style(pick(rng, ((105, 95, 85), (90, 90, 90)), 8), TEX_ASPHALT, 0.3))
        steel = self.canvas.style((175, 175, 180), TEX_FLAT, 0.1)
        for x in (tram_x - 0.72, tram_x + 0.72):
            self.detail(self.ground_quad(x - 0.04, x + 0.04, z0, z1), steel)
        return tram_x

    def _building(self, side: int, x: float, z_near: float, z_far: float, height: float) -> None:
        rng = self.rng
        quad = self.side_quad(x, 0.0, height, z_far, z_near)
        style = self.canvas.style(pick(rng, FACADES, 15), TEX_PLASTER, rng.uniform(0.08, 0.18))
        self.shape("building", quad, style)
        glass = self.canvas.style(pick(rng, ((40, 50, 60), (70, 85, 100), (25, 30, 35),
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
            frame_style = self.canvas.style(pick(rng, ((225, 222, 215), (90, 80, 70)), 8), TEX_FLAT, 0.05)
            for quad in quads(0.15):
                self.detail(quad, frame_style)
        for quad in quads(0.0):
            self.detail(quad, glass)
        # a ground-floor shop window band or doors
        if rng.random() < 0.5:
            self.detail(self.side_quad(x, 0.3, 2.4, z_near + 1.0, z_far - 1.0), glass)

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
                style = self.canvas.style(pick(rng, GREENS, 14), TEX_FOLIAGE, rng.uniform(0.35, 0.6))
                h = rng.uniform(2.0, 4.0)
                zs = np.linspace(z_far, z_near, 12)
                hs = h * (1 + 0.25 * rng.normal(size=12))
                top = self.project(x, hs, zs)
                bottom = self.project(x, 0.0, zs[::-1])
                self.shape("vegetation", np.concatenate([top, bottom]), style)
                for zt in np.arange(z_far - 3, z_near + 2, -rng.uniform(5, 9)):
                    tree(self, x + side * rng.uniform(0, 2), zt, rng.uniform(6, 11),
                         rng.uniform(3, 6))

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
                           self.canvas.style(pick(rng, FACADES, 15), TEX_PLASTER, 0.12))
            else:
                self.shape("vegetation", self.project([x, x + w, x + w * 0.8, x + w * 0.2],
                                                      [0, 0, h * 0.5, h * 0.5], z),
                           self.canvas.style(pick(rng, GREENS, 14), TEX_FOLIAGE, 0.45))
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
                style = self.canvas.style(pick(rng, FACADES + GREYS, 12), TEX_BRICK,
                                          rng.uniform(0.2, 0.4), period=rng.uniform(0.2, 0.35),
                                          plane_x=walk)
            else:
                h = rng.uniform(1.0, 2.0)
                style = self.canvas.style(pick(rng, GREYS + ((90, 110, 80), (120, 90, 60)), 12),
                                          TEX_SLATS, rng.uniform(0.35, 0.6),
                                          period=rng.uniform(0.12, 0.25), plane_x=walk)
            self.shape(label, self.side_quad(walk, 0.0, h, z_far, z_near), style)
            if label == "fence":  # posts
                post = self.canvas.style(pick(rng, GREYS, 8), TEX_FLAT, 0.2)
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
            add((z, next(order), lambda x=x, z=z, s=side: pole(self, x, z, s)))
        for _ in range(rng.integers(0, 4)):  # street trees
            z = self.random_depth(1.5, 60)
            add((z, next(order), lambda x=sidewalk_x(), z=z: tree(self,
                x, z, rng.uniform(5, 10), rng.uniform(2.5, 5))))
        for _ in range(rng.integers(1, 6)):
            z = self.random_depth(1.3, 45)
            x = sidewalk_x() if rng.random() < 0.8 else lane_x()
            add((z, next(order), lambda x=x, z=z: person(self, x, z)))
        for _ in range(rng.integers(1, 5)):
            z = self.random_depth(1.2, 70)
            x = lane_x() if rng.random() < 0.7 else (self.road_left + 1.0 if rng.random() < 0.5
                                                     else self.road_right - 1.0)
            add((z, next(order), lambda x=x, z=z: vehicle(self, "car", x, z)))
        for label in ("truck", "bus"):
            if want[label]:
                z = self.random_depth(1.5, 60)
                add((z, next(order), lambda x=lane_x(), z=z, lab=label: vehicle(self, lab, x, z)))
        if want["train"]:
            z = self.random_depth(1.8, 50)
            add((z, next(order), lambda z=z: vehicle(self, "train", tram_x, z)))
        if want["rider"]:
            for _ in range(rng.integers(1, 3)):
                z = self.random_depth(1.3, 35)
                two = "motorcycle" if rng.random() < 0.4 else "bicycle"
                add((z, next(order), lambda x=lane_x(), z=z, t=two: two_wheeler(self, t, x, z, True)))
        for label in ("bicycle", "motorcycle"):
            if want[label]:
                z = self.random_depth(1.3, 30)
                add((z, next(order), lambda x=sidewalk_x(), z=z, lab=label:
                     two_wheeler(self, lab, x, z, False)))
        for _ in range(rng.integers(0, 3)):  # void objects: bins, benches (static), carts (dynamic)
            z = self.random_depth(1.4, 40)
            label = "static" if rng.random() < 0.7 else "dynamic"
            add((z, next(order), lambda x=sidewalk_x(), z=z, lab=label: box_object(self, lab, x, z)))

    def draw_standing(self) -> None:
        for _, _, draw in sorted(self.standing, key=lambda item: (-item[0], item[1])):
            draw()
        self.standing.clear()

    # --- void border, ego vehicle, forced classes ----------------------------------------------
    def ego_and_borders(self) -> None:
        rng, H, W = self.rng, self.H, self.W
        depth = H * rng.uniform(0.06, 0.13)
        self.ego_top = H - depth
        x = np.linspace(-0.02 * W, 1.02 * W, 33)
        bulge = 1 - 0.5 * ((x - W / 2) / (W / 2)) ** 2
        hood = np.concatenate([np.stack([x, H - depth * bulge], 1), [(1.02 * W, H + 5), (-0.02 * W, H + 5)]])
        paint = pick(rng, ((25, 25, 30), (190, 190, 195), (30, 40, 80), (110, 110, 115)), 8)
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
            vehicle(self, label, X, Z)
        elif label in ("person",):
            person(self, X, Z)
        elif label in ("rider", "bicycle", "motorcycle"):
            two_wheeler(self, "bicycle" if label == "rider" else label, X, Z, label == "rider")
        elif label in ("pole", "traffic sign", "traffic light"):
            kinds = [] if label == "pole" else [label]
            pole(self, X, Z, 1 if X < 0 else -1, kinds)
        elif label == "vegetation":
            tree(self, X, Z, rng.uniform(3, 5), rng.uniform(1.5, 2.5))
        else:  # stuff classes: a small patch of that class standing at (X, Z)
            texture = {"wall": TEX_BRICK, "fence": TEX_SLATS, "terrain": TEX_GRASS,
                       "building": TEX_PLASTER, "road": TEX_ASPHALT, "sidewalk": TEX_TILES,
                       "sky": TEX_SKY}[label]
            family = {"terrain": GREENS, "sky": ((120, 160, 210),)}.get(label, FACADES + GREYS)
            w = rng.uniform(1.5, 3.0)
            h = {"terrain": 0.05, "road": 0.05, "sidewalk": 0.05}.get(label, rng.uniform(1.0, 2.0))
            if h < 0.1:  # flat patches lie on the ground
                poly = self.ground_quad(X - w / 2, X + w / 2, Z, Z + w)
            else:
                poly = self.project(X + np.array([-w / 2, w / 2, w / 2, -w / 2]),
                                    np.array([0, 0, h, h]), Z)
            self.shape(label, poly, self.canvas.style(pick(rng, family, 12), texture, 0.3,
                                                      period=0.15 if label == "fence" else 0.25))
