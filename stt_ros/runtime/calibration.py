"""Calibration frames for int8 quantization, shared by the backends that quantize (TensorRT's
entropy calibrator, OpenVINO's NNCF post-training quantization).

Frames come from a directory of images (sorted by path, ideally consecutive frames of a drive) or a
rosbag2 (sensor_msgs/Image or CompressedImage, read with :class:`stt_ros.bag.source.BagSource` and
decoded by :mod:`stt_ros.runtime.images`, exactly as bag evaluation reads them).
:func:`calibration_descriptor` says what a calibration depends on, for a cache key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stt_ros.config import ConfigError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
DEFAULT_CALIB_FRAMES = 100


def _image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _is_bag(source: Path) -> bool:
    return source.suffix in (".mcap", ".db3") or (source.is_dir() and (source / "metadata.yaml").is_file())


def _directory_images(source: Path, limit: int) -> Iterator[np.ndarray]:
    import cv2

    files = _image_files(source) if source.is_dir() else []
    if not files:
        raise ConfigError(f"{source} holds no images ({', '.join(IMAGE_SUFFIXES)}) and is not a rosbag2")
    for path in files[:limit]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConfigError(f"calibration image {path} cannot be decoded")
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _bag_images(source: Path, limit: int, topic: str | None) -> Iterator[np.ndarray]:
    from rosbags.typesys import Stores, get_typestore

    from stt_ros.bag.source import COMPRESSED, IMAGE_TYPES, BagError, BagSource
    from stt_ros.runtime.images import compressed_to_rgb, image_to_rgb

    ts = get_typestore(Stores.ROS2_KILTED)  # Image and CompressedImage are all calibration reads
    count = skipped = 0
    try:
        with BagSource(source) as bag:
            topics = sorted(t for t, info in bag.topics.items()
                            if info.msgtype in IMAGE_TYPES and (topic is None or t == topic))
            if not topics:
                raise ConfigError(f"{source} has no image topic{f' {topic}' if topic else ''} "
                                  f"(topics: {sorted(bag.topics)})")
            if len(topics) > 1:
                raise ConfigError(f"{source} has several image topics {topics}; pick one")
            for m in bag.messages(topics):
                try:
                    msg = ts.deserialize_cdr(m.raw, m.msgtype)
                    img = compressed_to_rgb(msg) if m.msgtype == COMPRESSED else image_to_rgb(msg)
                except Exception as exc:  # noqa: BLE001 (ImageError; rosbags raises struct.error and friends)
                    skipped += 1
                    log.debug("calibration: skipped a frame of %s: %s", m.topic, exc)
                    continue
                yield img
                count += 1
                if count >= limit:
                    return
    except BagError as exc:
        if count == 0:
            raise ConfigError(f"cannot read calibration frames from {source}: {exc}") from exc
        log.warning("calibration: %s; calibrating on the %d frames before the damage", exc, count)
    finally:
        if skipped:
            log.warning("calibration: skipped %d frame(s) of %s that cannot be decoded", skipped, source)


def calibration_images(source: str | Path, limit: int = DEFAULT_CALIB_FRAMES, topic: str | None = None
                       ) -> Iterator[np.ndarray]:
    """RGB uint8 frames from a directory of images (sorted by path) or a rosbag2 (a bag directory
    with metadata.yaml, or an .mcap file): at most ``limit``, in order."""
    source = Path(source)
    if not source.exists():
        raise ConfigError(f"calibration source {source} does not exist (a directory of images or a rosbag2)")
    if _is_bag(source):
        yield from _bag_images(source, limit, topic)
    else:
        yield from _directory_images(source, limit)


def calibration_descriptor(source: str | Path, limit: int) -> str:
    """What the calibration depends on, for the cache key: path, frame limit and the names, sizes and
    mtimes of the images used (of a bag: its files)."""
    source = Path(source).resolve()
    if source.is_dir() and not (source / "metadata.yaml").is_file():
        files = _image_files(source)[:limit]
    else:
        files = sorted(source.iterdir()) if source.is_dir() else [source]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(source) if f != source else f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return f"{source} frames<={limit} {h.hexdigest()[:16]}"
