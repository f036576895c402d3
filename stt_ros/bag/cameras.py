"""Which image topics of a bag are cameras, what each camera is called, and where its labels are."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stt_ros.bag.source import COMPRESSED, IMAGE, IMAGE_TYPES, BagError, BagSource

#: last topic components that name a camera's image rather than the camera
IMAGE_NAMES = {"image", "image_raw", "image_color", "image_rect", "image_rect_color", "image_mono", "compressed"}
#: image topics that hold labels or a previous run's outputs, never camera frames
LABEL_NAMES = ("labels", "label", "semantic", "gt")
OUTPUT_NAMES = ("mask", "color_mask", "overlay")


@dataclass
class Camera:
    """A camera topic of the bag and where its outputs and labels go."""

    name: str  # output namespace: /<name>/mask ...
    topic: str  # topic in the bag
    msgtype: str  # sensor_msgs/msg/Image or CompressedImage
    label_topic: str | None = None

    @property
    def compressed(self) -> bool:
        return self.msgtype == COMPRESSED

    @property
    def node_topic(self) -> str:
        """The node's camera_topics entry (it subscribes <topic>/compressed for compressed ones)."""
        return self.topic[: -len("/compressed")] if self.compressed and self.topic.endswith("/compressed") \
            else self.topic

    @property
    def publish_topic(self) -> str:
        return self.node_topic + "/compressed" if self.compressed else self.topic

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name.strip("/")) or "camera"


def camera_name(topic: str) -> str:
    parts = [p for p in topic.strip("/").split("/") if p]
    while len(parts) > 1 and parts[-1] in IMAGE_NAMES:
        parts.pop()
    return "/".join(parts) or "camera"


def _is_label_or_output(topic: str) -> bool:
    last = topic.rstrip("/").rsplit("/", 1)[-1]
    return last in LABEL_NAMES or last in OUTPUT_NAMES


def select_cameras(source: BagSource, topics: list[str] | None = None, labels: dict[str, str] | None = None,
                   names: list[str] | None = None) -> tuple[list[Camera], list[str]]:
    """The camera topics to evaluate (given, or every image topic that is not a label or output
    topic) with their label topics, and a line per skipped topic."""
    info = source.topics
    images = {t: i for t, i in info.items() if i.msgtype in IMAGE_TYPES}
    listing = ", ".join(f"{t} ({i.msgtype})" for t, i in sorted(info.items())) or "no topics at all"
    if not images:
        raise BagError(f"{source.path} has no image topic (sensor_msgs/msg/Image or CompressedImage); it has: "
                       f"{listing}")
    labels = dict(labels or {})
    for cam, lab in labels.items():
        for t in (cam, lab):
            if t not in images:
                raise BagError(f"--labels {cam}={lab}: {t} is not an image topic of {source.path}; image topics: "
                               f"{', '.join(sorted(images))}")
    if topics:
        missing = [t for t in topics if t not in images]
        if missing:
            raise BagError(f"{', '.join(missing)} not an image topic of {source.path}; image topics: "
                           f"{', '.join(sorted(images))}")
        chosen = list(topics)
    else:
        chosen = [t for t in sorted(images) if not _is_label_or_output(t) and t not in labels.values()]
        # image_transport: <topic>/compressed beside <topic> is the same camera, not a second one
        chosen = [t for t in chosen if not (t.endswith("/compressed") and t[: -len("/compressed")] in chosen)]
        if not chosen:
            raise BagError(f"{source.path} has image topics, but all look like labels or outputs "
                           f"({', '.join(sorted(images))}); name the camera topics with --topics")
    if names and len(names) != len(chosen):
        raise BagError(f"--camera-names gives {len(names)} names for {len(chosen)} camera topics")
    cams: list[Camera] = []
    used: set[str] = set()
    for i, t in enumerate(chosen):
        name = names[i] if names else camera_name(t)
        while name in used:
            name = f"{name}_{i}"
        used.add(name)
        lab = labels.get(t)
        if lab is None:
            ns = t.rstrip("/").rsplit("/", 1)[0] if t.count("/") > 1 else ""
            for cand in (f"{ns}/{n}" for n in LABEL_NAMES):
                if cand in images and images[cand].msgtype == IMAGE:
                    lab = cand
                    break
        cams.append(Camera(name, t, images[t].msgtype, lab))
    used_topics = {c.topic for c in cams} | {c.label_topic for c in cams if c.label_topic}
    skipped = [f"{t} ({i.msgtype}, {i.count} messages)" + (
        f"; the compressed transport of camera topic {t[: -len('/compressed')]}, which is evaluated"
        if t.endswith("/compressed") and t[: -len("/compressed")] in used_topics else "")
        for t, i in sorted(info.items()) if t not in used_topics]
    return cams, skipped
