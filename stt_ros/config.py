"""The one configuration object for a model and its streaming behaviour.

YAML files, CLI flags and ROS parameters all map onto :class:`STTConfig`; its field names,
defaults and help strings are the single source of truth. Defaults follow the best rows of the
paper's ablations: T=7 key frames, key windows (s, e, eps) = (1, 5, 1), query neighbourhood r=5,
query ratio TR=50%.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from stt_ros.model.specs import MODEL_NAMES, MODEL_SPECS

ARCHITECTURES = ("bisenet", "pspnet")
BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt", "auto")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "auto")
#: the backends that run each precision (auto: each backend picks, see stt_ros.runtime.factory)
PRECISION_BACKENDS = {"fp16": ("torch", "onnxruntime", "tensorrt", "auto"), "bf16": ("torch", "openvino", "auto"),
                      "int8": ("tensorrt", "openvino", "auto")}
RESIZE_MODES = ("stretch", "letterbox")


class ConfigError(ValueError):
    """A configuration value is invalid; the message says which field and what is allowed."""


#: Config files are small; refuse anything larger before parsing it (a wrong path or a device file
#: must not be read into memory).
MAX_CONFIG_BYTES = 1 << 20

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


def short_repr(value: Any) -> str:
    """repr() bounded in length and depth, for error messages about untrusted values (a YAML file
    with nested aliases can expand to gigabytes when printed in full)."""
    return _REPR.repr(value)


def sorted_names(names: Any, limit: int = 20) -> list[str]:
    """Keys of a user-supplied mapping as sorted, bounded strings (keys may be of any type; at most
    ``limit`` of them, then a count of the rest)."""
    out = sorted(short_repr(n) if not isinstance(n, str) else n[:80] for n in names)
    return out if len(out) <= limit else [*out[:limit], f"... {len(out) - limit} more"]


def fits_annotation(value: Any, hint: str) -> bool:
    """Whether ``value`` (from YAML or a ROS parameter) fits a dataclass field's annotation ``hint``
    (str, int, float (finite), bool, list[...], ... | None): NodeSettings and stt_train's configs."""
    if hint.endswith(" | None"):
        return value is None or fits_annotation(value, hint[: -len(" | None")])
    if hint.startswith("list["):
        return isinstance(value, list) and all(fits_annotation(v, hint[5:-1]) for v in value)
    if hint == "bool":
        return isinstance(value, bool)
    if hint == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if hint == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint == "str":
        return isinstance(value, str)
    raise TypeError(f"no check for annotation {hint!r}")


