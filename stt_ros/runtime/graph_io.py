"""What the exported-graph backends (onnxruntime, TensorRT) share: where the graph comes from,
whether it matches a config, and the slot ring that binds buffered frames.

The graph is the one ``stt-export`` writes; its I/O names, metadata keys and expected shapes are
the contract in :mod:`stt_ros.model.graph_contract` (see also docs/DEPLOY.md).

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
from stt_ros.model.graph_contract import (
    GRAPH_FIELDS,
    GRAPH_FORMAT,
    LOGITS_OUTPUT,
    META_CONFIG,
    META_FORMAT,
    Signature,
    expected_io,
)


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


def _signature_problems(kind: str, got: Signature, want: Signature) -> list[str]:
    """What ``got`` lacks or has otherwise than ``want`` (``kind``: input or output)."""
    problems = []
    for name, (shape, dtype) in want.items():
        if name not in got:
            problems.append(f"{kind} {name!r} {dtype}{list(shape)} is missing" if kind == "input"
                            else f"{kind} {name!r} is missing")
        elif got[name] != (shape, dtype):
            got_shape, got_dtype = got[name]
            problems.append(f"{kind} {name!r} is {got_dtype}{list(got_shape)}, config needs {dtype}{list(shape)}")
    return problems


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
    problems += _signature_problems("input", inputs, exp_in)
    problems += [f"unexpected input {name!r}" for name in inputs if name not in exp_in]
    problems += _signature_problems("output", outputs, exp_out)
    if problems:
        raise ConfigError(f"{source} does not match the config ({len(problems)} difference(s)):\n  "
                          + "\n  ".join(problems)
                          + f"\nRe-export for this config (`{export_hint(config, str(source))}`) or set the config "
                          f"to the graph's settings")
    return LOGITS_OUTPUT in outputs


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


class SlotRingState:
    """Base of the exported-graph backends' per-stream states: ``fill`` and ``reset`` of its
    :class:`SlotRing` (``ring`` None for a per-frame model, which remembers nothing)."""

    ring: SlotRing | None = None

    @property
    def fill(self) -> int:
        return self.ring.fill if self.ring else 0

    def reset(self) -> None:
        if self.ring:
            self.ring.reset()
