"""Where SynthDrive's objects stand: roadside buildings, hedges, walls and fences, trees, street
furniture (lamps, signs, traffic lights), parked and moving cars and walking pedestrians."""

from __future__ import annotations

import numpy as np

from stt_train.synthdrive.config import (
    BUILDING,
    CAR,
    FENCE,
    LIGHT,
    PAT_CAR,
    PAT_LIGHT,
    PAT_NONE,
    PAT_PERSON,
    PAT_SIGN,
    PAT_WINDOWS,
    PERSON,
    POLE,
    SIGN,
    VEGETATION,
    WALL,
)
from stt_train.synthdrive.elements import Camera, Street, Surfaces, jitter


class SceneBuilder:
    """Draws a sequence's objects from ``rng`` along the street, over the stretch the camera sees."""

    def __init__(self, rng: np.random.Generator, street: Street, camera: Camera, duration: float,
                 view_distance: float) -> None:
        self.rng, self.street, self.camera = rng, street, camera
        self.duration, self.view_distance = duration, view_distance
        self.surf = Surfaces()

    def build(self) -> Surfaces:
        """Every object of the sequence, in the order they are drawn."""
        rng = self.rng
        z_start, z_end = -30.0, self.camera.cam_z(self.duration) + self.view_distance + 20
        rh, ww = self.street.road_half, self.street.walk_w
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
                    color = jitter(rng, tuple(rng.choice([(140, 120, 100), (170, 160, 150), (120, 110, 115),
                                                          (190, 170, 140), (100, 90, 80)])), 0.15)
                    self._side_box(side, x_in, x_in + depth, z, z + length, height, BUILDING, color, 3,
                                   PAT_WINDOWS)
                elif kind == 1:  # hedge
                    height = rng.uniform(1.0, 3.0)
                    self._side_box(side, x_in, x_in + rng.uniform(1, 3), z, z + length, height, VEGETATION,
                                   jitter(rng, (60, 100, 45), 0.2), 4)
                    if rng.random() < 0.6:  # building behind the hedge
                        xb = x_in + rng.uniform(4, 10)
                        self._side_box(side, xb, xb + 15, z, z + length, rng.uniform(6, 20), BUILDING,
                                       jitter(rng, (150, 140, 130), 0.2), 3, PAT_WINDOWS)
                elif kind == 2:  # wall or fence, terrain behind it
                    cls = WALL if rng.random() < 0.4 else FENCE
                    height = rng.uniform(0.8, 2.2)
                    color = jitter(rng, (150, 150, 160) if cls == WALL else (140, 120, 100), 0.15)
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
        return self.surf

    def _side_box(self, side, x0, x1, z0, z1, height, cls, color, tex, pattern=PAT_NONE) -> None:
        xa, xb = (x0, x1) if side > 0 else (-x1, -x0)
        self.surf.box((xa, -height, z0), (xb, 0.0, z1), cls, color, tex, pattern)

    def _tree(self, x, z) -> None:
        rng = self.rng
        h = rng.uniform(2.0, 3.5)
        self.surf.box((x - 0.15, -h - 0.5, z - 0.15), (x + 0.15, 0.0, z + 0.15), VEGETATION,
                      jitter(rng, (90, 70, 50), 0.2), 3)
        green = jitter(rng, (70, 115, 45), 0.2)
        for _ in range(int(rng.integers(2, 4))):
            r = rng.uniform(1.0, 2.2)
            c = (x + rng.uniform(-0.8, 0.8), -h - r * rng.uniform(0.5, 1.1), z + rng.uniform(-0.8, 0.8))
            self.surf.ellipsoid(c, (r, r * rng.uniform(0.7, 1.0), r), VEGETATION, jitter(rng, green, 0.08), 4)

    def _lamp(self, x, z, side) -> None:
        rng = self.rng
        h = rng.uniform(6, 9)
        color = jitter(rng, (120, 120, 125), 0.15)
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
        color = jitter(rng, color, 0.1)
        self.surf.box((x - w / 2, -h, z), (x + w / 2, -0.12, z + length), CAR, color, 3, PAT_CAR, vel)
        # wheels/undercarriage strip so cars touch the ground
        self.surf.box((x - w / 2 + 0.1, -0.15, z + 0.4), (x + w / 2 - 0.1, 0.0, z + length - 0.4), CAR,
                      (25, 25, 25), 0, PAT_NONE, vel)

    def _cars(self, z0, z1) -> None:
        rng = self.rng
        rh = self.street.road_half
        for side in (-1, 1):  # parked along the curb
            z = z0 + rng.uniform(0, 20)
            while z < z1:
                if rng.random() < 0.45:
                    self._car_box(side * (rh - 1.1), z, rng.uniform(3.8, 4.8), (0.0, 0.0, 0.0))
                z += rng.uniform(5.5, 15)
        lanes = [(k + 0.5) * self.street.lane_w for k in range(self.street.lanes)]
        for lane_x in lanes:  # same direction, (mostly) ahead of the camera
            for _ in range(int(rng.integers(1, 4))):
                v = self.camera.speed * rng.uniform(0.6, 1.3)
                z = self.camera.cam_z(0) + rng.uniform(8, 90)
                cam = self.camera
                if abs(lane_x - cam.cam_x0) < 0.1 and z < cam.cam_z(self.duration) + 12 - (v - cam.speed) * 0:
                    z = max(z, 12 + max(0.0, (cam.speed - v) * self.duration))  # no collision in our lane
                self._car_box(lane_x + rng.uniform(-0.3, 0.3), z, rng.uniform(3.8, 4.8), (0.0, 0.0, v))
            for _ in range(int(rng.integers(1, 5))):  # oncoming
                v = -self.camera.speed * rng.uniform(0.6, 1.3)
                z = self.camera.cam_z(0) + rng.uniform(20, 200)
                self._car_box(-lane_x + rng.uniform(-0.3, 0.3), z, rng.uniform(3.8, 4.8), (0.0, 0.0, v))

    def _pedestrians(self, z0, z1) -> None:
        rng = self.rng
        rh, ww = self.street.road_half, self.street.walk_w
        n = int(rng.integers(4, 16))
        for _ in range(n):
            side = rng.choice([-1, 1])
            x = side * (rh + rng.uniform(0.5, ww - 0.4))
            z = rng.uniform(self.camera.cam_z(0) + 5, min(z1, self.camera.cam_z(0) + 90))
            v = rng.choice([-1, 1]) * rng.uniform(0.7, 1.8)
            vx = rng.uniform(-0.2, 0.2)
            h = rng.uniform(1.5, 1.95)
            shirt = jitter(rng, tuple(rng.choice([(200, 50, 50), (50, 80, 160), (230, 230, 220), (40, 40, 40),
                                                   (60, 140, 60)])), 0.15)
            self.surf.box((x - 0.25, -h, z - 0.18), (x + 0.25, 0.0, z + 0.18), PERSON, shirt, 3, PAT_PERSON,
                          (vx, 0.0, v))