def read_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """Parse a YAML file with ``yaml.safe_load``; every failure is a :class:`ConfigError` naming the
    file: unreadable, larger than :data:`MAX_CONFIG_BYTES`, not UTF-8, not YAML, nested too deeply."""
    import yaml

    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_CONFIG_BYTES >> 20} MB; is it really a config file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text: {exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{path} nests collections too deeply to be a config file") from None


def reject_unknown_keys(data: dict[Any, Any], cls: type, what: str = "config key(s)", where: str = "") -> None:
    """ConfigError naming the keys of ``data`` that are no field of the dataclass ``cls`` (typos
    must not be ignored), e.g. ``unknown config key(s) ['modle']; known keys: [...]``; ``where``
    is appended to the first part (`` in section 'train'``)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted_names(k for k in data if k not in known)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}{where}; known keys: {sorted(known)}")


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class STTConfig:
    """Architecture, temporal-transformer hyper-parameters, input size and runtime choices."""

    model: str = _f("stt_bise18", "zoo name (stt_bise18, stt_bise34, stt_psp18, stt_psp101, "
                    "bise18, bise34, psp18, psp50, psp101); sets backbone and architecture")
    num_classes: int = _f(19, "number of classes (19 = Cityscapes trainIds, 11 = CamVid)", lo=1, hi=255)
    # --- Sparse Temporal Transformer ---
    key_frames: int = _f(7, "T: number of previous frames in the ring buffer", lo=1, hi=32)
    key_window_start: int = _f(1, "s: key-window half-width for the nearest key frame, in cells of the 1/8 "
                               "feature map (a window that fits the motion at one input size is too small at "
                               "a larger one)", lo=0, hi=64)
    key_window_end: int = _f(5, "e: largest key-window half-width", lo=0, hi=64)
    key_window_step: int = _f(1, "eps: half-width growth per frame of distance", lo=0, hi=64)
    query_radius: int = _f(5, "r: side of the r x r neighbourhood scored by query selection (odd, >= 3)",
                           lo=3, hi=15)
    query_ratio: float = _f(0.5, "TR: fraction of positions refined by temporal attention (0..1)",
                            lo=0.0, hi=1.0)
    query_tiles: int = _f(0, "query selection runs top-k per horizontal band of rows so no single "
                          "top-k exceeds 3840 (TensorRT); 0 = as few bands as that allows", lo=0, hi=1024)
    attn_dim: int = _f(32, "key/query/value projection width of the temporal transformer", lo=8, hi=1024)
    attn_heads: int = _f(2, "attention heads (attn_dim must be divisible by it)", lo=1, hi=64)
    attn_affinity: str = _f("dot", "query-key similarity: dot (the paper: scaled dot product of separate query "
                            "and key projections) or l2 (one shared key projection, negative squared distance, "
                            "so a position's best key is the past position that matches it)",
                            choices=("dot", "l2"))
    # --- input ---
    input_height: int = _f(512, "network input height (multiple of 32)", lo=32, hi=4096)
    input_width: int = _f(1024, "network input width (multiple of 32)", lo=32, hi=8192)
    resize_mode: str = _f("stretch", "how camera images reach the network size: stretch or letterbox",
                          choices=RESIZE_MODES)
    mean: tuple[float, float, float] = _f((0.485, 0.456, 0.406), "per-channel RGB mean (0..1 scale)")
    std: tuple[float, float, float] = _f((0.229, 0.224, 0.225), "per-channel RGB std (0..1 scale)")
    # --- runtime ---
    backend: str = _f("torch", "inference backend: torch, onnxruntime, openvino, tensorrt or auto (tensorrt on a GPU, "
                      "else openvino, else torch)", choices=BACKENDS)
    precision: str = _f("fp32", "fp32, fp16 (CUDA), bf16 (torch, openvino; CPU with AVX512-BF16 or AMX), int8 "
                        "(tensorrt, openvino) or auto (bf16 where the CPU has it, else fp32)", choices=PRECISIONS)
    device: str = _f("cpu", "torch device: cpu, cuda, cuda:1 ...")
    openvino_streams: int = _f(1, "CPU streams of the OpenVINO backend for cameras stepped together "
                               "(batch_cameras): 1 = one after the other, each on every core; N > 1 = up to N "
                               "cameras' steps side by side on cores/N each (more frames per second, each step "
                               "slower; a camera stepped alone still runs on every core)", lo=1, hi=64)
    weights: str = _f("", "path to a .safetensors checkpoint; empty = random initialisation")

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ helpers
    @property
    def temporal(self) -> bool:
        """True for STT models, False for per-frame baselines."""
        return MODEL_SPECS[self.model].temporal

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "str" and not isinstance(value, str):
                raise ConfigError(f"{f.name}={short_repr(value)} must be a string")
        if self.model not in MODEL_NAMES:
            raise ConfigError(f"model={short_repr(self.model)} is not a zoo model; choose one of "
                              f"{', '.join(MODEL_NAMES)}")
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if "choices" in meta and value not in meta["choices"]:
                raise ConfigError(f"{f.name}={short_repr(value)} is not allowed; choose one of "
                                  f"{', '.join(meta['choices'])}")
            if "lo" in meta:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{f.name}={short_repr(value)} must be a number")
                if f.type == "int" and not isinstance(value, int):
                    raise ConfigError(f"{f.name}={value!r} must be an integer")
                if not meta["lo"] <= value <= meta["hi"]:
                    raise ConfigError(f"{f.name}={value} is out of range [{meta['lo']}, {meta['hi']}]")
        if self.query_radius % 2 == 0:
            raise ConfigError(f"query_radius={self.query_radius} must be odd (the window is centred on the query)")
        if self.key_window_end < self.key_window_start:
            raise ConfigError(f"key_window_end={self.key_window_end} must be >= key_window_start="
                              f"{self.key_window_start}")
        if self.attn_dim % self.attn_heads:
            raise ConfigError(f"attn_dim={self.attn_dim} is not divisible by attn_heads={self.attn_heads}")
        for name in ("input_height", "input_width"):
            if getattr(self, name) % 32:
                raise ConfigError(f"{name}={getattr(self, name)} must be a multiple of 32 (the backbone's stride)")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if not isinstance(v, (tuple, list)) or len(v) != 3 or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
                raise ConfigError(f"{name}={short_repr(v)} must be three finite numbers (R, G, B)")
        if any(x <= 0 for x in self.std):
            raise ConfigError(f"std={self.std!r} must be positive")
        if self.openvino_streams != 1 and self.backend not in ("openvino", "auto"):
            raise ConfigError(f"openvino_streams={self.openvino_streams} applies to backend=openvino only (backend="
                              f"{self.backend}); leave it at 1")
        allowed = PRECISION_BACKENDS.get(self.precision)
        if allowed is not None and self.backend not in allowed:
            raise ConfigError(f"precision={self.precision} is not available with backend={self.backend}; it needs "
                              f"backend={' or '.join(b for b in allowed if b != 'auto')} (or precision=fp32)")

    # ------------------------------------------------------------------ mapping
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> STTConfig:
        """Build from a mapping; unknown keys are an error naming them (catches typos)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a model config must be a mapping of field names, not {type(data).__name__}")
        reject_unknown_keys(data, cls)
        kw = dict(data)
        for name in ("mean", "std"):
            if name in kw:
                if not isinstance(kw[name], (list, tuple)):
                    raise ConfigError(f"{name}={short_repr(kw[name])} must be a list of three numbers (R, G, B)")
                kw[name] = tuple(kw[name])
        return cls(**kw)

    def replace(self, **changes: Any) -> STTConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}


