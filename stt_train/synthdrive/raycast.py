"""Ray casting: for every pixel, the surface its ray hits (ground plane, sky, or the nearest object),
the distance, the hit point and the face. Vectorised per object over its screen rectangle."""

from __future__ import annotations

import math

import numpy as np

from stt_train.synthdrive.config import GROUND_ID, KIND_BOX
from stt_train.synthdrive.world import World


def cast(world: World, t: float, u: np.ndarray, v: np.ndarray, f: float, cx: float, cy: float) -> dict[str, np.ndarray]:
    """Cast the rays of pixel coordinates (u, v) (2-D arrays) at time t.

    Returns depth along the ray (inf for sky), surface id, hit point (world, at time t), the
    axis of the box face hit (0 x, 1 y, 2 z; 3 for ellipsoids, -1 ground/sky) and ray directions.
    """
    c, rot = world.camera.pose(t)
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
    a = world.arr
    cz = c[2]
    rot_t = rot.T
    for i in range(len(a["kind"])):
        lo, hi, vel = a["lo"][i], a["hi"][i], a["vel"][i]
        if a["kind"][i] == KIND_BOX:
            blo, bhi = lo + vel * t, hi + vel * t
        else:
            blo, bhi = lo + vel * t - hi, lo + vel * t + hi
        if bhi[2] < cz - 2 or blo[2] > cz + world.view_distance:
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

