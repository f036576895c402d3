"""Per-frame nuisances that change the image but never the labels: blur, brief occluders, brightness
flicker and sensor noise."""

from __future__ import annotations

import math

import cv2
import numpy as np


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

