"""SynthDrive's settings, the class and surface ids it uses, and the camera intrinsics."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def intrinsics(cfg: SynthDriveConfig) -> tuple[float, float, float]:
    """(f, cx, cy) in pixels for pixel centres at integer coordinates."""
    f = 0.5 * cfg.width / math.tan(math.radians(cfg.hfov_deg) / 2)
    return f, (cfg.width - 1) / 2, (cfg.height - 1) / 2

