"""What the exported-graph backends (onnxruntime, TensorRT) share: where the graph comes from, what
its inputs and outputs must look like for a config, and the slot ring that binds buffered frames.

The graph is the one ``stt-export`` writes (see ``stt_train/export.py`` and docs/DEPLOY.md):
``image`` uint8 (1, H, W, 3), ``memory_0 .. memory_{T-1}`` (nearest first) and ``frame_valid``
in; ``class_map`` int32 (1, H, W), ``new_memory`` and optionally ``logits`` out.

Ring of slots: a backend keeps T + 1 preallocated buffers of one frame's keys/values. Each step
binds the filled slots to ``memory_0 ..`` nearest first and the one spare slot to the
``new_memory`` output, so the new frame is written where it will stay; the oldest slot then
becomes the next spare. Nothing is copied and no buffer moves. The spare exists because a graph
must not write an output into a buffer it is still reading: the slot being replaced holds the
oldest frame, which this very step attends to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stt_ros.config import ConfigError, STTConfig
from stt_ros.model.zoo import (
    CLASS_OUTPUT,
    IMAGE_INPUT,
    LOGITS_OUTPUT,
    MEMORY_OUTPUT,
    MODEL_SPECS,
    VALID_INPUT,
    memory_input_name,
)

#: Metadata keys stt-export writes into the ONNX file.
META_FORMAT = "stt_ros.format"
META_CONFIG = "stt_ros.config"
GRAPH_FORMAT = "stt_ros.step/1"
#: Config fields baked into an exported graph (a backend's config must agree on all of them).
GRAPH_FIELDS = ("model", "num_classes", "key_frames", "key_window_start", "key_window_end", "key_window_step",
                "query_radius", "query_ratio", "query_tiles", "attn_dim", "attn_heads", "attn_affinity",
                "input_height", "input_width", "mean", "std")


def read_config_file(path: str | Path) -> STTConfig:
    """An STTConfig from a flat YAML mapping (unknown keys are errors) or from a ROS params file
    (``node: ros__parameters: {...}``, like config/stt.yaml; the node's other parameters are skipped)."""
    from stt_ros.config import read_yaml_file

    data = read_yaml_file(path) or {}
    if isinstance(data, dict) and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict) and isinstance(inner.get("ros__parameters"), dict):
            # the node's own parameters sit beside the model's: take the STTConfig fields only
            known = STTConfig.field_help()
            return STTConfig.from_dict({k: v for k, v in inner["ros__parameters"].items() if k in known})
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, not {type(data).__name__}")
    return STTConfig.from_dict(data)


def export_hint(config: STTConfig, output: str = "model.onnx") -> str:
    weights = f" --weights {config.weights}" if config.weights and not config.weights.endswith(".onnx") else ""
    return (f"stt-export --model {config.model} --num-classes {config.num_classes} --key-frames {config.key_frames} "
            f"--input-height {config.input_height} --input-width {config.input_width}{weights} --output {output}")


def resolve_graph_path(config: STTConfig, explicit: str | Path | None, backend: str,
                       extra_suffixes: tuple[str, ...] = ()) -> Path:
    """The exported graph a backend runs: ``explicit`` if given, else ``config.weights`` when it
    names an .onnx file (or one of ``extra_suffixes``), else the .onnx beside a checkpoint."""
    if explicit is not None:
        path = Path(explicit)
    elif not config.weights:
        raise ConfigError(f"backend={backend} is not available without an exported graph: weights is empty. "
                          f"Export one with `{export_hint(config)}` and set weights to the .onnx file")
    else:
        path = Path(config.weights)
        if path.suffix not in (".onnx", *extra_suffixes):
            beside = path.with_suffix(".onnx")
            if not beside.is_file():
                raise ConfigError(f"backend={backend} runs an exported graph, but weights={config.weights} is a "
                                  f"checkpoint and {beside} does not exist; export it with "
                                  f"`{export_hint(config, str(beside))}`")
            path = beside
    if not path.is_file():
        raise ConfigError(f"exported graph {path} does not exist; export it with `{export_hint(config, str(path))}`")
    return path


Signature = dict[str, tuple[tuple[int, ...], str]]  # {name: (shape, numpy dtype name)}


