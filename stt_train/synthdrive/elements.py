"""The elements a SynthDrive world is made of: its objects (:class:`Surfaces`), camera path, street
cross-section and appearance (light, sky, colours, noise textures)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from stt_train.synthdrive.config import KIND_BOX, KIND_ELLIPSOID, PAT_NONE, TEX_SIZE


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


def noise_texture(rng: np.random.Generator, octaves: tuple[int, ...], weights: tuple[float, ...]) -> np.ndarray:
    """Tileable value noise in [0, 1], (TEX_SIZE, TEX_SIZE) float32."""
    acc = np.zeros((TEX_SIZE, TEX_SIZE), np.float32)
    for n, w in zip(octaves, weights, strict=True):
        grid = rng.random((n, n)).astype(np.float32)
        big = cv2.resize(np.tile(grid, (3, 3)), (3 * TEX_SIZE, 3 * TEX_SIZE), interpolation=cv2.INTER_CUBIC)
        acc += w * big[TEX_SIZE:2 * TEX_SIZE, TEX_SIZE:2 * TEX_SIZE]
    acc -= acc.min()
    return acc / max(float(acc.max()), 1e-6)


def jitter(rng: np.random.Generator, color: tuple[float, float, float], amount: float) -> tuple[float, float, float]:
    c = np.asarray(color, np.float64) * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, amount * 40, 3)
    return tuple(float(v) for v in np.clip(c, 5, 250))


@dataclass
class Camera:
    """The camera's path: forward at a wobbling speed, swaying laterally (yawing with the sway) and
    pitching with the road (bounce)."""

    speed: float
    speed_wobble: float
    cam_height: float
    cam_x0: float  # centre of the rightmost lane (right-hand traffic)
    sway_amp: float
    sway_period: float
    sway_phase: float
    pitch0: float
    bounce_amp: float
    bounce_freq: float
    yaw_amp: float

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



@dataclass
class Street:
    """The street's cross-section: lanes per direction, sidewalks beyond the road edges."""

    lanes: int  # per direction
    lane_w: float
    walk_w: float

    @property
    def road_half(self) -> float:
        return self.lanes * self.lane_w


@dataclass
class Appearance:
    """Light, sky, fog, ground colours and the sequence's noise textures."""

    sun: np.ndarray
    light: float
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    fog: float
    road_color: tuple[float, float, float]
    walk_color: tuple[float, float, float]
    terrain_color: tuple[float, float, float]
    textures: list[np.ndarray]

    def tex(self, k: int, s: np.ndarray, t: np.ndarray, tile: float) -> np.ndarray:
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
