"""Ground truth of the cast rays: Cityscapes trainIds and the exact backward optical flow."""

from __future__ import annotations

import numpy as np

from stt_train.synthdrive.config import GROUND_ID, ROAD, SIDEWALK, SKY, SKY_ID, TERRAIN
from stt_train.synthdrive.world import World


def label(world: World, surf: np.ndarray, point: np.ndarray) -> np.ndarray:
    """trainIds of cast rays."""
    lut = np.concatenate([[SKY, ROAD], world.arr["cls"]]).astype(np.uint8)
    lab = lut[surf]
    g = surf == GROUND_ID
    ax = np.abs(point[..., 0])
    lab[g & (ax >= world.street.road_half)] = SIDEWALK
    lab[g & (ax >= world.street.road_half + world.street.walk_w)] = TERRAIN
    return lab


def backward_flow(world: World, t: float, t_prev: float, ray: dict[str, np.ndarray], prev_surf: np.ndarray,
                  f: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact backward flow (H, W, 2) float32 from frame t to frame t_prev, and its valid mask
    (inside the previous frame and visible there)."""
    surf, p, d = ray["surf"], ray["point"], ray["dir"]
    h, w = surf.shape
    a = world.arr
    obj = np.clip(surf - 2, 0, None)
    vel = np.where((surf >= 2)[..., None], a["vel"][obj], 0.0)
    p_prev = p - vel * (t - t_prev)
    c, rot = world.camera.pose(t_prev)
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
