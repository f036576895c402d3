"""Palettes, colourised class masks and overlays (RGB uint8 in and out)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# CamVid's 11 classes in the usual SegNet order, with the dataset's colours.
CAMVID_CLASSES = ("sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist")
CAMVID_COLORS = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
                 (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))


# Cityscapes' 19 train classes in trainId order with the dataset's colours (cityscapesscripts'
# labels.py; inline so the node needs no training dependency: a test checks them against it).
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle")
CITYSCAPES_COLORS = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
                     (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
                     (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))


def class_names(num_classes: int, dataset: str = "cityscapes") -> list[str]:
    """Names of the class ids for reports: Cityscapes' 19 train classes or CamVid's 11 when the count
    fits the dataset (``cityscapes``/``synthdrive`` use Cityscapes' ids), else ``class_<i>``."""
    if num_classes == 19 and dataset in ("cityscapes", "synthdrive"):
        return list(CITYSCAPES_CLASSES)
    if num_classes == 11 and dataset == "camvid":
        return list(CAMVID_CLASSES)
    return [f"class_{i}" for i in range(num_classes)]


def make_palette(colors: Sequence[Sequence[int]]) -> np.ndarray:
    """A (256, 3) uint8 lookup table: class id -> colour; ids without a colour are black."""
    lut = np.zeros((256, 3), np.uint8)
    arr = np.asarray(colors, dtype=np.int64).reshape(-1, 3)
    if len(arr) > 256 or arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        raise ValueError("a palette holds at most 256 RGB colours with components in 0..255")
    lut[: len(arr)] = arr
    return lut


def palette(name: str = "cityscapes") -> np.ndarray:
    """Named palette: ``cityscapes`` (19 trainIds, official colours) or ``camvid`` (11 classes)."""
    if name == "cityscapes":
        return make_palette(CITYSCAPES_COLORS)
    if name == "camvid":
        return make_palette(CAMVID_COLORS)
    raise ValueError(f"unknown palette {name!r}: choose cityscapes or camvid, or give colours")


def colorize(mask: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Class-id mask (H, W) uint8 -> RGB (H, W, 3) uint8."""
    if mask.dtype != np.uint8:
        raise ValueError(f"mask must be uint8 class ids, got {mask.dtype}")
    return lut[mask]


def overlay(image: np.ndarray, color_mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend ``color_mask`` over ``image`` (both RGB uint8; the mask is resized nearest if needed)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha {alpha} must lie in [0, 1]")
    if color_mask.shape[:2] != image.shape[:2]:
        color_mask = cv2.resize(color_mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    return cv2.addWeighted(image, 1.0 - alpha, color_mask, alpha, 0.0)
