"""SynthDrive: synthetic labelled driving video with exact optical flow.

A camera on a car drives forward along a straight street and renders, by ray casting (numpy,
vectorised per object over its screen rectangle), a world of axis-aligned boxes and ellipsoids
over a ground plane under a sky:

* ground: road with lane markings (dashed lane dividers, solid edge lines), sidewalks with tiles,
  terrain (grass) beyond; buildings with window grids, walls, fences, hedges, trees (trunk +
  ellipsoid canopy), poles (street lamps), traffic signs and traffic lights on posts;
* parked cars along the curb, cars driving in both directions in their lanes and pedestrians
  walking on the sidewalks, each with its own velocity;
* a camera that sways laterally, yaws with the sway and pitches with the road (bounce).

Every pixel of every frame gets a Cityscapes trainId (and labelId) from the surface its ray hits;
the **backward optical flow** of every frame (for each pixel of frame t, where the same scene
point was in frame t-1) is exact: the hit point is moved back by its object's velocity and
projected into the previous camera; a pixel is marked valid when that point lies inside the
previous frame and was visible there (same surface at that pixel: not occluded).

Per-frame nuisances, which change the image but never the labels, make a per-frame model
flicker: sensor noise (with bursts), brightness flicker (auto-exposure jumps), motion/defocus
blur, and brief semi-transparent occluders (mud splashes, glare) lasting one to three frames.

Everything is deterministic from ``seed`` (sequence i of split s uses its own random stream, so
validation sequences are independent of the training ones), at any resolution (the world is in
metres; intrinsics scale with the image).

Output (``write_dataset``; the whole tree is written to a temporary folder renamed into place):

* ``leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` (Cityscapes video
  layout, 6-digit sequence and frame numbers);
* ``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png`` and ``..._labelTrainIds.png``
  for **every** frame;
* ``flow/<split>/<city>/<city>_<seq>_<frame>_flowBackward.png``: backward flow in the KITTI
  16-bit PNG encoding (u = (R - 2^15) / 64, v = (G - 2^15) / 64, B = valid), frames 1..N-1;
* ``bags/<split>/<city>_<seq>/``: a rosbag2 MCAP bag per sequence with ``/camera/image_raw``
  (sensor_msgs/Image rgb8) and ``/camera/labels`` (mono8 trainIds), see :mod:`stt_train.bagwriter`;
* ``synthdrive.json``: generator settings, intrinsics and the list of sequences.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

GENERATOR_VERSION = 1
CITY = "synthdrive"

# Cityscapes trainIds used by the generator
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13)

# surface ids: 0 = sky, 1 = ground, 2.. = objects
SKY_ID, GROUND_ID = 0, 1
KIND_BOX, KIND_ELLIPSOID = 0, 1
# patterns painted on object surfaces
PAT_NONE, PAT_WINDOWS, PAT_CAR, PAT_SIGN, PAT_PERSON, PAT_LIGHT = 0, 1, 2, 3, 4, 5
N_TEX = 6  # noise textures per sequence: 0 asphalt, 1 pavement, 2 grass, 3 facade, 4 foliage, 5 clouds
TEX_SIZE = 256


def train_to_label_id() -> np.ndarray:
    """(256,) uint8 lookup trainId -> Cityscapes labelId (255 -> 0 'unlabeled'), from cityscapesscripts."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.zeros(256, np.uint8)
    for lab in labels:
        if 0 <= lab.trainId < 255 and lab.id >= 0:
            lut[lab.trainId] = lab.id
    return lut


@dataclass
class SynthDriveConfig:
    """Rendering settings (the world itself comes from the seed)."""

    height: int = 256
    width: int = 512
    frames: int = 30  # frames per sequence (Cityscapes snippets have 30)
    fps: float = 15.0
    hfov_deg: float = 64.0
    supersample: int = 2  # the image is rendered at this factor and area-downsampled (anti-aliasing)
    nuisance: float = 1.0  # scales how often and how strongly nuisances occur; 0 = clean video
    view_distance: float = 160.0

    def validate(self) -> None:
        if self.height < 16 or self.width < 16:
            raise ValueError(f"resolution {self.height}x{self.width} is too small (>= 16x16)")
        if self.frames < 2:
            raise ValueError(f"frames={self.frames}: a sequence needs at least 2 frames")
        if not 0 < self.fps <= 120:
            raise ValueError(f"fps={self.fps} must lie in (0, 120]")
        if not 1 <= self.supersample <= 4:
            raise ValueError(f"supersample={self.supersample} must lie in 1..4")
        if not 0 <= self.nuisance <= 3:
            raise ValueError(f"nuisance={self.nuisance} must lie in [0, 3]")


# ---------------------------------------------------------------------------------------- world
@dataclass
class Surfaces:
    """Objects of the world (index i is surface id i + 2)."""

    kind: list[int] = field(default_factory=list)
    lo: list[tuple[float, float, float]] = field(default_factory=list)  # box min corner / ellipsoid centre
    hi: list[tuple[float, float, float]] = field(default_factory=list)  # box max corner / ellipsoid radii
    vel: list[tuple[float, float, float]] = field(default_factory=list)
    cls: list[int] = field(default_factory=list)
    color: list[tuple[float, float, float]] = field(default_factory=list)
    tex: list[int] = field(default_factory=list)
    pattern: list[int] = field(default_factory=list)

    def box(self, lo, hi, cls, color, tex=3, pattern=PAT_NONE, vel=(0.0, 0.0, 0.0)) -> None:
        self.kind.append(KIND_BOX)
        self.lo.append(tuple(float(v) for v in lo))
        self.hi.append(tuple(float(v) for v in hi))
        self._common(vel, cls, color, tex, pattern)

    def ellipsoid(self, centre, radii, cls, color, tex=4, pattern=PAT_NONE, vel=(0.0, 0.0, 0.0)) -> None:
        self.kind.append(KIND_ELLIPSOID)
        self.lo.append(tuple(float(v) for v in centre))
        self.hi.append(tuple(float(v) for v in radii))
        self._common(vel, cls, color, tex, pattern)

    def _common(self, vel, cls, color, tex, pattern) -> None:
        self.vel.append(tuple(float(v) for v in vel))
        self.cls.append(int(cls))
        self.color.append(tuple(float(c) for c in color))
        self.tex.append(int(tex))
        self.pattern.append(int(pattern))

    def arrays(self) -> dict[str, np.ndarray]:
        n = len(self.kind)
        return {
            "kind": np.asarray(self.kind, np.int64).reshape(n),
            "lo": np.asarray(self.lo, np.float64).reshape(n, 3),
            "hi": np.asarray(self.hi, np.float64).reshape(n, 3),
            "vel": np.asarray(self.vel, np.float64).reshape(n, 3),
            "cls": np.asarray(self.cls, np.int64).reshape(n),
            "color": np.asarray(self.color, np.float32).reshape(n, 3),
            "tex": np.asarray(self.tex, np.int64).reshape(n),
            "pattern": np.asarray(self.pattern, np.int64).reshape(n),
        }


