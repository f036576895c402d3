"""Fixtures of the bag-evaluation tests: a short SynthDrive drive generated here."""

from __future__ import annotations

from pathlib import Path

import pytest

from stt_train.synthdrive import SynthDriveConfig, write_dataset

#: the demo model's input size, so the bag's frames are what the model was trained on
SMALL = SynthDriveConfig(height=128, width=256, frames=12)


@pytest.fixture(scope="session")
def synthdrive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SynthDrive in the Cityscapes layout plus its bag: one held-out sequence of 12 frames."""
    out = tmp_path_factory.mktemp("bag_synthdrive") / "sd"
    return write_dataset(out, SMALL, seed=11, splits={"val": 1}, bags=True, progress=False)


@pytest.fixture(scope="session")
def synth_bag(synthdrive: Path) -> Path:
    return synthdrive / "bags" / "val" / "synthdrive_000000"
