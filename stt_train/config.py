"""Training configuration: a YAML file with three sections.

``model`` holds :class:`stt_ros.config.STTConfig` fields (the checkpoint carries them, so the node
loads it with the same settings); ``data`` and ``train`` are :class:`DataConfig` and
:class:`TrainConfig`. Unknown keys are errors naming them. ``--set section.key=value`` on the
command line overrides any value (YAML syntax for the value).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from stt_ros.config import (
    ConfigError,
    STTConfig,
    fits_annotation,
    read_yaml_file,
    reject_unknown_keys,
    short_repr,
    sorted_names,
)


def check_types(obj: Any, section: str) -> None:
    """ConfigError naming the first field of ``obj`` whose value does not fit its annotation."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not fits_annotation(value, str(f.type)):
            hint = ""
            if "float" in str(f.type):
                hint = " (finite)"
                number = _number_in_string(value)
                if number is not None:  # YAML 1.1 reads 1e-3 (no dot) as a string
                    hint += f"; YAML reads {value} as a string, write {number!r}"
            raise ConfigError(f"{section}.{f.name}={short_repr(value)} must be {f.type}{hint}")


def _number_in_string(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass
class DataConfig:
    dataset: str = "synthdrive"  # cityscapes | camvid | synthdrive
    root: str = "data/synthdrive"
    train_split: str = "train"
    val_split: str = "val"
    stride: int = 1  # frames between clip frames
    crop: list[int] = field(default_factory=lambda: [128, 256])  # training crop (height, width)
    base_size: list[int] | None = None  # resize frames to (height, width) before the random scale
    scale: list[float] = field(default_factory=lambda: [0.75, 1.5])
    flip: bool = True
    color: float = 0.2
    workers: int = 1

    def validate(self) -> None:
        check_types(self, "data")
        if self.dataset not in ("cityscapes", "camvid", "synthdrive"):
            raise ConfigError(f"data.dataset={self.dataset!r}: choose cityscapes, camvid or synthdrive")
        if len(self.crop) != 2 or any(c % 32 for c in self.crop):
            raise ConfigError(f"data.crop={self.crop} must be [height, width], multiples of 32")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"data.scale={self.scale} must be [min, max] with 0 < min <= max")
        if self.stride < 1 or self.workers < 0:
            raise ConfigError("data.stride must be >= 1 and data.workers >= 0")


@dataclass
class TrainConfig:
    iters: int = 1000
    batch_size: int = 8  # global: each of N processes takes batch_size / N
    prev_frames: int = -1  # previous frames per training clip; -1 = model.key_frames (0 for baselines)
    grad_prev: bool = False  # let gradients flow through the previous frames' per-frame network
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    head_lr_mult: float = 1.0  # learning-rate factor of everything but the backbone
    warmup_iters: int = 100
    warmup_ratio: float = 0.1
    poly_power: float = 0.9
    ohem_thresh: float = 0.7  # keep pixels whose probability of the true class is below this ...
    ohem_min_kept: float = 1 / 16  # ... but at least this fraction of each image's labelled pixels
    aux_weight: float = 1.0
    amp: bool = True  # mixed precision where a GPU exists (ignored on CPU)
    sync_bn: bool = True  # synchronise BatchNorm statistics across processes
    backbone_weights: str = ""  # ImageNet ResNet checkpoint (torchvision key names); "" = from scratch
    init_weights: str = ""  # start from this model checkpoint (e.g. a trained per-frame baseline; stt.* may be absent)
    stt_zero_init: bool = False  # start the transformer's output projection at zero: STT begins as its per-frame net
    freeze_per_frame: bool = False  # train only the temporal transformer; the per-frame network (init_weights) stays
    #                                 fixed, BatchNorm statistics included
    seed: int = 0
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    threads: int = 0  # torch CPU threads per process; 0 = torch's default
    out_dir: str = "runs/default"
    ckpt_interval: int = 200
    keep_checkpoints: int = 2
    log_interval: int = 10
    eval_at_end: bool = False

    def validate(self) -> None:
        check_types(self, "train")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"train.optimizer={self.optimizer!r}: choose sgd or adamw")
        if self.iters < 1 or self.batch_size < 1 or self.ckpt_interval < 1 or self.log_interval < 1:
            raise ConfigError("train.iters, batch_size, ckpt_interval and log_interval must be >= 1")
        if not 0 < self.ohem_thresh <= 1 or not 0 < self.ohem_min_kept <= 1:
            raise ConfigError("train.ohem_thresh and train.ohem_min_kept must lie in (0, 1]")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"train.device={self.device!r}: choose auto, cpu or cuda")