def _noise_texture(rng: np.random.Generator, octaves: tuple[int, ...], weights: tuple[float, ...]) -> np.ndarray:
    """Tileable value noise in [0, 1], (TEX_SIZE, TEX_SIZE) float32."""
    acc = np.zeros((TEX_SIZE, TEX_SIZE), np.float32)
    for n, w in zip(octaves, weights, strict=True):
        grid = rng.random((n, n)).astype(np.float32)
        big = cv2.resize(np.tile(grid, (3, 3)), (3 * TEX_SIZE, 3 * TEX_SIZE), interpolation=cv2.INTER_CUBIC)
        acc += w * big[TEX_SIZE:2 * TEX_SIZE, TEX_SIZE:2 * TEX_SIZE]
    acc -= acc.min()
    return acc / max(float(acc.max()), 1e-6)


def _jitter(rng: np.random.Generator, color: tuple[float, float, float], amount: float) -> tuple[float, float, float]:
    c = np.asarray(color, np.float64) * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, amount * 40, 3)
    return tuple(float(v) for v in np.clip(c, 5, 250))


class World:
    """One sequence's street, objects, camera path and textures, all drawn from ``rng``."""

    def __init__(self, rng: np.random.Generator, duration: float, view_distance: float = 160.0) -> None:
        self.rng = rng
        self.duration = duration
        self.view_distance = view_distance
        # --- camera path
        self.speed = rng.uniform(6.0, 13.0)
        self.speed_wobble = rng.uniform(0.0, 0.08)
        self.cam_height = rng.uniform(1.25, 1.7)
        self.lanes = int(rng.integers(1, 3))  # per direction
        self.lane_w = rng.uniform(3.0, 3.6)
        self.road_half = self.lanes * self.lane_w
        self.cam_x0 = self.lane_w * (self.lanes - 0.5)  # centre of the rightmost lane (right-hand traffic)
        self.sway_amp = rng.uniform(0.05, 0.5)
        self.sway_period = rng.uniform(2.0, 6.0)
        self.sway_phase = rng.uniform(0, 2 * math.pi)
        self.pitch0 = math.radians(rng.uniform(1.0, 4.0))
        self.bounce_amp = math.radians(rng.uniform(0.05, 0.5))
        self.bounce_freq = rng.uniform(0.8, 2.5)
        self.yaw_amp = math.radians(rng.uniform(0.0, 1.5))
        # --- appearance
        self.sun = np.array([rng.uniform(-0.6, 0.6), -rng.uniform(0.4, 0.9), rng.uniform(-0.5, 0.5)])
        self.sun /= np.linalg.norm(self.sun)
        self.light = rng.uniform(0.8, 1.15)
        self.sky_top = np.array(_jitter(rng, (70, 120, 200), 0.15), np.float32)
        self.sky_horizon = np.array(_jitter(rng, (185, 205, 225), 0.08), np.float32)
        self.fog = rng.uniform(150.0, 400.0)
        self.road_color = tuple(float(v) for v in np.array([95, 95, 100]) * rng.uniform(0.75, 1.2))
        self.walk_color = _jitter(rng, (165, 150, 150), 0.12)
        self.terrain_color = _jitter(rng, (110, 150, 70), 0.15)
        self.textures = [
            _noise_texture(rng, (8, 32, 128), (0.3, 0.4, 0.3)),  # asphalt
            _noise_texture(rng, (4, 16, 64), (0.4, 0.3, 0.3)),  # pavement
            _noise_texture(rng, (8, 32, 128), (0.3, 0.3, 0.4)),  # grass
            _noise_texture(rng, (4, 16, 64), (0.5, 0.3, 0.2)),  # facade
            _noise_texture(rng, (16, 64, 128), (0.3, 0.4, 0.3)),  # foliage
            _noise_texture(rng, (4, 8, 16), (0.5, 0.3, 0.2)),  # clouds
        ]
        self.walk_w = rng.uniform(2.0, 4.5)
        self.surf = Surfaces()
        self._build()
        self.arr = self.surf.arrays()

    # ------------------------------------------------------------------ camera
    def cam_z(self, t: float) -> float:
        return self.speed * t + self.speed * self.speed_wobble * math.sin(1.3 * t)

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Camera centre c (3,) and rotation R (3x3, camera -> world) at time t (seconds)."""
        w = 2 * math.pi / self.sway_period
        x = self.cam_x0 + self.sway_amp * math.sin(w * t + self.sway_phase)
        dxdt = self.sway_amp * w * math.cos(w * t + self.sway_phase)
        yaw = math.atan2(dxdt, self.speed) + self.yaw_amp * math.sin(0.7 * t)
        pitch = self.pitch0 + self.bounce_amp * math.sin(2 * math.pi * self.bounce_freq * t)
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        # pitch down = camera looks towards +y (down): rotate about x so +z tilts to +y
        rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        c = np.array([x, -self.cam_height, self.cam_z(t)])
        return c, ry @ rx

    # ------------------------------------------------------------------ world layout
    def _build(self) -> None:
        rng = self.rng
        z_start, z_end = -30.0, self.cam_z(self.duration) + self.view_distance + 20
        rh, ww = self.road_half, self.walk_w
        for side in (-1, 1):
            # roadside: buildings / hedges / fences / open terrain, in segments along z
            z = z_start + rng.uniform(-10, 0)
            setback = rh + ww + rng.uniform(0.0, 6.0)
            while z < z_end:
                kind = rng.choice(4, p=[0.55, 0.2, 0.12, 0.13])
                length = rng.uniform(8, 35) if kind == 0 else rng.uniform(6, 25)
                x_in = setback + rng.uniform(0, 2.5)
                if kind == 0:  # building
                    height = rng.uniform(5, 28)
                    depth = rng.uniform(8, 20)
                    color = _jitter(rng, tuple(rng.choice([(140, 120, 100), (170, 160, 150), (120, 110, 115),
                                                          (190, 170, 140), (100, 90, 80)])), 0.15)
                    self._side_box(side, x_in, x_in + depth, z, z + length, height, BUILDING, color, 3,
                                   PAT_WINDOWS)
                elif kind == 1:  # hedge
                    height = rng.uniform(1.0, 3.0)
                    self._side_box(side, x_in, x_in + rng.uniform(1, 3), z, z + length, height, VEGETATION,
                                   _jitter(rng, (60, 100, 45), 0.2), 4)
                    if rng.random() < 0.6:  # building behind the hedge
                        xb = x_in + rng.uniform(4, 10)
                        self._side_box(side, xb, xb + 15, z, z + length, rng.uniform(6, 20), BUILDING,
                                       _jitter(rng, (150, 140, 130), 0.2), 3, PAT_WINDOWS)
                elif kind == 2:  # wall or fence, terrain behind it
                    cls = WALL if rng.random() < 0.4 else FENCE
                    height = rng.uniform(0.8, 2.2)
                    color = _jitter(rng, (150, 150, 160) if cls == WALL else (140, 120, 100), 0.15)
                    self._side_box(side, x_in, x_in + (0.3 if cls == WALL else 0.08), z, z + length, height, cls,
                                   color, 3)
                else:  # open terrain with trees
                    for tz in np.arange(z + 2, z + length, rng.uniform(4, 8)):
                        self._tree(side * (x_in + rng.uniform(1, 5)), tz)
                z += length + (rng.uniform(0, 4) if rng.random() < 0.5 else 0.0)
            # street furniture at the curb
            z = z_start + rng.uniform(0, 15)
            while z < z_end:
                r = rng.random()
                x = side * (rh + rng.uniform(0.3, 0.8))
                if r < 0.45:
                    self._lamp(x, z, side)
                elif r < 0.75:
                    self._sign(x, z)
                elif r < 0.85:
                    self._light(x, z, side)
                else:
                    self._tree(side * (rh + ww - rng.uniform(0.5, 1.2)), z)
                z += rng.uniform(8, 25)
        self._cars(z_start, z_end)
        self._pedestrians(z_start, z_end)

    def _side_box(self, side, x0, x1, z0, z1, height, cls, color, tex, pattern=PAT_NONE) -> None:
        xa, xb = (x0, x1) if side > 0 else (-x1, -x0)
        self.surf.box((xa, -height, z0), (xb, 0.0, z1), cls, color, tex, pattern)

    def _tree(self, x, z) -> None:
        rng = self.rng
        h = rng.uniform(2.0, 3.5)
        self.surf.box((x - 0.15, -h - 0.5, z - 0.15), (x + 0.15, 0.0, z + 0.15), VEGETATION,
                      _jitter(rng, (90, 70, 50), 0.2), 3)
        green = _jitter(rng, (70, 115, 45), 0.2)
        for _ in range(int(rng.integers(2, 4))):
            r = rng.uniform(1.0, 2.2)
            c = (x + rng.uniform(-0.8, 0.8), -h - r * rng.uniform(0.5, 1.1), z + rng.uniform(-0.8, 0.8))
            self.surf.ellipsoid(c, (r, r * rng.uniform(0.7, 1.0), r), VEGETATION, _jitter(rng, green, 0.08), 4)

    def _lamp(self, x, z, side) -> None:
        rng = self.rng
        h = rng.uniform(6, 9)
        color = _jitter(rng, (120, 120, 125), 0.15)
        self.surf.box((x - 0.1, -h, z - 0.1), (x + 0.1, 0.0, z + 0.1), POLE, color, 3)
        arm = rng.uniform(1.0, 2.5)
        xa, xb = (x - arm, x) if side > 0 else (x, x + arm)
        self.surf.box((xa, -h, z - 0.08), (xb, -h + 0.15, z + 0.08), POLE, color, 3)

    def _sign(self, x, z) -> None:
        rng = self.rng
        h = rng.uniform(2.0, 2.8)
        self.surf.box((x - 0.05, -h, z - 0.05), (x + 0.05, 0.0, z + 0.05), POLE, (130, 130, 135), 3)
        w = rng.uniform(0.5, 0.9)
        color = tuple(rng.choice([(200, 30, 30), (30, 60, 180), (230, 200, 30), (240, 240, 240)]))
        self.surf.box((x - w / 2, -h - w, z - 0.06), (x + w / 2, -h + 0.1, z - 0.02), SIGN, color, 3, PAT_SIGN)

    def _light(self, x, z, side) -> None:
        rng = self.rng
        h = rng.uniform(3.0, 4.5)
        self.surf.box((x - 0.08, -h, z - 0.08), (x + 0.08, 0.0, z + 0.08), POLE, (90, 90, 95), 3)
        self.surf.box((x - 0.2, -h - 1.0, z - 0.25), (x + 0.2, -h, z - 0.05), LIGHT, (40, 40, 40), 3, PAT_LIGHT)

    def _car_box(self, x, z, length, vel) -> None:
        rng = self.rng
        w, h = rng.uniform(1.6, 2.0), rng.uniform(1.35, 1.8)
        color = tuple(rng.choice([(180, 20, 20), (20, 40, 150), (200, 200, 205), (30, 30, 35), (120, 120, 130),
                                  (200, 160, 40), (30, 110, 60)]))
        color = _jitter(rng, color, 0.1)
        self.surf.box((x - w / 2, -h, z), (x + w / 2, -0.12, z + length), CAR, color, 3, PAT_CAR, vel)
        # wheels/undercarriage strip so cars touch the ground
        self.surf.box((x - w / 2 + 0.1, -0.15, z + 0.4), (x + w / 2 - 0.1, 0.0, z + length - 0.4), CAR,
                      (25, 25, 25), 0, PAT_NONE, vel)

    def _cars(self, z0, z1) -> None:
        rng = self.rng
        rh = self.road_half
        for side in (-1, 1):  # parked along the curb
            z = z0 + rng.uniform(0, 20)
            while z < z1:
                if rng.random() < 0.45:
                    self._car_box(side * (rh - 1.1), z, rng.uniform(3.8, 4.8), (0.0, 0.0, 0.0))
                z += rng.uniform(5.5, 15)
        lanes = [(k + 0.5) * self.lane_w for k in range(self.lanes)]
        for lane_x in lanes:  # same direction, (mostly) ahead of the camera
            for _ in range(int(rng.integers(1, 4))):
                v = self.speed * rng.uniform(0.6, 1.3)
                z = self.cam_z(0) + rng.uniform(8, 90)
                if abs(lane_x - self.cam_x0) < 0.1 and z < self.cam_z(self.duration) + 12 - (v - self.speed) * 0:
                    z = max(z, 12 + max(0.0, (self.speed - v) * self.duration))  # no collision in our lane
                self._car_box(lane_x + rng.uniform(-0.3, 0.3), z, rng.uniform(3.8, 4.8), (0.0, 0.0, v))
            for _ in range(int(rng.integers(1, 5))):  # oncoming
                v = -self.speed * rng.uniform(0.6, 1.3)
                z = self.cam_z(0) + rng.uniform(20, 200)
                self._car_box(-lane_x + rng.uniform(-0.3, 0.3), z, rng.uniform(3.8, 4.8), (0.0, 0.0, v))

    def _pedestrians(self, z0, z1) -> None:
        rng = self.rng
        rh, ww = self.road_half, self.walk_w
        n = int(rng.integers(4, 16))
        for _ in range(n):
            side = rng.choice([-1, 1])
            x = side * (rh + rng.uniform(0.5, ww - 0.4))
            z = rng.uniform(self.cam_z(0) + 5, min(z1, self.cam_z(0) + 90))
            v = rng.choice([-1, 1]) * rng.uniform(0.7, 1.8)
            vx = rng.uniform(-0.2, 0.2)
            h = rng.uniform(1.5, 1.95)
            shirt = _jitter(rng, tuple(rng.choice([(200, 50, 50), (50, 80, 160), (230, 230, 220), (40, 40, 40),
                                                   (60, 140, 60)])), 0.15)
            self.surf.box((x - 0.25, -h, z - 0.18), (x + 0.25, 0.0, z + 0.18), PERSON, shirt, 3, PAT_PERSON,
                          (vx, 0.0, v))

    # ------------------------------------------------------------------ rendering
    def cast(self, t: float, u: np.ndarray, v: np.ndarray, f: float, cx: float, cy: float) -> dict[str, np.ndarray]:
        """Cast the rays of pixel coordinates (u, v) (2-D arrays) at time t.

        Returns depth along the ray (inf for sky), surface id, hit point (world, at time t), the
        axis of the box face hit (0 x, 1 y, 2 z; 3 for ellipsoids, -1 ground/sky) and ray directions.
        """
        c, rot = self.pose(t)
        h, w = u.shape
        d_cam = np.stack([(u - cx) / f, (v - cy) / f, np.ones_like(u)], -1)
        d = d_cam @ rot.T  # (h, w, 3) world directions (not normalised: depth is along camera z)
        depth = np.full((h, w), np.inf)
        surf = np.zeros((h, w), np.int64)
        axis = np.full((h, w), -1, np.int64)
        # ground plane y = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            tg = np.where(d[..., 1] > 1e-9, -c[1] / d[..., 1], np.inf)
        ground = np.isfinite(tg)
        depth[ground] = tg[ground]
        surf[ground] = GROUND_ID
        # objects
        dsafe = np.where(np.abs(d) < 1e-12, 1e-12, d)
        inv = 1.0 / dsafe
        a = self.arr
        cz = c[2]
        rot_t = rot.T
        for i in range(len(a["kind"])):
            lo, hi, vel = a["lo"][i], a["hi"][i], a["vel"][i]
            if a["kind"][i] == KIND_BOX:
                blo, bhi = lo + vel * t, hi + vel * t
            else:
                blo, bhi = lo + vel * t - hi, lo + vel * t + hi
            if bhi[2] < cz - 2 or blo[2] > cz + self.view_distance:
                continue
            rect = _screen_rect(blo, bhi, c, rot_t, f, cx, cy, u, v)
            if rect is None:
                continue
            r0, r1, c0, c1 = rect
            dd = d[r0:r1, c0:c1]
            if a["kind"][i] == KIND_BOX:
                tt, ax = _ray_box(c, (inv[r0:r1, c0:c1, 0], inv[r0:r1, c0:c1, 1], inv[r0:r1, c0:c1, 2]), blo, bhi)
            else:
                tt = _ray_ellipsoid(c, dd, lo + vel * t, hi)
                ax = np.full(tt.shape, 3, np.int64)
            sub = depth[r0:r1, c0:c1]
            closer = tt < sub
            if closer.any():
                sub[closer] = tt[closer]
                surf[r0:r1, c0:c1][closer] = i + 2
                axis[r0:r1, c0:c1][closer] = ax[closer]
        point = c + d * np.where(np.isfinite(depth), depth, 0.0)[..., None]
        return {"depth": depth, "surf": surf, "point": point, "axis": axis, "dir": d}

    def label(self, surf: np.ndarray, point: np.ndarray) -> np.ndarray:
        """trainIds of cast rays."""
        lut = np.concatenate([[SKY, ROAD], self.arr["cls"]]).astype(np.uint8)
        lab = lut[surf]
        g = surf == GROUND_ID
        ax = np.abs(point[..., 0])
        lab[g & (ax >= self.road_half)] = SIDEWALK
        lab[g & (ax >= self.road_half + self.walk_w)] = TERRAIN
        return lab

    def shade(self, t: float, ray: dict[str, np.ndarray]) -> np.ndarray:
        """RGB float32 (0..255) of cast rays, before nuisances."""
        surf, p, axis, d, depth = ray["surf"], ray["point"], ray["axis"], ray["dir"], ray["depth"]
        h, w = surf.shape
        img = np.zeros((h, w, 3), np.float32)
        a = self.arr
        obj = np.clip(surf - 2, 0, None)
        is_obj = surf >= 2
        # texture coordinates (object-local for moving objects so textures travel with them)
        lp = p - np.where(is_obj[..., None], a["vel"][obj] * t, 0.0)
        s_coord = np.where(axis == 0, lp[..., 2], lp[..., 0] + np.where(axis == 3, lp[..., 2], 0.0))
        t_coord = np.where(axis == 1, lp[..., 2], lp[..., 1])
        # --- ground
        g = surf == GROUND_ID
        if g.any():
            x, z = p[..., 0][g], p[..., 2][g]
            axx = np.abs(x)
            road = axx < self.road_half
            walk = (~road) & (axx < self.road_half + self.walk_w)
            col = np.empty((x.size, 3), np.float32)
            col[:] = self.terrain_color
            col[road] = self.road_color
            col[walk] = self.walk_color
            tex = np.where(road, self._tex(0, x, z, 6.0), np.where(walk, self._tex(1, x, z, 5.0),
                                                                   self._tex(2, x, z, 4.0)))
            col *= (0.7 + 0.6 * tex)[:, None]
            # lane markings (labelled road, as in Cityscapes)
            mark = np.zeros(x.size, bool)
            for k in range(-self.lanes + 1, self.lanes):
                xm = k * self.lane_w
                dashed = (np.mod(z + 3.0 * k, 9.0) < 3.0) if k != 0 or self.lanes > 1 else np.ones(x.size, bool)
                mark |= (np.abs(x - xm) < 0.07 + 0.05 * (k == 0)) & dashed
            mark |= np.abs(axx - (self.road_half - 0.3)) < 0.08
            col[mark & road] = (225, 225, 215)
            tiles = walk & ((np.mod(x, 1.0) < 0.05) | (np.mod(z, 1.0) < 0.05))
            col[tiles] *= 0.75
            curb = walk & (axx - self.road_half < 0.2)
            col[curb] = (190, 185, 180)
            img[g] = col * self.light
        # --- sky
        sk = surf == SKY_ID
        if sk.any():
            dn = d[sk] / np.linalg.norm(d[sk], axis=1, keepdims=True)
            elev = np.clip(-dn[:, 1], 0, 1)[:, None]
            col = self.sky_horizon * (1 - elev) ** 2 + self.sky_top * (1 - (1 - elev) ** 2)
            az = np.arctan2(dn[:, 0], dn[:, 2])
            cloud = self._tex(5, az * 40.0, elev[:, 0] * 60.0, 64.0)
            col = col + (np.clip(cloud - 0.5, 0, None) * 2 * elev[:, 0] ** 0.3)[:, None] * (250 - col)
            img[sk] = col
        # --- objects
        if is_obj.any():
            o = obj[is_obj]
            col = a["color"][o].copy()
            tex_id = a["tex"][o]
            sc, tc = s_coord[is_obj], t_coord[is_obj]
            tv = np.zeros(o.size, np.float32)
            for k in np.unique(tex_id):
                m = tex_id == k
                tv[m] = self._tex(int(k), sc[m], tc[m], 3.0 if k == 4 else 6.0)
            col *= (0.75 + 0.5 * tv)[:, None]
            pat = a["pattern"][o]
            ax_o = axis[is_obj]
            # building windows on the facades (not on roofs), ground floor excepted
            win = (pat == PAT_WINDOWS) & (ax_o != 1) & (tc < -3.0) & (np.mod(sc, 3.0) > 0.9) & (np.mod(tc, 3.2) > 1.1)
            col[win] = col[win] * 0.25 + np.array([60, 75, 95], np.float32) * 0.75
            # car windows: the upper 35% of the body
            lo_y, hi_y = a["lo"][o, 1], a["hi"][o, 1]
            rel = (lp[..., 1][is_obj] - lo_y) / np.maximum(hi_y - lo_y, 1e-6)
            cw = (pat == PAT_CAR) & (rel < 0.35) & (ax_o != 1)
            col[cw] = (35, 45, 60)
            # pedestrians: trousers on the lower half, skin-coloured head
            pl = (pat == PAT_PERSON) & (rel > 0.5)
            col[pl] = col[pl] * 0.3 + np.array([40, 40, 70], np.float32) * 0.7
            ph = (pat == PAT_PERSON) & (rel < 0.13)
            col[ph] = (200, 160, 130)
            # sign faces: a white inner rim on the face toward the camera
            sg = (pat == PAT_SIGN) & (ax_o == 2) & (rel > 0.12) & (rel < 0.2)
            col[sg] = (240, 240, 240)
            lt = (pat == PAT_LIGHT) & (ax_o == 2) & (np.mod(rel, 0.33) < 0.2)
            col[lt] = np.array([(230, 40, 30), (240, 190, 30), (40, 220, 80)], np.float32)[
                np.clip((rel[lt] * 3).astype(np.int64), 0, 2)]
            # lighting by face normal
            normal = np.zeros((o.size, 3))
            dir_o = d[is_obj]
            box_face = ax_o < 3
            idx = np.nonzero(box_face)[0]
            normal[idx, ax_o[idx]] = -np.sign(dir_o[idx, ax_o[idx]])
            ell = ~box_face
            if ell.any():
                nc = (lp[is_obj][ell] - a["lo"][o[ell]]) / a["hi"][o[ell]] ** 2
                normal[ell] = nc / np.linalg.norm(nc, axis=1, keepdims=True)
            lam = np.clip(-(normal @ self.sun), 0, None)
            img[is_obj] = col * ((0.55 + 0.6 * lam) * self.light)[:, None]
        # fog
        fin = np.isfinite(depth)
        fog_a = np.zeros((h, w), np.float32)
        fog_a[fin] = 1 - np.exp(-depth[fin] / self.fog)
        img = img * (1 - fog_a[..., None]) + self.sky_horizon * fog_a[..., None]
        return img

    def _tex(self, k: int, s: np.ndarray, t: np.ndarray, tile: float) -> np.ndarray:
        """Sample texture k at world coordinates (s, t) metres; ``tile`` metres per texture period."""
        if s.size == 0:
            return np.zeros(0, np.float32)
        scale = TEX_SIZE / tile
        n = s.size
        cols = 4096  # cv2.remap wants both map sides < 32767
        rows = -(-n // cols)
        mx = np.zeros(rows * cols, np.float32)
        my = np.zeros(rows * cols, np.float32)
        mx[:n] = np.mod(np.asarray(s, np.float64).reshape(-1) * scale, TEX_SIZE)
        my[:n] = np.mod(np.asarray(t, np.float64).reshape(-1) * scale, TEX_SIZE)
        out = cv2.remap(self.textures[k], mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_WRAP)
        return out.reshape(-1)[:n]

    def backward_flow(self, t: float, t_prev: float, ray: dict[str, np.ndarray], prev_surf: np.ndarray,
                      f: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
        """Exact backward flow (H, W, 2) float32 from frame t to frame t_prev, and its valid mask
        (inside the previous frame and visible there)."""
        surf, p, d = ray["surf"], ray["point"], ray["dir"]
        h, w = surf.shape
        a = self.arr
        obj = np.clip(surf - 2, 0, None)
        vel = np.where((surf >= 2)[..., None], a["vel"][obj], 0.0)
        p_prev = p - vel * (t - t_prev)
        c, rot = self.pose(t_prev)
        q = (p_prev - c) @ rot  # camera coordinates at t_prev
        sky = surf == SKY_ID
        q[sky] = d[sky] @ rot  # directions: points at infinity
        with np.errstate(divide="ignore", invalid="ignore"):
            up = f * q[..., 0] / q[..., 2] + cx
            vp = f * q[..., 1] / q[..., 2] + cy
        gv, gu = np.mgrid[0:h, 0:w].astype(np.float64)
        ok = q[..., 2] > 1e-3
        up = np.where(ok, up, -1e4)
        vp = np.where(ok, vp, -1e4)
        flow = np.stack([up - gu, vp - gv], -1).astype(np.float32)
        inside = ok & (up > -0.5) & (up < w - 0.5) & (vp > -0.5) & (vp < h - 0.5)
        ui = np.clip(np.rint(up), 0, w - 1).astype(np.int64)
        vi = np.clip(np.rint(vp), 0, h - 1).astype(np.int64)
        visible = prev_surf[vi, ui] == surf
        return flow, inside & visible


def _screen_rect(blo, bhi, c, rot_t, f, cx, cy, u, v):
    """Pixel rectangle (r0, r1, c0, c1) of the grid (u, v) that a world box can cover, or None."""
    corners = np.array([[x, y, z] for x in (blo[0], bhi[0]) for y in (blo[1], bhi[1]) for z in (blo[2], bhi[2])])
    q = (corners - c) @ rot_t.T
    h, w = u.shape
    if (q[:, 2] <= 0.05).all():
        return None
    if (q[:, 2] <= 0.05).any():
        return 0, h, 0, w
    pu = f * q[:, 0] / q[:, 2] + cx
    pv = f * q[:, 1] / q[:, 2] + cy
    # grid coordinates -> indices (the grid is regular: u = (j + 0.5) / ss - 0.5)
    su = (u[0, -1] - u[0, 0]) / max(w - 1, 1)
    sv = (v[-1, 0] - v[0, 0]) / max(h - 1, 1)
    c0 = int(math.floor((pu.min() - u[0, 0]) / su)) - 1
    c1 = int(math.ceil((pu.max() - u[0, 0]) / su)) + 2
    r0 = int(math.floor((pv.min() - v[0, 0]) / sv)) - 1
    r1 = int(math.ceil((pv.max() - v[0, 0]) / sv)) + 2
    c0, c1, r0, r1 = max(c0, 0), min(c1, w), max(r0, 0), min(r1, h)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _ray_box(c: np.ndarray, inv: tuple[np.ndarray, np.ndarray, np.ndarray], lo: np.ndarray,
             hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test for rays from ``c`` with inverse direction components ``inv``: entry distance (inf
    where missed or behind) and the entry face's axis."""
    tmins, t_out = [], None
    for k in range(3):
        a, b = (lo[k] - c[k]) * inv[k], (hi[k] - c[k]) * inv[k]
        tmins.append(np.minimum(a, b))
        hi_k = np.maximum(a, b)
        t_out = hi_k if t_out is None else np.minimum(t_out, hi_k)
    t_in = np.maximum(np.maximum(tmins[0], tmins[1]), tmins[2])
    ax = np.where(tmins[0] >= t_in, 0, np.where(tmins[1] >= t_in, 1, 2))
    hit = (t_out >= t_in) & (t_in > 1e-3)
    return np.where(hit, t_in, np.inf), ax