def expected_io(config: STTConfig) -> tuple[Signature, Signature]:
    """Inputs and required outputs ({name: (shape, numpy dtype name)}) of the graph for ``config``."""
    h, w = config.input_height, config.input_width
    inputs = {IMAGE_INPUT: ((1, h, w, 3), "uint8")}
    outputs = {CLASS_OUTPUT: ((1, h, w), "int32")}
    if MODEL_SPECS[config.model].temporal:
        mem = (1, config.attn_heads, (h // 8) * (w // 8), 2 * (config.attn_dim // config.attn_heads))
        inputs.update({memory_input_name(k): (mem, "float32") for k in range(config.key_frames)})
        inputs[VALID_INPUT] = ((config.key_frames,), "bool")
        outputs[MEMORY_OUTPUT] = (mem, "float32")
    return inputs, outputs


def check_graph(inputs: Signature, outputs: Signature, meta: dict[str, str], config: STTConfig, source: str) -> bool:
    """Raise ConfigError if the graph at ``source`` was exported for other settings than ``config``
    or has other inputs/outputs than ``config`` implies. Returns whether it has a logits output."""
    problems = []
    saved = meta.get(META_CONFIG)
    if meta.get(META_FORMAT) not in (None, GRAPH_FORMAT):
        problems.append(f"graph format {meta.get(META_FORMAT)!r} is not {GRAPH_FORMAT!r}")
    if saved:
        try:
            saved_cfg: dict[str, Any] = json.loads(saved)
        except json.JSONDecodeError:
            saved_cfg = {}
            problems.append(f"metadata {META_CONFIG} is not valid JSON")
        want = config.to_dict()
        for name in GRAPH_FIELDS:
            if name in saved_cfg and saved_cfg[name] != want[name]:
                problems.append(f"{name}: graph {saved_cfg[name]!r}, config {want[name]!r}")
    exp_in, exp_out = expected_io(config)
    for name, (shape, dtype) in exp_in.items():
        if name not in inputs:
            problems.append(f"input {name!r} {dtype}{list(shape)} is missing")
        elif inputs[name] != (shape, dtype):
            got_shape, got_dtype = inputs[name]
            problems.append(f"input {name!r} is {got_dtype}{list(got_shape)}, config needs {dtype}{list(shape)}")
    problems += [f"unexpected input {name!r}" for name in inputs if name not in exp_in]
    for name, (shape, dtype) in exp_out.items():
        if name not in outputs:
            problems.append(f"output {name!r} is missing")
        elif outputs[name] != (shape, dtype):
            got_shape, got_dtype = outputs[name]
            problems.append(f"output {name!r} is {got_dtype}{list(got_shape)}, config needs {dtype}{list(shape)}")
    if problems:
        raise ConfigError(f"{source} does not match the config ({len(problems)} difference(s)):\n  "
                          + "\n  ".join(problems)
                          + f"\nRe-export for this config (`{export_hint(config, str(source))}`) or set the config "
                          f"to the graph's settings")
    return LOGITS_OUTPUT in outputs


def onnx_signature(path: str | Path) -> tuple[Signature, Signature, dict[str, str]]:
    """Inputs, outputs and metadata of an ONNX file (reads the graph with the onnx package)."""
    try:
        import onnx
        from onnx import helper
    except ImportError as exc:
        raise ConfigError("reading an exported graph needs the onnx package: `pip install onnx`") from exc
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ConfigError(f"{path} is not a readable ONNX file (truncated or not ONNX?): {exc}") from exc

    def sig(values: Any) -> Signature:
        out = {}
        for vi in values:
            tt = vi.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
            out[vi.name] = (shape, helper.tensor_dtype_to_np_dtype(tt.elem_type).name)
        return out

    return sig(proto.graph.input), sig(proto.graph.output), {m.key: m.value for m in proto.metadata_props}


class SlotRing:
    """Bookkeeping of T + 1 frame slots (see the module docstring); no buffers of its own.

    ``bindings()`` says which slot each ``memory_k`` input binds (nearest first; inputs past the
    fill level get a slot that is neither filled nor the output, and ``frame_valid`` False),
    and which slot receives ``new_memory``; ``commit(out)`` records that the step ran.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.num_slots = capacity + 1
        self.order: list[int] = []  # filled slots, nearest first

    @property
    def fill(self) -> int:
        return len(self.order)

    def output_slot(self) -> int:
        free = [s for s in range(self.num_slots) if s not in self.order]
        return free[0]

    def bindings(self) -> tuple[list[int], list[bool], int]:
        out = self.output_slot()
        spare = [s for s in range(self.num_slots) if s not in self.order and s != out]
        pad = spare[0] if spare else out  # only when fill == T: then no input needs padding
        inputs = self.order + [pad] * (self.capacity - self.fill)
        valid = [True] * self.fill + [False] * (self.capacity - self.fill)
        return inputs, valid, out

    def commit(self, out: int) -> None:
        self.order = [out] + self.order[:self.capacity - 1]

    def reset(self) -> None:
        self.order = []


class NoMemory:
    """State of a per-frame baseline graph: nothing to remember."""

    capacity = 0
    fill = 0

    def reset(self) -> None:
        pass
