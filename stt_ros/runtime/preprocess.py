"""Image -> network input (resize, optional letterbox) and class map -> camera size (nearest)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Geometry:
    """How an input image was mapped onto the network input, to invert it afterwards."""

    in_height: int
    in_width: int
    # region of the network input holding the (resized) image
    top: int
    left: int
    height: int
    width: int


class Preprocessor:
    """Resize an RGB uint8 image (H, W, 3) to the network size.

    ``stretch`` resizes to exactly (net_h, net_w); ``letterbox`` keeps the aspect ratio and pads
    the rest (centred) with ``pad_value`` (the mean colour, so padding normalises to zero).
    Normalisation itself happens in the backend, on the model's device.
    """

    def __init__(self, net_height: int, net_width: int, mode: str = "stretch",
                 pad_value: tuple[int, int, int] = (124, 116, 104)) -> None:
        if mode not in ("stretch", "letterbox"):
            raise ValueError(f"resize mode {mode!r}: choose stretch or letterbox")
        self.net_height, self.net_width, self.mode = net_height, net_width, mode
        self.pad_value = pad_value

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        if h == 0 or w == 0:
            raise ValueError(f"empty image {image.shape}")
        nh, nw = self.net_height, self.net_width
        if self.mode == "stretch" or (h * nw == w * nh):
            out = image if (h, w) == (nh, nw) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            return np.ascontiguousarray(out), Geometry(h, w, 0, 0, nh, nw)
        scale = min(nh / h, nw / w)
        rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (nh - rh) // 2, (nw - rw) // 2
        out = np.empty((nh, nw, 3), np.uint8)
        out[:] = self.pad_value
        out[top:top + rh, left:left + rw] = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR)
        return out, Geometry(h, w, top, left, rh, rw)


def postprocess(class_map: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Network-size class map -> input-size class map, nearest neighbour (ids never blend)."""
    g = geometry
    region = class_map[g.top:g.top + g.height, g.left:g.left + g.width]
    if region.shape == (g.in_height, g.in_width):
        return np.ascontiguousarray(region)
    return cv2.resize(region, (g.in_width, g.in_height), interpolation=cv2.INTER_NEAREST)
