"""Fuzzing the bag reader and the frame decoder: damaged files and mangled messages give a
BagError or an ImageError (a counted rejection), never another exception."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stt_ros.bag.evaluate import decode_frame
from stt_ros.bag.source import BagError, BagSource
from stt_ros.runtime.images import MAX_PIXELS, ImageError
from stt_testing.bagtools import compressed_msg, image_msg, typestore

FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def read_all(path: Path) -> tuple[int, str]:
    """Messages read and the error (empty when the bag read to its end)."""
    n = 0
    try:
        with BagSource(path) as src:
            for _ in src.messages():
                n += 1
    except BagError as exc:
        return n, str(exc)
    return n, ""


@pytest.fixture(scope="module")
def pristine(synth_bag: Path) -> bytes:
    return next(synth_bag.glob("*.mcap")).read_bytes()


@FUZZ
@given(data=st.data(), as_folder=st.booleans())
def test_damaged_mcap_reads_up_to_the_damage(synth_bag: Path, pristine: bytes, tmp_path_factory, data,
                                            as_folder: bool) -> None:  # noqa: ANN001
    damaged = bytearray(pristine)
    n = len(damaged)
    edits = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), max_size=8))
    for pos, value in edits:
        damaged[pos] = value
    cut = data.draw(st.one_of(st.just(n), st.integers(0, n), st.integers(0, 64)))
    folder = tmp_path_factory.mktemp("fuzz")
    if as_folder:
        shutil.copytree(synth_bag, folder / "bag")
        target = folder / "bag"
        next(target.glob("*.mcap")).write_bytes(bytes(damaged[:cut]))
    else:
        target = folder / "drive.mcap"
        target.write_bytes(bytes(damaged[:cut]))
    count, error = read_all(target)
    assert 0 <= count <= 24
    if not edits and cut == n:
        assert (count, error) == (24, "")
    if error:
        assert "damaged after" in error or "cannot open" in error or "no such bag" in error


@pytest.mark.parametrize("size", [0, 1, 8, 10, 20, 40])
def test_tiny_files(pristine: bytes, tmp_path: Path, size: int) -> None:
    path = tmp_path / "tiny.mcap"
    path.write_bytes(pristine[:size])
    count, error = read_all(path)
    assert count == 0 and "truncated or corrupt" in error


def test_truncation_keeps_every_complete_chunk(synth_bag: Path, pristine: bytes, tmp_path: Path) -> None:
    """The later the cut, the more messages survive (all but those of the last, incomplete MCAP
    chunk), and every cut says where the bag broke."""
    assert read_all(synth_bag) == (24, "")
    counts = []
    for i, frac in enumerate((0.05, 0.3, 0.6, 0.8, 0.95, 0.999)):
        bag = tmp_path / f"bag{i}"
        shutil.copytree(synth_bag, bag)
        next(bag.glob("*.mcap")).write_bytes(pristine[: int(len(pristine) * frac)])
        count, error = read_all(bag)
        assert "truncated or corrupt" in error and f"damaged after {count} messages" in error
        counts.append(count)
    assert counts == sorted(counts) and counts[0] == 0 and any(0 < c < 24 for c in counts)
    assert counts[-1] == 24  # only the summary at the end is lost: every message survives


@pytest.fixture(scope="module")
def valid_frames() -> dict[str, bytes]:
    ts = typestore()
    rgb = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    return {"sensor_msgs/msg/Image": ts.serialize_cdr(image_msg(ts, rgb, 5), "sensor_msgs/msg/Image"),
            "sensor_msgs/msg/CompressedImage": ts.serialize_cdr(compressed_msg(ts, rgb, 5),
                                                                "sensor_msgs/msg/CompressedImage")}


@FUZZ
@given(data=st.data(), msgtype=st.sampled_from(["sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"]))
def test_mangled_frames_are_rejections(valid_frames: dict[str, bytes], data, msgtype: str) -> None:  # noqa: ANN001
    raw = bytearray(valid_frames[msgtype])
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), min_size=1,
                               max_size=6))
    for pos, value in edits:
        raw[pos] = value
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        _, _, rgb = decode_frame(typestore(), bytes(raw), msgtype)
    except ImageError as exc:
        assert str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS
