"""Colour of the cast rays: textured ground with lane markings, sky with clouds, objects with their
patterns (windows, car windows, people, sign faces, traffic lights) lit by face normal, then fog."""

from __future__ import annotations

import numpy as np

from stt_train.synthdrive.config import GROUND_ID, PAT_CAR, PAT_LIGHT, PAT_PERSON, PAT_SIGN, PAT_WINDOWS, SKY_ID
from stt_train.synthdrive.world import World


def shade(world: World, t: float, ray: dict[str, np.ndarray]) -> np.ndarray:
    """RGB float32 (0..255) of cast rays, before nuisances."""
    surf, p, axis, d, depth = ray["surf"], ray["point"], ray["axis"], ray["dir"], ray["depth"]
    h, w = surf.shape
    img = np.zeros((h, w, 3), np.float32)
    a = world.arr
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
        road = axx < world.street.road_half
        walk = (~road) & (axx < world.street.road_half + world.street.walk_w)
        col = np.empty((x.size, 3), np.float32)
        col[:] = world.appearance.terrain_color
        col[road] = world.appearance.road_color
        col[walk] = world.appearance.walk_color
        tex = np.where(road, world.appearance.tex(0, x, z, 6.0), np.where(walk, world.appearance.tex(1, x, z, 5.0),
                                                               world.appearance.tex(2, x, z, 4.0)))
        col *= (0.7 + 0.6 * tex)[:, None]
        # lane markings (labelled road, as in Cityscapes)
        mark = np.zeros(x.size, bool)
        for k in range(-world.street.lanes + 1, world.street.lanes):
            xm = k * world.street.lane_w
            dashed = (np.mod(z + 3.0 * k, 9.0) < 3.0) if k != 0 or world.street.lanes > 1 else np.ones(x.size, bool)
            mark |= (np.abs(x - xm) < 0.07 + 0.05 * (k == 0)) & dashed
        mark |= np.abs(axx - (world.street.road_half - 0.3)) < 0.08
        col[mark & road] = (225, 225, 215)
        tiles = walk & ((np.mod(x, 1.0) < 0.05) | (np.mod(z, 1.0) < 0.05))
        col[tiles] *= 0.75
        curb = walk & (axx - world.street.road_half < 0.2)
        col[curb] = (190, 185, 180)
        img[g] = col * world.appearance.light
    # --- sky
    sk = surf == SKY_ID
    if sk.any():
        dn = d[sk] / np.linalg.norm(d[sk], axis=1, keepdims=True)
        elev = np.clip(-dn[:, 1], 0, 1)[:, None]
        col = world.appearance.sky_horizon * (1 - elev) ** 2 + world.appearance.sky_top * (1 - (1 - elev) ** 2)
        az = np.arctan2(dn[:, 0], dn[:, 2])
        cloud = world.appearance.tex(5, az * 40.0, elev[:, 0] * 60.0, 64.0)
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
            tv[m] = world.appearance.tex(int(k), sc[m], tc[m], 3.0 if k == 4 else 6.0)
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
        lam = np.clip(-(normal @ world.appearance.sun), 0, None)
        img[is_obj] = col * ((0.55 + 0.6 * lam) * world.appearance.light)[:, None]
    # fog
    fin = np.isfinite(depth)
    fog_a = np.zeros((h, w), np.float32)
    fog_a[fin] = 1 - np.exp(-depth[fin] / world.appearance.fog)
    img = img * (1 - fog_a[..., None]) + world.appearance.sky_horizon * fog_a[..., None]
    return img
