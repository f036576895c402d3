"""The typed graphs a strongly typed TensorRT network builds from (TensorRT 10 and 11): fp16 and Q/DQ int8.

TensorRT 11 has no fp16/int8 builder flags and no implicit calibration; the graph says the
precision (:mod:`~stt_ros.runtime.tensorrt_build`). From the fp32 ``stt-export`` graph:

* fp16 (:func:`to_fp16`): weights, constants and computation in float16; the graph's inputs and
  outputs keep their types (``memory_*``/``new_memory``/``logits`` float32, ``image`` uint8,
  ``class_map`` int32), so the runtime and the graph contract do not change.
* int8 (:func:`to_qdq`): QuantizeLinear/DequantizeLinear pairs from onnxruntime's static
  quantization (QDQ format, per-channel weights) calibrated on consecutive frames of a directory
  of images or a rosbag2 (:func:`stt_ros.runtime.calibration.calibration_images`), each fed with
  the real keys/values of the previous frames (:mod:`~stt_ros.runtime.tensorrt_calibration`).

:func:`precision_graph` keeps the derived graph beside the source (``<stem>.fp16.onnx``,
``<stem>.int8.onnx``) with the source's SHA-256 and the calibration in its metadata, and derives
it again when either changes. Pure onnx/onnxruntime: no TensorRT needed, so ``stt-export
--precision`` writes the same graphs on any machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from stt_ros.config import ConfigError, STTConfig

log = logging.getLogger(__name__)

META_PRECISION = "stt_ros.precision"
META_SOURCE = "stt_ros.precision_source_sha256"
META_CALIBRATION = "stt_ros.calibration"
#: inputs that must stay float32 whatever the graph's precision: (op type, input index)
_FLOAT32_INPUTS = {("Resize", 1), ("Resize", 2)}


def _meta(proto: Any) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def _set_meta(proto: Any, values: dict[str, str]) -> None:
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    for k, v in [*kept, *values.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def graph_precision(proto: Any) -> str:
    """fp32, fp16 or int8: the metadata ``stt-export --precision`` writes, else what the graph holds."""
    import onnx

    saved = _meta(proto).get(META_PRECISION)
    if saved:
        return saved
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer):
        return "fp16"
    return "fp32"


def to_fp16(proto: Any) -> Any:
    """A float16 copy of a float32 graph; graph inputs/outputs keep their types (Casts at the edges)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    keep32 = {n.input[i] for n in g.node for (op, i) in _FLOAT32_INPUTS if n.op_type == op and len(n.input) > i} - {""}

    def half(t: Any) -> Any:
        if t.data_type != TensorProto.FLOAT or t.name in keep32:
            return t
        arr = numpy_helper.to_array(t)
        return numpy_helper.from_array(np.clip(arr, -65504, 65504).astype(np.float16)
                                       if np.isfinite(arr).all() else arr.astype(np.float16), t.name)

    for i, t in enumerate(list(g.initializer)):
        g.initializer[i].CopyFrom(half(t))
    for n in g.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
            elif a.type == onnx.AttributeProto.TENSOR and not (n.op_type == "Constant" and n.output[0] in keep32):
                a.t.CopyFrom(half(a.t))
    edge: list[Any] = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            cast = inp.name + "/fp16"
            for n in g.node:
                n.input[:] = [cast if x == inp.name else x for x in n.input]
            edge.append(helper.make_node("Cast", [inp.name], [cast], to=TensorProto.FLOAT16, name=cast))
    for out in g.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            inner = out.name + "/fp16"
            for n in g.node:
                n.output[:] = [inner if x == out.name else x for x in n.output]
                n.input[:] = [inner if x == out.name else x for x in n.input]
            edge.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT, name=out.name + "/fp32"))
    nodes = edge[:len([e for e in edge if e.name.endswith("/fp16")])] + list(g.node) + \
        [e for e in edge if e.name.endswith("/fp32")]
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    _set_meta(model, {META_PRECISION: "fp16"})
    return model


def to_qdq(source: Path, output: Path, config: STTConfig, calib_source: str | Path, frames: int,
           topic: str | None = None) -> int:
    """Write the Q/DQ int8 graph of ``source`` to ``output``, calibrated on ``frames`` frames of
    ``calib_source``; the number of frames used."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from stt_ros.runtime.tensorrt_calibration import StepCalibrationReader
    from stt_ros.weights import atomic_write

    reader = StepCalibrationReader(source, config, calib_source, frames, topic)
    tmp = output.with_name(output.name + ".qdq-tmp.onnx")
    try:
        quantize_static(str(source), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"],  # where int8 kernels pay
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})  # TensorRT: zp 0
        if reader.count == 0:
            raise ConfigError(f"{calib_source} gave no calibration frames")
        proto = onnx.load(str(tmp))
        _set_meta(proto, {META_PRECISION: "int8"})
        data = proto.SerializeToString()
        atomic_write(output, lambda t: Path(t).write_bytes(data))
    finally:
        tmp.unlink(missing_ok=True)
    return reader.count


def derived_graph_path(onnx_path: str | Path, precision: str) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{precision}.onnx")


def precision_graph(onnx_path: str | Path, precision: str, config: STTConfig, calib_source: str | Path | None = None,
                    calib_frames: int = 100, calib_topic: str | None = None, source_sha256: str = "") -> Path:
    """The graph a strongly typed network builds ``precision`` from: ``onnx_path`` itself when it
    already is of that precision (or fp32 is asked for), else the derived graph beside it, derived
    again when the source or the calibration frames changed. int8 without frames reuses a derived
    graph of the same source, or raises ConfigError."""
    import onnx

    from stt_ros.runtime.calibration import calibration_descriptor
    from stt_ros.runtime.tensorrt_cache import file_sha256
    from stt_ros.weights import atomic_write

    onnx_path = Path(onnx_path)
    proto = onnx.load(str(onnx_path))
    have = graph_precision(proto)
    if have == precision:
        return onnx_path
    if have != "fp32":
        raise ConfigError(f"{onnx_path} is a {have} graph; precision={precision} needs the fp32 export "
                          f"(or one exported with stt-export --precision {precision})")
    if precision == "fp32":
        return onnx_path
    out = derived_graph_path(onnx_path, precision)
    sha = source_sha256 or file_sha256(onnx_path)
    saved = _meta(onnx.load(str(out), load_external_data=False)) if out.is_file() else {}
    if precision == "fp16":
        if saved.get(META_SOURCE) != sha:
            model = to_fp16(proto)
            _set_meta(model, {META_SOURCE: sha})
            data = model.SerializeToString()
            atomic_write(out, lambda t: Path(t).write_bytes(data))
            log.info("wrote the fp16 graph %s", out.name)
        return out
    if precision != "int8":
        raise ConfigError(f"precision={precision!r}: use fp32, fp16 or int8")
    calib = calibration_descriptor(calib_source, calib_frames) if calib_source is not None else ""
    if saved.get(META_SOURCE) == sha and (calib_source is None or saved.get(META_CALIBRATION) == calib):
        return out
    if calib_source is None:
        raise ConfigError("precision=int8 needs calibration frames: give a directory of images or a rosbag2 "
                          "(--calib-dir / calib_source=...)")
    n = to_qdq(onnx_path, out, config, calib_source, calib_frames, calib_topic)
    model = onnx.load(str(out))
    _set_meta(model, {META_SOURCE: sha, META_CALIBRATION: calib})
    data = model.SerializeToString()
    atomic_write(out, lambda t: Path(t).write_bytes(data))
    log.info("wrote the Q/DQ int8 graph %s (calibrated on %d frames)", out.name, n)
    return out
