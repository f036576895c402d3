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


def tiny_run_overrides(root: Path, out: Path, **extra) -> list[str]:
    """``--set`` values of a training run of a few iterations at 64x128 on the SynthDrive at ``root``, into ``out``."""
    values = {"data.root": str(root), "train.out_dir": str(out), "data.crop": "[64, 128]", "data.workers": 0,
              "model.input_height": 64, "model.input_width": 128, "model.key_frames": 2, "train.batch_size": 2,
              "train.iters": 5, "train.ckpt_interval": 2, "train.log_interval": 1, "train.threads": 1,
              "train.warmup_iters": 2, **extra}
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="session")
def tiny_run(mini_synthdrive: Path):
    """``tiny_run(out, **extra)``: :func:`tiny_run_overrides` on the mini SynthDrive (``extra``: more values)."""
    return lambda out, **extra: tiny_run_overrides(mini_synthdrive, out, **extra)


@pytest.fixture
def random_stt_weights(tmp_path: Path) -> Path:
    """An untrained STT-BiSe18 at 64x128 (T = 2), its config in the metadata."""
    from stt_ros.config import STTConfig
    from stt_ros.model.zoo import build_model
    from stt_ros.weights import save_weights

    cfg = STTConfig(model="stt_bise18", input_height=64, input_width=128, key_frames=2, key_window_end=2)
    path = tmp_path / "stt.safetensors"
    save_weights(build_model(cfg).eval(), path, config=cfg.to_dict())
    return path


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def frame_image(value: int, h: int = 16, w: int = 32) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = value  # a frame's value says which frame it is
    return img


def label_image(fill: int, regions: list[tuple[tuple[slice, ...] | slice, int]]) -> np.ndarray:
    """A 16x32 label image of id ``fill`` with each (region, id) painted over it in turn."""
    label = np.full((16, 32), fill, np.uint8)
    for region, value in regions:
        label[region] = value
    return label


def write_frames(folder: Path, name: str, frames: range) -> None:
    """Frame f of ``frames`` (its :func:`frame_image`) to ``folder / name.format(f)``."""
    for f in frames:
        write_png(folder / name.format(f), frame_image(f % 256))


@pytest.fixture
def cityscapes(tmp_path: Path) -> Path:
    """aachen snippet 000000 (frames 0..29, frame 19 annotated) and one of frankfurt numbered like val's."""
    root = tmp_path / "cityscapes"
    # road; sky, car, unlabeled (-> ignore), parking (-> ignore: no trainId)
    label = label_image(7, [(np.s_[:4], 23), (np.s_[4:6, :8], 26), (np.s_[6:8, :8], 0), (np.s_[8:10, :8], 9)])
    for city, seq, target in (("aachen", 0, 19), ("frankfurt", 294, 294)):
        write_frames(root / "leftImg8bit_sequence/train" / city, f"{city}_{seq:06d}_{{:06d}}_leftImg8bit.png",
                     range(target - 19, target + 11))
        write_png(root / "gtFine/train" / city / f"{city}_{seq:06d}_{target:06d}_gtFine_labelIds.png", label)
    return root


@pytest.fixture
def camvid(tmp_path: Path) -> Path:
    """SegNet layout plus extracted 30 Hz frames, two sequences with their two naming styles."""
    root = tmp_path / "camvid"
    label = label_image(3, [(np.s_[:4], 0), (np.s_[10:, :4], 11)])  # road; sky, void
    for seq, prefix, digits, target in (("0001TP", "", 6, 6690), ("Seq05VD", "f", 5, 30)):
        name = f"{seq}_{prefix}{target:0{digits}d}.png"
        write_png(root / "train" / name, frame_image(target % 256))
        write_png(root / "trainannot" / name, label)
        write_frames(root / "frames" / seq, f"{seq}_{prefix}{{:0{digits}d}}.png", range(target - 5, target + 1))
    return root
