"""Fixtures of the training package's tests: tiny generated datasets, never downloaded ones."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stt_train.synthdrive import SynthDriveConfig, write_dataset

#: a SynthDrive small enough to generate in about a second
MINI = SynthDriveConfig(height=64, width=128, frames=6, supersample=1)


@pytest.fixture(scope="session")
def mini_config() -> SynthDriveConfig:
    return MINI


@pytest.fixture(scope="session")
def mini_synthdrive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthdrive") / "sd"
    return write_dataset(out, MINI, seed=5, splits={"train": 2, "val": 1}, bags=True, progress=False)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def frame_image(value: int, h: int = 16, w: int = 32) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = value  # a frame's value says which frame it is
    return img


@pytest.fixture
def cityscapes(tmp_path: Path) -> Path:
    """aachen snippet 000000 (frames 0..29, frame 19 annotated) and one of frankfurt numbered like val's."""
    root = tmp_path / "cityscapes"
    label = np.full((16, 32), 7, np.uint8)  # road
    label[:4] = 23  # sky
    label[4:6, :8] = 26  # car
    label[6:8, :8] = 0  # unlabeled -> ignore
    label[8:10, :8] = 9  # parking -> ignore (no trainId)
    for city, seq, target in (("aachen", 0, 19), ("frankfurt", 294, 294)):
        for f in range(target - 19, target + 11):
            write_png(root / "leftImg8bit_sequence/train" / city / f"{city}_{seq:06d}_{f:06d}_leftImg8bit.png",
                      frame_image(f % 256))
        write_png(root / "gtFine/train" / city / f"{city}_{seq:06d}_{target:06d}_gtFine_labelIds.png", label)
    return root


@pytest.fixture
def camvid(tmp_path: Path) -> Path:
    """SegNet layout plus extracted 30 Hz frames, two sequences with their two naming styles."""
    root = tmp_path / "camvid"
    label = np.full((16, 32), 3, np.uint8)  # road
    label[:4] = 0  # sky
    label[10:, :4] = 11  # void
    for seq, prefix, digits, target in (("0001TP", "", 6, 6690), ("Seq05VD", "f", 5, 30)):
        name = f"{seq}_{prefix}{target:0{digits}d}.png"
        write_png(root / "train" / name, frame_image(target % 256))
        write_png(root / "trainannot" / name, label)
        for f in range(target - 5, target + 1):
            write_png(root / "frames" / seq / f"{seq}_{prefix}{f:0{digits}d}.png", frame_image(f % 256))
    return root
