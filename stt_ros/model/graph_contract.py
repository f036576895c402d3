"""The contract of the exported streaming step, without torch: what ``stt-export`` writes and what
every exported-graph backend (onnxruntime, TensorRT, ...) binds and checks.

Graph I/O (see docs/DEPLOY.md): ``image`` uint8 (1, H, W, 3), ``memory_0 .. memory_{T-1}``
(nearest first) and ``frame_valid`` in; ``class_map`` int32 (1, H, W), ``new_memory`` and
optionally ``logits`` out. The file's metadata records the format and the config fields baked
into the graph, so a backend can refuse a graph exported for other settings.

:class:`stt_ros.model.zoo.StreamingStepGraph` is the torch module behind these names;
:func:`onnx_signature` / :func:`proto_signature` read a graph's inputs, outputs and metadata
(with the ``onnx`` package, imported only when called).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stt_ros.config import ConfigError, STTConfig
from stt_ros.model.specs import MODEL_SPECS

#: Graph I/O names of the exported streaming step.
IMAGE_INPUT = "image"  # uint8 (1, H, W, 3) RGB at the network size
VALID_INPUT = "frame_valid"  # bool (T,): frame k of the memory inputs holds a buffered frame
CLASS_OUTPUT = "class_map"  # int32 (1, H, W) class ids
MEMORY_OUTPUT = "new_memory"  # float32 (1, heads, H/8*W/8, 2*head_dim): this frame's keys/values
LOGITS_OUTPUT = "logits"  # float32 (1, classes, H, W), optional


def memory_input_name(k: int) -> str:
    """Name of the k-th nearest buffered frame's keys/values input (k = 0 the most recent)."""
    return f"memory_{k}"


#: Metadata keys stt-export writes into the ONNX file.
META_FORMAT = "stt_ros.format"
META_CONFIG = "stt_ros.config"  # JSON of the GRAPH_FIELDS the graph was exported with
META_QUERY_CHUNK = "stt_ros.query_chunk"
META_LAYOUT = "stt_ros.layout"  # the attention layout (stt_ros.model.stt.EXPORT_LAYOUTS)
META_WITH_LOGITS = "stt_ros.with_logits"
META_WEIGHTS = "stt_ros.weights"
META_TORCH = "stt_ros.torch"
GRAPH_FORMAT = "stt_ros.step/1"
#: Config fields baked into an exported graph (a backend's config must agree on all of them).
GRAPH_FIELDS = ("model", "num_classes", "key_frames", "key_window_start", "key_window_end", "key_window_step",
                "query_radius", "query_ratio", "query_tiles", "attn_dim", "attn_heads", "attn_affinity",
                "input_height", "input_width", "mean", "std")

Signature = dict[str, tuple[tuple[int, ...], str]]  # {name: (shape, numpy dtype name)}, in graph order


def expected_io(config: STTConfig) -> tuple[Signature, Signature]:
    """Inputs and required outputs of the graph for ``config``."""
    h, w = config.input_height, config.input_width
    inputs = {IMAGE_INPUT: ((1, h, w, 3), "uint8")}
    outputs = {CLASS_OUTPUT: ((1, h, w), "int32")}
    if MODEL_SPECS[config.model].temporal:
        mem = (1, config.attn_heads, (h // 8) * (w // 8), 2 * (config.attn_dim // config.attn_heads))
        inputs.update({memory_input_name(k): (mem, "float32") for k in range(config.key_frames)})
        inputs[VALID_INPUT] = ((config.key_frames,), "bool")
        outputs[MEMORY_OUTPUT] = (mem, "float32")
    return inputs, outputs


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ConfigError("reading an exported graph needs the onnx package: `pip install onnx`") from exc
    return onnx


def proto_signature(proto: Any) -> tuple[Signature, Signature, dict[str, str]]:
    """Inputs, outputs (a dimension without a static size reads -1) and metadata of an ONNX ModelProto."""
    from onnx import helper

    def sig(values: Any) -> Signature:
        out = {}
        for vi in values:
            tt = vi.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
            out[vi.name] = (shape, helper.tensor_dtype_to_np_dtype(tt.elem_type).name)
        return out

    return sig(proto.graph.input), sig(proto.graph.output), {m.key: m.value for m in proto.metadata_props}


def onnx_signature(path: str | Path) -> tuple[Signature, Signature, dict[str, str]]:
    """:func:`proto_signature` of the ONNX file at ``path`` (its weights are not read)."""
    onnx = _import_onnx()
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ConfigError(f"{path} is not a readable ONNX file (truncated or not ONNX?): {exc}") from exc
    return proto_signature(proto)