@dataclass
class ExperimentConfig:
    model: STTConfig
    data: DataConfig
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "data": dataclasses.asdict(self.data),
                "train": dataclasses.asdict(self.train)}

    def validate(self) -> None:
        """Checks across sections (each section validates itself when it is built)."""
        if self.train.freeze_per_frame:
            if not self.model.temporal:
                raise ConfigError(f"train.freeze_per_frame: {self.model.model} has no temporal transformer to train")
            if not self.train.init_weights:
                raise ConfigError("train.freeze_per_frame needs train.init_weights (the trained per-frame network "
                                  "to keep fixed)")

    @property
    def prev_frames(self) -> int:
        """Previous frames per training clip (a per-frame model has no use for them)."""
        return self.clip_prev_frames(self.model.temporal)

    def clip_prev_frames(self, uses_past: bool) -> int:
        """Previous frames per training clip of a model that uses them (``uses_past``) or not: ``train.prev_frames``,
        or ``model.key_frames`` where it is -1."""
        if not uses_past:
            return 0
        return self.train.prev_frames if self.train.prev_frames >= 0 else self.model.key_frames


def _section(cls, data: dict[str, Any], name: str):
    if not isinstance(data, dict):
        raise ConfigError(f"section {name!r} must be a mapping, not {type(data).__name__}")
    reject_unknown_keys(data, cls, what="key(s)", where=f" in section {name!r}")
    obj = cls(**data)
    obj.validate()
    return obj


#: experiment switches that moved from ``train`` to the ``research`` section of
#: ``python -m stt_train.research.train``, with the value that meant "off" (the product's behaviour)
MOVED_TO_RESEARCH = {"memory": "past", "temporal_weight": 0.0}


def from_dict(data: dict[str, Any]) -> ExperimentConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"a training config is a mapping with sections model, data, train, not "
                          f"{type(data).__name__}")
    if "research" in data:
        raise ConfigError("section 'research' holds experiment switches the product does not run: use "
                          "python -m stt_train.research.train (or .evaluate), which take the same options")
    data = {**data, "train": _without_moved_keys(data.get("train"))}
    unknown = sorted_names(k for k in data if k not in ("model", "data", "train"))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; a training config has model, data and train")
    try:
        model = STTConfig.from_dict(data.get("model") or {})
    except TypeError as exc:
        raise ConfigError(f"section 'model': {exc}") from exc
    try:
        cfg = ExperimentConfig(model, _section(DataConfig, data.get("data") or {}, "data"),
                               _section(TrainConfig, data.get("train") or {}, "train"))
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    cfg.validate()
    return cfg


def _without_moved_keys(train: Any) -> Any:
    """The train section without the keys of :data:`MOVED_TO_RESEARCH` at their "off" value (the
    ``config.yaml`` of runs from before the move holds them); an error pointing to the research
    trainer where one is on."""
    if not isinstance(train, dict):
        return train
    on = [f"train.{k}={train[k]!r}" for k, off in MOVED_TO_RESEARCH.items() if k in train and train[k] != off]
    if on:
        raise ConfigError(f"{', '.join(on)}: these experiment switches moved to the research trainer: "
                          f"python -m stt_train.research.train --config ... --set research.<key>=<value> (or a "
                          f"'research:' section in the YAML)")
    return {k: v for k, v in train.items() if k not in MOVED_TO_RESEARCH}


def apply_overrides(data: dict[str, Any], overrides: list[str],
                    sections: tuple[str, ...] = ("model", "data", "train")) -> dict[str, Any]:
    """``["train.iters=10", "model.key_frames=3"]`` -> updated copy of ``data`` (keys of ``sections`` only)."""
    for name, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"section {short_repr(name)} must be a mapping of keys, not {type(section).__name__}")
    data = {k: dict(v or {}) for k, v in data.items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in sections:
            raise ConfigError(f"override {item!r} must look like section.key=value with section "
                              f"{', '.join(sections[:-1])} or {sections[-1]}")
        try:
            data.setdefault(section, {})[name] = yaml.safe_load(value)
        except (yaml.YAMLError, RecursionError) as exc:
            raise ConfigError(f"override {short_repr(item)}: the value is not valid YAML: {exc}") from None
    return data


def load_experiment(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    data = read_yaml_file(path, "training config") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with sections model, data, train")
    return from_dict(apply_overrides(data, list(overrides)))