def _mapping(data: Any, path: str | Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, not {type(data).__name__}")
    return data


def load_config(path: str) -> STTConfig:
    """Read an :class:`STTConfig` from a YAML file (a flat mapping of field names)."""
    return STTConfig.from_dict(_mapping(read_yaml_file(path) or {}, path))


def read_config_file(path: str | Path) -> STTConfig:
    """An STTConfig from a flat YAML mapping (unknown keys are errors, as in :func:`load_config`) or
    from a ROS params file (``node: ros__parameters: {...}``, like config/stt.yaml; the node's other
    parameters are skipped). What ``stt-export --config`` and ``stt-tensorrt --config`` read."""
    data = read_yaml_file(path) or {}
    if isinstance(data, dict) and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict) and isinstance(inner.get("ros__parameters"), dict):
            # the node's own parameters sit beside the model's: take the STTConfig fields only
            known = STTConfig.field_help()
            return STTConfig.from_dict({k: v for k, v in inner["ros__parameters"].items() if k in known})
    return STTConfig.from_dict(_mapping(data, path))


def resolve_weights(cfg: STTConfig, config_path: str | Path | None) -> STTConfig:
    """A relative weights path is tried from the working directory, then beside the config file
    and its parent folder (the shipped models/*.yaml name models/<file>)."""
    if not cfg.weights or Path(cfg.weights).is_absolute() or Path(cfg.weights).exists() or config_path is None:
        return cfg
    for base in (Path(config_path).parent, Path(config_path).parent.parent):
        if (base / cfg.weights).exists():
            return cfg.replace(weights=str(base / cfg.weights))
    return cfg
