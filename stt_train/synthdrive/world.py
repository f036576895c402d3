"""One sequence's world: camera path, street, appearance and objects, all drawn from its random stream.

:class:`World` draws them in one fixed order (the order of the draws is what makes a seed give the
same dataset byte for byte); :mod:`stt_train.synthdrive.layout` places the objects.
"""

from __future__ import annotations

import math

import numpy as np

from stt_train.synthdrive.elements import Appearance, Camera, Street, jitter, noise_texture
from stt_train.synthdrive.layout import SceneBuilder


class World:
    """One sequence's camera path, street, appearance and objects, all drawn from ``rng``."""

    def __init__(self, rng: np.random.Generator, duration: float, view_distance: float = 160.0) -> None:
        self.duration = duration
        self.view_distance = view_distance
        # the draws, in the order every seed was generated with
        speed, speed_wobble, cam_height = rng.uniform(6.0, 13.0), rng.uniform(0.0, 0.08), rng.uniform(1.25, 1.7)
        lanes, lane_w = int(rng.integers(1, 3)), rng.uniform(3.0, 3.6)
        self.camera = Camera(
            speed, speed_wobble, cam_height, lane_w * (lanes - 0.5), sway_amp=rng.uniform(0.05, 0.5),
            sway_period=rng.uniform(2.0, 6.0), sway_phase=rng.uniform(0, 2 * math.pi),
            pitch0=math.radians(rng.uniform(1.0, 4.0)), bounce_amp=math.radians(rng.uniform(0.05, 0.5)),
            bounce_freq=rng.uniform(0.8, 2.5), yaw_amp=math.radians(rng.uniform(0.0, 1.5)))
        self.appearance = _draw_appearance(rng)
        self.street = Street(lanes, lane_w, walk_w=rng.uniform(2.0, 4.5))
        self.surf = SceneBuilder(rng, self.street, self.camera, duration, view_distance).build()
        self.arr = self.surf.arrays()


def _draw_appearance(rng: np.random.Generator) -> Appearance:
    sun = np.array([rng.uniform(-0.6, 0.6), -rng.uniform(0.4, 0.9), rng.uniform(-0.5, 0.5)])
    sun /= np.linalg.norm(sun)
    light = rng.uniform(0.8, 1.15)
    sky_top = np.array(jitter(rng, (70, 120, 200), 0.15), np.float32)
    sky_horizon = np.array(jitter(rng, (185, 205, 225), 0.08), np.float32)
    fog = rng.uniform(150.0, 400.0)
    road_color = tuple(float(v) for v in np.array([95, 95, 100]) * rng.uniform(0.75, 1.2))
    walk_color = jitter(rng, (165, 150, 150), 0.12)
    terrain_color = jitter(rng, (110, 150, 70), 0.15)
    textures = [
        noise_texture(rng, (8, 32, 128), (0.3, 0.4, 0.3)),  # asphalt
        noise_texture(rng, (4, 16, 64), (0.4, 0.3, 0.3)),  # pavement
        noise_texture(rng, (8, 32, 128), (0.3, 0.3, 0.4)),  # grass
        noise_texture(rng, (4, 16, 64), (0.5, 0.3, 0.2)),  # facade
        noise_texture(rng, (16, 64, 128), (0.3, 0.4, 0.3)),  # foliage
        noise_texture(rng, (4, 8, 16), (0.5, 0.3, 0.2)),  # clouds
    ]
    return Appearance(sun, light, sky_top, sky_horizon, fog, road_color, walk_color, terrain_color, textures)
