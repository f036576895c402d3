"""The node's own settings (cameras, QoS, outputs, diagnostics) beside the model's STTConfig.

Plain dataclass, no rclpy import: the parameter declarations (stt_ros.ros.params) and the
generated params file (config/stt.yaml) both come from these fields and STTConfig's, so names,
defaults, ranges and help text have one source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from stt_ros.config import ConfigError, STTConfig, fits_annotation, short_repr
from stt_ros.metrics import DIS_PRESETS, TC_FLOW_PRESET, TC_FLOW_SCALE
from stt_ros.runtime.images import MAX_PIXELS
from stt_ros.runtime.stream_policy import DEFAULT_MAX_GAP_S

TRANSPORTS = ("raw", "compressed")
RELIABILITY = ("best_effort", "reliable")
MASK_RESOLUTIONS = ("camera", "network")
PALETTES = ("cityscapes", "camvid", "custom")
FLOW_PRESETS = tuple(DIS_PRESETS)
#: model parameters whose node default is not STTConfig's: the offline tools (stt-eval, training,
#: export) keep the library's reproducible torch/fp32, the node runs what suits its machine
#: (stt_ros.runtime.factory.resolve_auto: TensorRT on an NVIDIA GPU, else OpenVINO, else torch)
NODE_MODEL_DEFAULTS = {"backend": "auto", "precision": "auto"}


def node_model_defaults() -> STTConfig:
    """STTConfig as the node's parameters default to it: the library's, with NODE_MODEL_DEFAULTS."""
    return STTConfig().replace(**NODE_MODEL_DEFAULTS)


def _f(default: Any, help: str, dynamic: bool = False, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, "dynamic": dynamic, **kw})
    return field(default=default, metadata={"help": help, "dynamic": dynamic, **kw})


@dataclass
class NodeSettings:
    """Settings of stt_node that are not part of the model configuration.

    ``dynamic`` fields may change while the node runs; the others are read-only parameters.
    """

    camera_names: list[str] = _f(["camera"], "camera names; outputs go to <name>/mask, <name>/color_mask, "
                                 "<name>/overlay, <name>/temporal_consistency")
    camera_topics: list[str] = _f(["/camera/image_raw"], "image topic of each camera (same order as camera_names)")
    camera_transports: list[str] = _f(["raw"], "per camera: raw (sensor_msgs/Image on the topic) or compressed "
                                      "(sensor_msgs/CompressedImage on <topic>/compressed)", choices=TRANSPORTS)
    input_reliability: str = _f("best_effort", "QoS reliability of the image subscriptions (sensor data: "
                                "best_effort)", choices=RELIABILITY)
    input_depth: int = _f(2, "QoS history depth of the image subscriptions (the node keeps only the latest "
                          "frame anyway)", lo=1, hi=100)
    output_reliability: str = _f("reliable", "QoS reliability of the published outputs (reliable also serves "
                                 "best_effort subscribers)", choices=RELIABILITY)
    max_input_pixels: int = _f(4096 * 4096, "refuse camera images with more pixels than this (width x height), "
                               "checked from the header before decoding, so one camera's huge frames cannot stall "
                               "it; 16.8 MP by default (4K is 8.3 MP)", dynamic=True, lo=1, hi=MAX_PIXELS)
    mask_resolution: str = _f("camera", "mask size: camera (input image size) or network (network input size)",
                              choices=MASK_RESOLUTIONS)
    batch_cameras: bool = _f(False, "step the cameras whose frames wait together (cross-camera batching): torch "
                             "runs their per-frame network as one batch (on a CPU only up to 262144 pixels: 512x1024 "
                             "cameras one after the other), TensorRT and OpenVINO run each camera's own "
                             "context side by side; each camera keeps its own ring buffer, reset rule and "
                             "latest-frame mailbox. Pays off on a GPU; on a CPU with OpenVINO together with "
                             "openvino_streams set to the cores, where the cores are not also busy with the cameras' "
                             "decoding and outputs (2 cores, 4 cameras: 1.2x for the model alone, 1.03-1.05x "
                             "through the node; docs/DEPLOY.md)", dynamic=True)
    overlay_alpha: float = _f(0.5, "weight of the colour mask in the overlay (0..1)", dynamic=True, lo=0.0, hi=1.0)
    palette: str = _f("cityscapes", "colours of the classes: cityscapes (19 train ids), camvid (11) or custom",
                      dynamic=True, choices=PALETTES)
    palette_colors: list[int] = _f([], "custom palette as flat R,G,B values per class id (palette: custom)",
                                   dynamic=True)
    max_frame_gap_s: float = _f(DEFAULT_MAX_GAP_S, "reset a camera's ring buffer when its header stamps jump "
                                "forward by more than this (seconds); they also reset when the stamp goes backwards "
                                "or the image size changes", dynamic=True, lo=0.0, hi=3600.0)
    tc_enabled: bool = _f(True, "compute online temporal consistency (optical flow + warped agreement, at the "
                          "network input size; stt-bag-eval reports the same)", dynamic=True)
    flow_preset: str = _f(TC_FLOW_PRESET, "OpenCV DIS optical-flow preset for temporal consistency", dynamic=True,
                          choices=FLOW_PRESETS)
    flow_scale: float = _f(TC_FLOW_SCALE, "optical flow runs on the network-size frames scaled by this factor",
                           dynamic=True, lo=0.05, hi=1.0)
    diagnostics_period_s: float = _f(1.0, "period of /diagnostics (seconds)", lo=0.1, hi=60.0)
    latency_warn_ms: float = _f(250.0, "diagnostics WARN when mean inference latency exceeds this (ms)",
                                dynamic=True, lo=0.0, hi=1e6)
    latency_error_ms: float = _f(1000.0, "diagnostics ERROR when mean inference latency exceeds this (ms)",
                                 dynamic=True, lo=0.0, hi=1e6)
    tc_warn: float = _f(0.7, "diagnostics WARN when mean temporal consistency (mIoU) falls below this",
                        dynamic=True, lo=0.0, hi=1.0)
    tc_error: float = _f(0.4, "diagnostics ERROR when mean temporal consistency (mIoU) falls below this",
                         dynamic=True, lo=0.0, hi=1.0)
    drop_warn: float = _f(0.5, "diagnostics WARN when this fraction of received frames was dropped in the last "
                          "period", dynamic=True, lo=0.0, hi=1.0)
    input_timeout_s: float = _f(2.0, "diagnostics WARN (stale) when a camera sent nothing for this long (s)",
                                dynamic=True, lo=0.0, hi=3600.0)
    model_config: str = _f("", "model YAML written beside a checkpoint (an STTConfig, e.g. "
                           "models/stt_bise18_synthdrive.yaml): its values replace the defaults of the model "
                           "parameters below, so the model runs as it was trained; a model parameter set to "
                           "anything but its default still wins; empty = the parameters alone")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not fits_annotation(value, str(f.type)):
                raise ConfigError(f"{f.name}={short_repr(value)} must be {f.type}"
                                  + (" (finite)" if "float" in str(f.type) else ""))
        n = len(self.camera_names)
        if n == 0:
            raise ConfigError("camera_names is empty: configure at least one camera")
        if len(set(self.camera_names)) != n:
            raise ConfigError(f"camera_names {short_repr(self.camera_names)} contains duplicates")
        for name in self.camera_names:
            if not name or not all(c.isascii() and (c.isalnum() or c == "_") for c in name) or name[0].isdigit():
                raise ConfigError(f"camera name {short_repr(name)} is not a valid ROS name token (letters, digits, "
                                  "underscores; not starting with a digit)")
        if len(self.camera_topics) != n:
            raise ConfigError(f"camera_topics has {len(self.camera_topics)} entries but camera_names has {n}")
        if len(self.camera_transports) not in (1, n):
            raise ConfigError(f"camera_transports needs 1 entry (all cameras) or {n}, got "
                              f"{len(self.camera_transports)}")
        for f in fields(self):
            meta, value = f.metadata, getattr(self, f.name)
            allowed = meta.get("choices")
            values = value if isinstance(value, list) else [value]
            if allowed and any(v not in allowed for v in values):
                raise ConfigError(f"{f.name}={short_repr(value)} is not allowed; choose from {', '.join(allowed)}")
            if "lo" in meta and not meta["lo"] <= value <= meta["hi"]:
                raise ConfigError(f"{f.name}={value} is out of range [{meta['lo']}, {meta['hi']}]")
        if self.latency_error_ms < self.latency_warn_ms:
            raise ConfigError("latency_error_ms must be >= latency_warn_ms")
        if self.tc_error > self.tc_warn:
            raise ConfigError("tc_error must be <= tc_warn")
        c = self.palette_colors
        if (c or self.palette == "custom") and (not c or len(c) % 3 or len(c) > 768 or any(not 0 <= v <= 255
                                                                                          for v in c)):
            raise ConfigError(f"palette_colors={short_repr(c)}: give R,G,B triples (0..255), at most 256 colours"
                              + (" (palette: custom needs them)" if self.palette == "custom" else
                                 f" (used with palette: custom; palette is {self.palette})"))

    def transport(self, index: int) -> str:
        return self.camera_transports[0] if len(self.camera_transports) == 1 else self.camera_transports[index]


def to_ros_yaml(config: STTConfig | None = None, settings: NodeSettings | None = None,
                node_name: str = "/**") -> str:
    """A ROS 2 --params-file with every parameter, its default and its help, for the nodes that
    ``node_name`` matches (config/stt.yaml is produced by ``python -m stt_ros.ros.settings > config/stt.yaml``).

    The default key ``/**`` matches a node of any name in any namespace: rcl matches a plain
    ``stt_node:`` only at ``/stt_node`` and silently ignores it under a namespace."""
    lines = [
        "# Parameters of stt_node with their defaults: the node's settings (stt_ros/ros/settings.py),",
        "# then the model configuration (stt_ros/config.py, STTConfig; backend and precision are auto here,",
        "# the node picks what runs on its machine, where the offline tools default to torch/fp32).",
        "# Generated by `python -m stt_ros.ros.settings > config/stt.yaml`; a test keeps it in sync.",
        "# The key /** applies them to the node whatever its name and namespace (a key stt_node: would",
        "# match only /stt_node, and rcl ignores it under a namespace without a word).",
        f"{node_name}:",
        "  ros__parameters:",
    ]
    for obj in (settings or NodeSettings(), config or node_model_defaults()):
        for f in fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, tuple):
                value = list(value)
            note = "" if f.metadata.get("dynamic") else " [read-only]"
            lines.append(f"    # {f.metadata['help']}{note}")
            lines.append(f"    {f.name}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def running_summary(config: STTConfig, backend: Any) -> str:
    """What runs, for the node's start-up line: "<backend>, <precision>, <device> (why)".

    ``config`` is the node's (``backend`` and ``precision`` may be auto), ``backend`` the created
    stt_ros.runtime Backend, which knows what was picked: its ``name``, its ``config`` and, where the
    backend resolves precision=auto itself (torch, OpenVINO), its ``precision``."""
    precision = getattr(backend, "precision", None) or backend.config.precision
    why = []
    if config.backend == "auto":
        from stt_ros.runtime.factory import resolve_auto

        why.append(f"backend=auto: {resolve_auto(config)[1]}")
    if config.precision == "auto":
        why.append("precision=auto" + ("" if precision == "auto" else f": {precision} on this machine"))
    return f"{backend.name}, {precision}, {backend.config.device} ({'; '.join(why) or 'as configured'})"


if __name__ == "__main__":
    print(to_ros_yaml(), end="")