def _ray_ellipsoid(c: np.ndarray, d: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    oc = (c - centre) / radii
    dd = d / radii
    a = (dd * dd).sum(-1)
    b = 2 * (dd * oc).sum(-1)
    cc = float((oc * oc).sum()) - 1.0
    disc = b * b - 4 * a * cc
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    return np.where((disc >= 0) & (t > 1e-3), t, np.inf)


# ---------------------------------------------------------------------------------------- nuisances
class Nuisances:
    """Per-frame image corruptions (labels untouched), drawn from their own random stream."""

    def __init__(self, rng: np.random.Generator, strength: float, height: int, width: int) -> None:
        self.rng, self.k, self.h, self.w = rng, strength, height, width
        self.occluders: list[dict] = []
        self.base_gain = rng.uniform(0.85, 1.15)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        rng, k = self.rng, self.k
        h, w = self.h, self.w
        draws = rng.random(5)  # always the same number of draws per frame (stable streams)
        out = img
        if k > 0:
            # blur
            if draws[0] < 0.15 * k:
                n = max(3, int(round(w / 256 * rng.uniform(3, 9)))) | 1
                if rng.random() < 0.5:
                    kern = np.zeros((n, n), np.float32)
                    ang = rng.uniform(0, math.pi)
                    cc = n // 2
                    for s in np.linspace(-cc, cc, 2 * n):
                        kern[int(round(cc + s * math.sin(ang))), int(round(cc + s * math.cos(ang)))] = 1
                    out = cv2.filter2D(out, -1, kern / kern.sum())
                else:
                    out = cv2.GaussianBlur(out, (0, 0), w / 256 * rng.uniform(1.0, 2.5))
            # brief occluders: semi-transparent blobs that live 1..3 frames
            if draws[1] < 0.12 * k:
                for _ in range(int(rng.integers(1, 4))):
                    self.occluders.append({
                        "life": int(rng.integers(1, 4)), "cx": rng.uniform(0, w), "cy": rng.uniform(0, h),
                        "rx": w * rng.uniform(0.05, 0.2), "ry": h * rng.uniform(0.08, 0.35),
                        "ang": rng.uniform(0, 180), "alpha": min(0.9, rng.uniform(0.45, 0.8) * min(k, 1.2)),
                        "color": np.asarray([(70, 50, 30), (240, 240, 235), (20, 20, 20), (150, 150, 150)][
                            int(rng.integers(0, 4))], np.float32),
                        "vx": rng.normal(0, w * 0.01), "vy": rng.normal(0, h * 0.01)})
            if self.occluders:
                mask = np.zeros((h, w), np.float32)
                col = np.zeros((h, w, 3), np.float32)
                for o in self.occluders:
                    m = np.zeros((h, w), np.float32)
                    cv2.ellipse(m, (int(o["cx"]), int(o["cy"])), (max(1, int(o["rx"])), max(1, int(o["ry"]))),
                                o["ang"], 0, 360, 1.0, -1)
                    m = cv2.GaussianBlur(m, (0, 0), max(1.0, o["rx"] * 0.25)) * o["alpha"]
                    col = col * (1 - m[..., None]) + o["color"] * m[..., None]
                    mask = mask + m * (1 - mask)
                    o["life"] -= 1
                    o["cx"] += o["vx"]
                    o["cy"] += o["vy"]
                with np.errstate(invalid="ignore", divide="ignore"):
                    col = np.where(mask[..., None] > 1e-6, col / np.maximum(mask[..., None], 1e-6), 0)
                out = out * (1 - mask[..., None]) + col * mask[..., None]
                self.occluders = [o for o in self.occluders if o["life"] > 0]
            # brightness flicker (auto-exposure jumps)
            gain = self.base_gain * (rng.uniform(0.6, 1.45) if draws[2] < 0.25 * k else rng.normal(1.0, 0.03))
            out = out * gain + (rng.normal(0, 8) if draws[3] < 0.15 * k else 0.0)
            # sensor noise, with bursts
            sigma = 2.0 + (rng.uniform(8, 30) * min(k, 1.5) if draws[4] < 0.25 * k else 0.0)
            out = out + rng.normal(0, sigma, out.shape).astype(np.float32)
        return np.clip(out, 0, 255)


# ---------------------------------------------------------------------------------------- sequences
@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8 trainIds
    flow: np.ndarray | None  # (H, W, 2) float32 backward flow to the previous frame (None for frame 0)
    flow_valid: np.ndarray | None  # (H, W) bool
    clean: np.ndarray | None = None  # image before nuisances (on request)


def intrinsics(cfg: SynthDriveConfig) -> tuple[float, float, float]:
    """(f, cx, cy) in pixels for pixel centres at integer coordinates."""
    f = 0.5 * cfg.width / math.tan(math.radians(cfg.hfov_deg) / 2)
    return f, (cfg.width - 1) / 2, (cfg.height - 1) / 2


def sequence_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    code = sum((i + 1) * ord(ch) for i, ch in enumerate(split))
    return np.random.default_rng(np.random.SeedSequence([seed, code, index, stream]))


def render_sequence(cfg: SynthDriveConfig, seed: int, split: str = "train", index: int = 0,
                    keep_clean: bool = False):
    """Yield the :class:`Frame` s of one sequence (deterministic in cfg, seed, split, index)."""
    cfg.validate()
    dt = 1.0 / cfg.fps
    world = World(sequence_rng(seed, split, index, 0), cfg.frames * dt, cfg.view_distance)
    nuis = Nuisances(sequence_rng(seed, split, index, 1), cfg.nuisance, cfg.height, cfg.width)
    f, cx, cy = intrinsics(cfg)
    h, w, ss = cfg.height, cfg.width, cfg.supersample
    v1, u1 = np.mgrid[0:h, 0:w].astype(np.float64)
    if ss > 1:
        grid = (np.arange(h * ss) + 0.5) / ss - 0.5, (np.arange(w * ss) + 0.5) / ss - 0.5
        vs, us = np.meshgrid(grid[0], grid[1], indexing="ij")
    prev_surf = None
    for i in range(cfg.frames):
        t = i * dt
        ray = world.cast(t, u1, v1, f, cx, cy)
        label = world.label(ray["surf"], ray["point"])
        if ss > 1:
            img = world.shade(t, world.cast(t, us, vs, f, cx, cy))
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        else:
            img = world.shade(t, ray)
        clean = np.clip(img, 0, 255).round().astype(np.uint8) if keep_clean else None
        img = nuis(img)
        flow = valid = None
        if prev_surf is not None:
            flow, valid = world.backward_flow(t, t - dt, ray, prev_surf, f, cx, cy)
        prev_surf = ray["surf"]
        yield Frame(np.ascontiguousarray(img.round().astype(np.uint8)), label, flow, valid, clean)


# ---------------------------------------------------------------------------------------- files
def write_flow_png(path: str | os.PathLike[str], flow: np.ndarray, valid: np.ndarray) -> None:
    """KITTI flow encoding: 16-bit PNG, R = u * 64 + 2^15, G = v * 64 + 2^15, B = valid."""
    enc = np.empty((*flow.shape[:2], 3), np.uint16)
    enc[..., 2] = np.clip(np.rint(flow[..., 0] * 64 + 2 ** 15), 0, 65535)
    enc[..., 1] = np.clip(np.rint(flow[..., 1] * 64 + 2 ** 15), 0, 65535)
    enc[..., 0] = valid.astype(np.uint16)
    if not cv2.imwrite(str(path), enc):
        raise OSError(f"could not write {path}")


def read_flow_png(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`write_flow_png`: (flow (H, W, 2) float32, valid (H, W) bool)."""
    enc = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if enc is None or enc.dtype != np.uint16 or enc.ndim != 3:
        raise ValueError(f"{path} is not a KITTI-format 16-bit flow PNG")
    flow = np.stack([(enc[..., 2].astype(np.float32) - 2 ** 15) / 64,
                     (enc[..., 1].astype(np.float32) - 2 ** 15) / 64], -1)
    return flow, enc[..., 0] > 0


def frame_stem(seq: int, frame: int, city: str = CITY) -> str:
    return f"{city}_{seq:06d}_{frame:06d}"


def _write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"could not write {path}")


def write_dataset(out: str | os.PathLike[str], cfg: SynthDriveConfig, seed: int = 0,
                  splits: dict[str, int] | None = None, bags: bool = True, overwrite: bool = False,
                  progress: bool = True) -> Path:
    """Generate ``splits`` ({split: number of sequences}) into ``out`` (see module docstring).

    The tree is built in a temporary sibling folder and renamed onto ``out`` when complete, so an
    interrupted run leaves no partial dataset. ``out`` must not exist unless ``overwrite``.
    """
    from tqdm import tqdm

    cfg.validate()
    splits = {"train": 20, "val": 4} if splits is None else splits
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    lut = train_to_label_id()
    f, cx, cy = intrinsics(cfg)
    total = sum(splits.values()) * cfg.frames
    bar = tqdm(total=total, desc="synthdrive", unit="frame", disable=not progress)
    meta = {"generator": "stt_train.synthdrive", "version": GENERATOR_VERSION, "seed": seed, "config": asdict(cfg),
            "intrinsics": {"f": f, "cx": cx, "cy": cy}, "city": CITY, "splits": {}}
    try:
        for split, n in splits.items():
            img_dir = tmp / "leftImg8bit_sequence" / split / CITY
            gt_dir = tmp / "gtFine" / split / CITY
            flow_dir = tmp / "flow" / split / CITY
            for d in (img_dir, gt_dir, flow_dir):
                d.mkdir(parents=True, exist_ok=True)
            meta["splits"][split] = []
            for seq in range(n):
                bag = None
                if bags:
                    from stt_train.bagwriter import SegBagWriter

                    (tmp / "bags" / split).mkdir(parents=True, exist_ok=True)
                    bag = SegBagWriter(tmp / "bags" / split / f"{CITY}_{seq:06d}")
                try:
                    for i, fr in enumerate(render_sequence(cfg, seed, split, seq)):
                        stem = frame_stem(seq, i)
                        _write_png(img_dir / f"{stem}_leftImg8bit.png", cv2.cvtColor(fr.image, cv2.COLOR_RGB2BGR))
                        _write_png(gt_dir / f"{stem}_gtFine_labelTrainIds.png", fr.label)
                        _write_png(gt_dir / f"{stem}_gtFine_labelIds.png", lut[fr.label])
                        if fr.flow is not None:
                            write_flow_png(flow_dir / f"{stem}_flowBackward.png", fr.flow, fr.flow_valid)
                        if bag is not None:
                            bag.write(fr.image, fr.label, int(round(i * 1e9 / cfg.fps)))
                        bar.update(1)
                finally:
                    if bag is not None:
                        bag.close()
                meta["splits"][split].append(f"{CITY}_{seq:06d}")
        (tmp / "synthdrive.json").write_text(json.dumps(meta, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stt-synthdrive", description="Generate SynthDrive, a synthetic labelled driving video dataset with "
        "exact optical flow, in the Cityscapes video layout plus one rosbag2 MCAP per sequence.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  stt-synthdrive --out data/synthdrive --train 40 --val 8 --height 128 --width 256\n"
               "  stt-synthdrive --out /tmp/sd --train 2 --val 1 --frames 12 --no-bags --seed 3\n"
               "  python -m stt_train.synthdrive --out data/sd_clean --nuisance 0   # no nuisances\n"
               "The same seed and settings always give the same dataset, byte for byte.")
    parser.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=20, help="training sequences")
    parser.add_argument("--val", type=int, default=4, help="validation sequences (held out: own random streams)")
    parser.add_argument("--test", type=int, default=0, help="test sequences")
    d = SynthDriveConfig()
    parser.add_argument("--height", type=int, default=d.height)
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--frames", type=int, default=d.frames, help="frames per sequence")
    parser.add_argument("--fps", type=float, default=d.fps)
    parser.add_argument("--hfov", type=float, default=d.hfov_deg, help="horizontal field of view, degrees")
    parser.add_argument("--supersample", type=int, default=d.supersample, help="anti-aliasing factor (1 = off)")
    parser.add_argument("--nuisance", type=float, default=d.nuisance,
                        help="nuisance strength (noise, flicker, blur, occluders); 0 = clean")
    parser.add_argument("--no-bags", action="store_true", help="do not write the rosbag2 MCAP files")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    cfg = SynthDriveConfig(args.height, args.width, args.frames, args.fps, args.hfov, args.supersample,
                           args.nuisance)
    try:
        cfg.validate()
        splits = {k: v for k, v in (("train", args.train), ("val", args.val), ("test", args.test)) if v > 0}
        if not splits:
            raise ValueError("no sequences requested: give --train, --val or --test > 0")
        t0 = time.perf_counter()
        out = write_dataset(args.out, cfg, args.seed, splits, bags=not args.no_bags, overwrite=args.overwrite)
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"stt-synthdrive: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {sum(splits.values())} sequences x {cfg.frames} frames to {out} in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
