"""Clip-consistent augmentation: one random draw per clip, applied identically to every frame.

Random scale (bilinear for images, nearest for the label), random crop (padding with the mean
colour and label 255 where the scaled clip is smaller than the crop), horizontal flip, and
colour jitter (brightness, contrast, saturation). Randomness comes only from the generator passed
in, so a clip's augmentation is a pure function of its seed (what makes resume and multi-process
training reproducible).

Optical flow between the clip's frames (``flows``, for the temporal loss) follows the geometry:
scaled with the frames (nearest neighbour, vectors multiplied by the scale), cropped, padded as not
valid, and mirrored with its horizontal component negated, so it still maps each pixel of a frame
to where it was in the frame before.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IGNORE = 255


@dataclass
class ClipAugment:
    crop: tuple[int, int] | None = None  # (height, width); None = no crop
    scale: tuple[float, float] = (1.0, 1.0)  # random scale range
    base_size: tuple[int, int] | None = None  # resize to (height, width) before the random scale
    flip: bool = True
    color: float = 0.0  # jitter strength: brightness/contrast/saturation factors in [1 - color, 1 + color]
    pad_value: tuple[int, int, int] = (124, 116, 104)

    def __call__(self, frames: list[np.ndarray], label: np.ndarray, rng: np.random.Generator,
                 flows: list[tuple[np.ndarray, np.ndarray]] | None = None):
        """-> (frames, label), or (frames, label, flows) when ``flows`` is given: a list of (flow (H, W, 2)
        float32 in pixels, valid (H, W) bool), transformed with the frames."""
        draws = rng.random(8)  # fixed number of draws: one stream per clip
        h0, w0 = h, w = label.shape
        if self.base_size is not None:
            h, w = self.base_size
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * draws[0]
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        if (nh, nw) != label.shape:
            frames = [cv2.resize(f, (nw, nh), interpolation=cv2.INTER_LINEAR) for f in frames]
            label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
            if flows:
                fy, fx = nh / h0, nw / w0
                flows = [(cv2.resize(f, (nw, nh), interpolation=cv2.INTER_NEAREST) * np.float32([fx, fy]),
                          cv2.resize(v.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0)
                         for f, v in flows]
        if self.crop is not None:
            ch, cw = self.crop
            ph, pw = max(ch - nh, 0), max(cw - nw, 0)
            if ph or pw:
                frames = [cv2.copyMakeBorder(f, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=self.pad_value)
                          for f in frames]
                label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE)
                if flows:
                    flows = [(np.pad(f, ((0, ph), (0, pw), (0, 0))), np.pad(v, ((0, ph), (0, pw))))
                             for f, v in flows]
            hh, ww = label.shape
            y0 = int(draws[1] * (hh - ch + 1))
            x0 = int(draws[2] * (ww - cw + 1))
            frames = [f[y0:y0 + ch, x0:x0 + cw] for f in frames]
            label = label[y0:y0 + ch, x0:x0 + cw]
            if flows:
                flows = [(f[y0:y0 + ch, x0:x0 + cw], v[y0:y0 + ch, x0:x0 + cw]) for f, v in flows]
        if self.flip and draws[3] < 0.5:
            frames = [f[:, ::-1] for f in frames]
            label = label[:, ::-1]
            if flows:
                flows = [(f[:, ::-1] * np.float32([-1, 1]), v[:, ::-1]) for f, v in flows]
        if self.color > 0:
            b = 1 + self.color * (2 * draws[4] - 1)
            c = 1 + self.color * (2 * draws[5] - 1)
            sat = 1 + self.color * (2 * draws[6] - 1)
            out = []
            for f in frames:
                x = f.astype(np.float32) * b
                mean = x.mean()
                x = (x - mean) * c + mean
                grey = x.mean(2, keepdims=True)
                x = (x - grey) * sat + grey
                out.append(np.clip(x, 0, 255).astype(np.uint8))
            frames = out
        frames, label = [np.ascontiguousarray(f) for f in frames], np.ascontiguousarray(label)
        if flows is None:
            return frames, label
        return frames, label, [(np.ascontiguousarray(f, np.float32), np.ascontiguousarray(v, bool)) for f, v in flows]
