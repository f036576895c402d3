"""OpenVINO backend: the ``stt-export`` streaming step on the CPU in fp32, bf16 or int8.

Source: ``config.weights`` names the exported graph (.onnx, the one onnxruntime runs) or a
checkpoint (.safetensors/.pth, with the config it was trained for): a checkpoint is exported once
with :func:`stt_train.export.export_step` (needs torch) and converted with ``openvino.convert_model``.

Precisions: fp32 (``INFERENCE_PRECISION_HINT`` f32: OpenVINO would otherwise pick bf16 by itself on
AMX CPUs); bf16 where the CPU offers it (``OPTIMIZATION_CAPABILITIES`` lists BF16: AVX512-BF16 or
AMX), else a ConfigError naming the missing feature; ``auto`` = bf16 where offered, else fp32; int8
by NNCF post-training quantization (``nncf.quantize``, TRANSFORMER model type) calibrated on
consecutive frames with their real memory inputs (a user's image folder or rosbag2 via
:mod:`stt_ros.runtime.calibration`, or SynthDrive frames rendered at the input size when no source is given).

Cache: the compiled model (``CompiledModel.export_model``) is written beside the weights when that
folder is writable, else under the user cache dir (``$XDG_CACHE_HOME/stt_ros/openvino``), as one
file ``<stem>.<precision>.<H>x<W>.ov<version>.blob``: a JSON header (:func:`cache_key`: source
SHA-256, graph config, precision, input size, OpenVINO version, CPU, calibration, the graph rewrites
of :func:`convert_onnx` and, for a checkpoint, a fingerprint of the model and exporter code) and the
blob with its length and SHA-256. It is rebuilt when any key field differs; a truncated or corrupt file
is rebuilt with one warning. Written atomically.

Run time, per stream: its own InferRequest and T + 1 preallocated numpy slots wrapped once in
``ov.Tensor(..., shared_memory=True)``; a step sets the slots as ``memory_k`` nearest first and
the spare one as ``new_memory`` (:class:`stt_ros.runtime.graph_io.SlotRing`), so OpenVINO reads
and writes the ring in place: no frame is copied or allocated. (Stateful variables were the
alternative; they would need a rewritten graph, other than the one onnxruntime and TensorRT run,
and a T-deep ring of states per request; binding tensors keeps the one graph and the one ring.)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stt_ros.config import ConfigError, STTConfig
from stt_ros.model.graph_contract import (
    CLASS_OUTPUT,
    GRAPH_FIELDS,
    IMAGE_INPUT,
    LOGITS_OUTPUT,
    MEMORY_OUTPUT,
    VALID_INPUT,
    Signature,
    expected_io,
    memory_input_name,
    onnx_signature,
)
from stt_ros.model.specs import MODEL_SPECS
from stt_ros.runtime.backend import Backend, BackendOutput
from stt_ros.runtime.calibration import DEFAULT_CALIB_FRAMES, calibration_descriptor, calibration_images
from stt_ros.runtime.graph_io import SlotRing, SlotRingState, check_graph, export_hint
from stt_ros.runtime.tensorrt_cache import file_sha256  # pure Python, no TensorRT

log = logging.getLogger(__name__)

DEVICE = "CPU"
CACHE_MAGIC = b"stt_ros.openvino/1\n"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")
#: CPU features that give OpenVINO's CPU plugin bf16 (it lists them as the BF16 capability)
BF16_FEATURES = "AVX512-BF16 or AMX-BF16"


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ConfigError("backend=openvino needs the openvino package: `pip install openvino`") from exc
    return openvino


def openvino_version(ov: Any) -> str:
    """The OpenVINO build, e.g. 2026.4.1-22982-e213a147257-releases/2026/4 (part of the cache key)."""
    return str(ov.get_version())


def cpu_capabilities(core: Any) -> list[str]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of the CPU (FP32, BF16, INT8, ...)."""
    return [str(c) for c in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")]


def resolve_precision(requested: str, capabilities: list[str], cpu_name: str = "this CPU") -> tuple[str, str]:
    """(precision that runs, why) for ``requested`` (auto, fp32, bf16, int8) on a CPU with ``capabilities``."""
    has_bf16 = "BF16" in capabilities
    if requested == "auto":
        if has_bf16:
            return "bf16", f"precision=auto: {cpu_name} supports bf16 (OpenVINO capabilities {capabilities})"
        return "fp32", f"precision=auto: {cpu_name} has no bf16 ({BF16_FEATURES}), running fp32"
    if requested == "bf16" and not has_bf16:
        raise ConfigError(f"precision=bf16 needs a CPU with {BF16_FEATURES}; {cpu_name} lacks it (OpenVINO "
                          f"capabilities {capabilities}). Use precision=fp32 (or auto, which falls back to fp32)")
    if requested == "fp16":
        raise ConfigError("backend=openvino runs on the CPU in fp32, bf16 or int8, not fp16; use precision=bf16 "
                          "(or auto)")
    if requested == "int8" and "INT8" not in capabilities:
        raise ConfigError(f"precision=int8: {cpu_name} has no int8 support in OpenVINO (capabilities {capabilities})")
    return requested, f"precision={requested} as configured"


def cache_key(source_sha256: str, config: STTConfig, precision: str, version: str, cpu: str,
              calibration: str = "", exporter: str = "") -> dict[str, str]:
    """Everything a cached compiled model depends on; a difference in any field means rebuild.
    ``exporter``: for a checkpoint source, :func:`exporter_fingerprint` (the graph it exports to)."""
    graph = {k: v for k, v in config.to_dict().items() if k in GRAPH_FIELDS}
    return {"source_sha256": source_sha256, "graph_config": json.dumps(graph, sort_keys=True), "precision": precision,
            "input_size": f"{config.input_height}x{config.input_width}", "openvino": version, "cpu": cpu,
            "calibration": calibration, "conversion": CONVERSION, "exporter": exporter}


def exporter_fingerprint() -> str:
    """SHA-256 of the code that turns a checkpoint into the step graph (``stt_ros.model`` and the
    exporter): a checkpoint's compiled model is rebuilt when that code changes, as an .onnx one is when
    its file does."""
    import importlib.util

    model_dir = Path(__file__).resolve().parents[1] / "model"  # stt_ros/model, read, not imported
    files = sorted(model_dir.glob("*.py"))
    spec = importlib.util.find_spec("stt_train.export")
    if spec is not None and spec.origin:
        files.append(Path(spec.origin))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def folder_writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def cache_dir_for(source: Path) -> tuple[Path, str]:
    """(folder, why): beside ``source`` when writable, else the user cache dir."""
    beside = source.resolve().parent
    if folder_writable(beside):
        return beside, "beside the weights"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stt_ros" / "openvino", f"in the user cache dir ({beside} is not writable)"


def read_cache(path: Path, key: dict[str, str]) -> tuple[bytes | None, str]:
    """(blob, "") when ``path`` holds a compiled model for ``key``; else (None, why not). A why
    starting with 'corrupt' means the file is damaged (not merely for other inputs)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(len(CACHE_MAGIC)) != CACHE_MAGIC:
                return None, f"corrupt cache file {path} (not an stt_ros OpenVINO cache)"
            header = json.loads(fh.readline(1 << 16).decode("utf-8"))
            blob = fh.read()
    except FileNotFoundError:
        return None, f"no cached model {path.name}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"corrupt cache file {path} ({exc})"
    if not isinstance(header, dict):
        return None, f"corrupt cache file {path} (bad header)"
    diffs = [f"{name} {header.get(name)!r} -> {value!r}" for name, value in key.items() if header.get(name) != value]
    if diffs:
        return None, "cached model was built for other inputs: " + "; ".join(diffs)
    if len(blob) != header.get("blob_bytes") or hashlib.sha256(blob).hexdigest() != header.get("blob_sha256"):
        return None, (f"corrupt cache file {path} (truncated or damaged: {len(blob)} of "
                      f"{header.get('blob_bytes')} bytes)")
    return blob, ""


def write_cache(path: Path, key: dict[str, str], blob: bytes, extra: dict[str, Any]) -> None:
    from stt_ros.weights import atomic_write

    header = {**key, **extra, "blob_bytes": len(blob), "blob_sha256": hashlib.sha256(blob).hexdigest()}
    line = json.dumps(header, sort_keys=True).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(CACHE_MAGIC + line + blob))


def port_signature(ports: Any, wanted: Signature) -> Signature:
    """{name: (shape, numpy dtype name)} of a compiled model's inputs or outputs; a port with several
    tensor names (OpenVINO keeps the ONNX producers' too) goes by the one in ``wanted``."""
    out = {}
    for p in ports:
        names = p.get_names()
        name = next((n for n in wanted if n in names), p.get_any_name())
        out[name] = (tuple(int(d) for d in p.get_shape()), np.dtype(p.get_element_type().to_dtype()).name)
    return out


def decompose_logsumexp(proto: Any) -> int:
    """Rewrite every ReduceLogSumExp of the ONNX ``proto`` (in place) as max + log(sum(exp(x - max))),
    returning how many. OpenVINO 2026.4's ONNX frontend ignores the node's ``axes`` attribute (opset
    < 18) and reduces over all axes; the rewrite uses ops it converts correctly. A slice of all -inf
    gives -inf, as ReduceLogSumExp does (its max is replaced by 0 before the subtraction)."""
    from onnx import TensorProto, helper

    nodes, count = [], 0
    for node in proto.graph.node:
        if node.op_type != "ReduceLogSumExp" or len(node.input) != 1:
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if "axes" not in attrs:
            nodes.append(node)
            continue
        count += 1
        x, y, axes, keep = node.input[0], node.output[0], list(attrs["axes"]), int(attrs.get("keepdims", 1))
        t = f"{node.name or y}/ov_lse"
        zero = helper.make_tensor(f"{t}/zero", TensorProto.FLOAT, [], [0.0])
        axes_t = helper.make_tensor(f"{t}/axes", TensorProto.INT64, [len(axes)], axes)
        proto.graph.initializer.extend([zero, axes_t])
        nodes += [
            helper.make_node("ReduceMax", [x], [f"{t}/max"], axes=axes, keepdims=1),
            helper.make_node("IsInf", [f"{t}/max"], [f"{t}/inf"]),
            helper.make_node("Where", [f"{t}/inf", f"{t}/zero", f"{t}/max"], [f"{t}/m"]),
            helper.make_node("Sub", [x, f"{t}/m"], [f"{t}/d"]),
            helper.make_node("Exp", [f"{t}/d"], [f"{t}/e"]),
            helper.make_node("ReduceSum", [f"{t}/e", f"{t}/axes"], [f"{t}/s"], keepdims=keep),
            helper.make_node("Log", [f"{t}/s"], [f"{t}/l"]),
        ]
        if keep:
            nodes.append(helper.make_node("Add", [f"{t}/l", f"{t}/m"], [y]))
        else:
            nodes += [helper.make_node("Squeeze", [f"{t}/m", f"{t}/axes"], [f"{t}/mq"]),
                      helper.make_node("Add", [f"{t}/l", f"{t}/mq"], [y])]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return count


def _reduce(op: str, x: str, y: str, axis: int, keep: int, opset: int, axes_name: str) -> Any:
    """A ReduceMax/ReduceMin node over one axis (axes an attribute before opset 18, an input from 18)."""
    from onnx import helper

    if opset >= 18:
        return helper.make_node(op, [x, axes_name], [y], keepdims=keep)
    return helper.make_node(op, [x], [y], axes=[axis], keepdims=keep)


def decompose_argmax(proto: Any) -> int:
    """Rewrite every float ArgMax of the ONNX ``proto`` (in place) as the smallest index where the input
    equals its max (ReduceMax, Equal, Where, ReduceMin, Cast), returning how many: the same indices
    (ties: the first, as ArgMax; a NaN in the slice gives the class count instead). OpenVINO turns an
    ArgMax into a TopK(k=1), which on a channels-last map (the layout its convolutions and resize leave
    the logits in) is slow: 24 ms of a 345 ms BiSe18 step at 512x1024 on 2 AVX2 cores, against ~11 ms
    for the reductions (7 of 269 ms on an AMX Xeon). Only for fp32 (:data:`ARGMAX_REWRITE_PRECISIONS`): in
    bf16 the reductions are far slower than the TopK. Not applied for onnxruntime, whose ArgMax is the
    faster of the two there."""
    import onnx
    from onnx import TensorProto, helper

    if not any(n.op_type == "ArgMax" for n in proto.graph.node):
        return 0
    # data_prop: the class count of a Resize's output (sizes computed from Shape) is only known with it
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    types = {vi.name: vi.type.tensor_type for vi in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    nodes, count = [], 0
    for node in proto.graph.node:
        if node.op_type != "ArgMax":
            nodes.append(node)
            continue
        tt = types.get(node.input[0])
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if tt is None or tt.elem_type != TensorProto.FLOAT or attrs.get("select_last_index", 0):
            nodes.append(node)
            continue
        rank = len(tt.shape.dim)
        axis = int(attrs.get("axis", 0)) % rank
        n = tt.shape.dim[axis].dim_value
        if n <= 0:  # the class count must be static
            nodes.append(node)
            continue
        count += 1
        x, y, keep = node.input[0], node.output[0], int(attrs.get("keepdims", 1))
        t = f"{node.name or y}/ov_argmax"
        index_shape = [1] * rank
        index_shape[axis] = n
        proto.graph.initializer.extend([
            helper.make_tensor(f"{t}/index", TensorProto.FLOAT, index_shape, [float(i) for i in range(n)]),
            helper.make_tensor(f"{t}/none", TensorProto.FLOAT, [], [float(n)]),
            helper.make_tensor(f"{t}/axes", TensorProto.INT64, [1], [axis])])
        nodes += [
            _reduce("ReduceMax", x, f"{t}/max", axis, 1, opset, f"{t}/axes"),
            helper.make_node("Equal", [x, f"{t}/max"], [f"{t}/is_max"]),
            helper.make_node("Where", [f"{t}/is_max", f"{t}/index", f"{t}/none"], [f"{t}/candidates"]),
            _reduce("ReduceMin", f"{t}/candidates", f"{t}/first", axis, keep, opset, f"{t}/axes"),
            helper.make_node("Cast", [f"{t}/first"], [y], to=TensorProto.INT64),
        ]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return count


#: What :func:`convert_onnx` does to a graph before OpenVINO converts it, and what a checkpoint is exported
#: with (part of the cache key: a compiled model from another version of these rewrites is rebuilt).
CONVERSION = "decompose_logsumexp+decompose_argmax(fp32)+layout=openvino"
#: NNCF's model type for int8 (``nncf.ModelType`` member name). TRANSFORMER: no quantizers on the
#: element-wise ops (the attention's additive -inf masks and the residual adds among them), symmetric
#: activations into activation x activation MatMuls, SmoothQuant, asymmetric activations elsewhere. With
#: the default (CNN) type the demo model lost 2.26 mIoU / 2.18 TC against fp32 on 30 held-out
#: SynthDrive sequences; with this one 0.04 / 0.02 (AVX512-BF16 EPYC, OpenVINO 2026.4.1, NNCF 3.4).
#: At 512x1024 it costs 8-11 % of int8's STT-BiSe18 step there (two interleaved A/Bs: 160 vs 148 ms and
#: 170 vs 153; bf16 175 and 183).
NNCF_MODEL_TYPE = "TRANSFORMER"

#: Precisions whose graph gets :func:`decompose_argmax`: in bf16 (AMX Xeon, OpenVINO 2026.4) the
#: reductions cost 38 ms more than TopK on a 512x1024 BiSe18 step of 53 ms; in fp32 they save 7 of 269.
ARGMAX_REWRITE_PRECISIONS = ("fp32",)


def convert_onnx(ov: Any, path: str | Path, precision: str = "fp32") -> Any:
    """``ov.convert_model`` of the ONNX file at ``path``, after :func:`decompose_logsumexp` and, for the
    :data:`ARGMAX_REWRITE_PRECISIONS`, :func:`decompose_argmax`."""
    import onnx

    proto = onnx.load(str(path))
    rewritten = decompose_logsumexp(proto)
    if precision in ARGMAX_REWRITE_PRECISIONS:
        rewritten += decompose_argmax(proto)
    if not rewritten:
        return ov.convert_model(str(path))
    with tempfile.TemporaryDirectory(prefix="stt_openvino_") as tmp:
        patched = Path(tmp) / "step.onnx"
        onnx.save(proto, str(patched))
        return ov.convert_model(str(patched))


class OvStreamState(SlotRingState):
    """One stream's state for :class:`OpenVINOBackend`: an InferRequest of its own (and one on the
    side-by-side model, with ``openvino_streams`` > 1), both bound to the same buffers: (STT models) T + 1
    preallocated slots bound in place, the ``frame_valid`` flags and the outputs."""

    def __init__(self, backend: OpenVINOBackend) -> None:
        ov, cfg = backend.ov, backend.config
        self.requests = [backend.compiled.create_infer_request()]
        if backend.side_by_side is not None:
            self.requests.append(backend.side_by_side.create_infer_request())
        self.request = self.requests[0]  # the one the last step started
        h, w = cfg.input_height, cfg.input_width
        self.image = np.zeros((1, h, w, 3), np.uint8)
        self.class_map = np.zeros((1, h, w), np.int32)
        self.logits = None
        if backend.has_logits:
            self.logits = np.zeros((1, cfg.num_classes, h, w), np.float32)
        for request in self.requests:
            request.set_tensor(IMAGE_INPUT, ov.Tensor(self.image, shared_memory=True))
            request.set_tensor(CLASS_OUTPUT, ov.Tensor(self.class_map, shared_memory=True))
            if self.logits is not None:
                request.set_tensor(LOGITS_OUTPUT, ov.Tensor(self.logits, shared_memory=True))
        self.ring = SlotRing(cfg.key_frames) if backend.temporal else None
        self._out: int | None = None  # the slot a started step writes (start/wait)
        self.capacity = cfg.key_frames if backend.temporal else 0
        # zeros: slots bound to invalid inputs are masked, but must never hold NaN (0 * NaN = NaN)
        self.arrays = [np.zeros(backend.memory_shape, np.float32) for _ in range(self.ring.num_slots)] \
            if self.ring else []
        self.slots = [ov.Tensor(a, shared_memory=True) for a in self.arrays]
        if self.ring:
            self.valid = np.zeros(cfg.key_frames, np.bool_)
            for request in self.requests:
                request.set_tensor(VALID_INPUT, ov.Tensor(self.valid, shared_memory=True))

    def run(self, image: np.ndarray) -> None:
        """One step on ``image`` (H, W, 3): bind the ring, infer, commit the new frame's slot."""
        self.start(image)
        self.wait()

    def start(self, image: np.ndarray, side_by_side: bool = False) -> None:
        """Bind the ring and start the step on ``image`` (H, W, 3) without waiting for it; ``side_by_side``:
        on the backend's side-by-side model where it has one (one of its streams, beside other cameras'),
        else on the latency model (every core)."""
        np.copyto(self.image[0], image)
        self.request = self.requests[-1 if side_by_side else 0]
        self._out = None
        if self.ring:
            inputs, valid, self._out = self.ring.bindings()
            for k, slot in enumerate(inputs):
                self.request.set_tensor(memory_input_name(k), self.slots[slot])
            self.valid[:] = valid
            self.request.set_tensor(MEMORY_OUTPUT, self.slots[self._out])
        self.request.start_async()  # start + wait: infer() would also copy every output into a dict

    def wait(self) -> None:
        """Wait for the started step, then commit the new frame's slot."""
        self.request.wait()
        if self._out is not None:
            self.ring.commit(self._out)
            self._out = None


class OpenVINOBackend(Backend):
    """The exported streaming step on OpenVINO's CPU plugin; same interface and results as TorchBackend.

    ``onnx_path``: the graph (default: ``config.weights``, an .onnx file or a checkpoint exported
    once). ``calib_source``/``calib_frames``/``calib_topic``: int8 calibration frames (an image
    folder or a rosbag2; default: SynthDrive frames). ``threads``: inference threads (0 =
    OpenVINO's default). ``cache_dir``: where the compiled model is cached (default: beside the
    weights, else the user cache dir). ``rebuild``: ignore the cache.
    """

    name = "openvino"

    def __init__(self, config: STTConfig, onnx_path: str | Path | None = None, calib_source: str | Path | None = None,
                 calib_frames: int = DEFAULT_CALIB_FRAMES, calib_topic: str | None = None, threads: int = 0,
                 cache_dir: str | Path | None = None, rebuild: bool = False) -> None:
        super().__init__(config)
        if config.device != "cpu":
            raise ConfigError(f"backend=openvino runs on the CPU: set device=cpu, not {config.device!r}")
        self.ov = ov = import_openvino()
        self.core = core = ov.Core()
        self.temporal = MODEL_SPECS[config.model].temporal
        self.memory_shape = expected_io(config)[0][memory_input_name(0)][0] if self.temporal else ()
        cpu = str(core.get_property(DEVICE, "FULL_DEVICE_NAME"))
        caps = cpu_capabilities(core)
        self.precision, why = resolve_precision(config.precision, caps, cpu)
        log.info("openvino: %s", why)
        source = Path(onnx_path) if onnx_path is not None else self._weights_path(config)
        if not source.is_file():
            raise ConfigError(f"backend=openvino: {source} does not exist")
        self.source = source
        self.from_checkpoint = source.suffix != ".onnx"
        if not self.from_checkpoint:
            inputs, outputs, meta = onnx_signature(source)
            check_graph(inputs, outputs, meta, config, str(source))  # before converting or reading the cache
        calib = ""
        if self.precision == "int8":
            calib = calibration_descriptor(calib_source, calib_frames) if calib_source is not None else \
                f"synthdrive seed=0 frames<={calib_frames}"
            calib += f" nncf model_type={NNCF_MODEL_TYPE}"
        self.version = openvino_version(ov)
        key = cache_key(file_sha256(source), config, self.precision, self.version, f"{cpu} {','.join(caps)}", calib,
                        exporter_fingerprint() if self.from_checkpoint else "")
        folder, where = (Path(cache_dir), "as configured") if cache_dir is not None else cache_dir_for(source)
        short = self.version.split("-", 1)[0]
        self.cache_path = folder / f"{source.stem}.{self.precision}.{config.input_height}x{config.input_width}" \
                                   f".ov{short}.blob"
        self.properties = self._properties(ov, threads)
        built = None
        blob, reason = (None, "rebuild requested") if rebuild else read_cache(self.cache_path, key)
        self.compiled = None
        if blob is not None:
            try:
                self.compiled = core.import_model(io.BytesIO(blob), DEVICE, self.properties)
                log.info("openvino %s: cached model %s is up to date (%s)", short, self.cache_path, where)
            except RuntimeError as exc:  # OpenVINO raises RuntimeError for a blob it cannot read
                reason = f"corrupt cache file {self.cache_path} (OpenVINO cannot import it: {exc})"
        if self.compiled is None:
            if reason.startswith("corrupt"):
                log.warning("openvino: %s; rebuilding it", reason)
            else:
                log.info("openvino %s: building %s (%s), cached %s", short, self.cache_path.name, reason, where)
            t0 = time.perf_counter()
            model = self._convert(ov)
            if self.precision == "int8":
                model = self._quantize(model, calib_source, calib_frames, calib_topic)
            self.compiled = core.compile_model(model, DEVICE, self.properties)
            stream = io.BytesIO()
            self.compiled.export_model(stream)
            built = stream.getvalue()
            write_cache(self.cache_path, key, built, {"source": str(source)})
            log.info("openvino: built and cached %s in %.1f s", self.cache_path, time.perf_counter() - t0)
        want_in, want_out = expected_io(config)
        inputs = port_signature(self.compiled.inputs, want_in)
        outputs = port_signature(self.compiled.outputs, {**want_out, LOGITS_OUTPUT: ((), "")})
        self.has_logits = check_graph(inputs, outputs, {}, config, str(self.cache_path))
        #: with openvino_streams > 1, the same compiled model once more on that many CPU streams: infer_many
        #: runs two or more cameras there side by side, one core or so each (a lone camera, and infer, keep
        #: the latency model on every core)
        self.side_by_side = None
        if config.openvino_streams > 1:
            # unpinned: in the node the decoders, outputs and DDS share the cores, and a stream pinned to a
            # core they occupy holds up the whole step (4 cameras through stt_node, 2 cores: 0.88x the masks
            # per second of one stream pinned, 1.05x unpinned; bench/bench_node_cameras.py)
            side = {k: v for k, v in self.properties.items() if k != "PERFORMANCE_HINT"}
            self.side_by_side = core.import_model(io.BytesIO(built if built is not None else blob), DEVICE,
                                                  {**side, "NUM_STREAMS": config.openvino_streams,
                                                   "ENABLE_CPU_PINNING": False})
        self.streams = int(self.side_by_side.get_property("NUM_STREAMS")) if self.side_by_side is not None else 1
        log.info("openvino %s: %s runs %s in %s on %s%s", short, DEVICE, source.name, self.precision, cpu,
                 "" if self.streams == 1 else f"; cameras stepped together on {self.streams} streams (requests side "
                                              f"by side), a lone camera on every core")

    @staticmethod
    def _weights_path(config: STTConfig) -> Path:
        if not config.weights:
            raise ConfigError(f"backend=openvino needs weights: a checkpoint (.safetensors) or the exported graph "
                              f"(`{export_hint(config)}`); weights is empty")
        path = Path(config.weights)
        if path.suffix not in (".onnx", *CHECKPOINT_SUFFIXES):
            raise ConfigError(f"backend=openvino: weights={config.weights} is neither an .onnx graph nor a checkpoint "
                              f"({', '.join(CHECKPOINT_SUFFIXES)})")
        return path

    def _properties(self, ov: Any, threads: int) -> dict[str, Any]:
        # int8: the layers NNCF leaves unquantized run in fp32 (not in whatever OpenVINO would pick)
        out: dict[str, Any] = {"INFERENCE_PRECISION_HINT": ov.Type.bf16 if self.precision == "bf16" else ov.Type.f32,
                               "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            out["INFERENCE_NUM_THREADS"] = threads
        return out

    def _convert(self, ov: Any) -> Any:
        """The ov.Model of the step: converted from the .onnx, or exported from the checkpoint first."""
        if not self.from_checkpoint:
            return convert_onnx(ov, self.source, self.precision)
        from stt_ros.model.zoo import build_model
        from stt_ros.weights import load_weights
        from stt_train.export import export_step

        cfg = self.config
        model = build_model(cfg).eval()
        load_weights(model, self.source, config=cfg.to_dict())
        with tempfile.TemporaryDirectory(prefix="stt_openvino_") as tmp:
            graph = Path(tmp) / "step.onnx"
            log.info("openvino: exporting %s to ONNX (once; the compiled model is cached)", self.source.name)
            export_step(model, cfg, graph, with_logits=True, weights_note=str(self.source), layout="openvino")
            inputs, outputs, meta = onnx_signature(graph)
            check_graph(inputs, outputs, meta, cfg, str(graph))
            return convert_onnx(ov, graph, self.precision)

    def _calibration_frames(self, source: str | Path | None, frames: int, topic: str | None) -> list[np.ndarray]:
        from stt_ros.runtime.preprocess import Preprocessor

        cfg = self.config
        if source is not None:
            pre = Preprocessor(cfg.input_height, cfg.input_width, cfg.resize_mode,
                               tuple(round(m * 255) for m in cfg.mean))
            return [pre(img)[0] for img in calibration_images(source, frames, topic)]
        from stt_train.synthdrive.config import SynthDriveConfig
        from stt_train.synthdrive.dataset import render_sequence

        log.info("openvino int8: no calibration source given, rendering %d SynthDrive frames", frames)
        sd = SynthDriveConfig(height=cfg.input_height, width=cfg.input_width, frames=max(frames, 2), supersample=1)
        return [f.image for _, f in zip(range(frames), render_sequence(sd, seed=0, split="calibration"), strict=False)]

    def _quantize(self, model: Any, source: str | Path | None, frames: int, topic: str | None) -> Any:
        """NNCF post-training quantization on consecutive frames, each with the memory inputs the
        fp32 model computed for the frames before it (so the attention path sees real keys/values)."""
        try:
            import nncf
        except ImportError as exc:
            raise ConfigError("precision=int8 with backend=openvino needs nncf: `pip install nncf`") from exc
        images = self._calibration_frames(source, frames, topic)
        if not images:
            raise ConfigError(f"precision=int8: no calibration frames in {source}")
        fp32 = self.core.compile_model(model, DEVICE, {**self.properties,
                                                       "INFERENCE_PRECISION_HINT": self.ov.Type.f32})
        request = fp32.create_infer_request()
        ring = SlotRing(self.config.key_frames) if self.temporal else None
        past: list[np.ndarray] = []  # each frame's new_memory, nearest first (references, no ring copies)
        samples = []
        for img in images:
            feeds: dict[str, np.ndarray] = {IMAGE_INPUT: np.ascontiguousarray(img)[None]}
            if ring is not None:
                pad = np.zeros(self.memory_shape, np.float32)
                for k in range(self.config.key_frames):
                    feeds[memory_input_name(k)] = past[k] if k < len(past) else pad
                feeds[VALID_INPUT] = np.array([k < len(past) for k in range(self.config.key_frames)], np.bool_)
            samples.append(feeds)
            res = request.infer(feeds)
            if ring is not None:
                past = [np.array(res[MEMORY_OUTPUT])] + past[:self.config.key_frames - 1]
        log.info("openvino int8: NNCF quantization on %d frames", len(samples))
        return nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples),
                             target_device=nncf.TargetDevice.CPU, model_type=nncf.ModelType[NNCF_MODEL_TYPE])

    def create_state(self) -> OvStreamState:
        return OvStreamState(self)

    def infer(self, image: np.ndarray, state: OvStreamState, return_logits: bool = False) -> BackendOutput:
        self.check_input(image, return_logits)
        t0 = time.perf_counter()
        state.run(image)
        return self._output(state, return_logits, t0)

    @staticmethod
    def _output(state: OvStreamState, return_logits: bool, t0: float) -> BackendOutput:
        class_map = state.class_map[0].astype(np.uint8)
        logits = state.logits[0].copy() if return_logits else None  # the buffer is rewritten next step
        return BackendOutput(class_map, logits, {"network_ms": (time.perf_counter() - t0) * 1e3})

    batching = "concurrent"

    def infer_many(self, images: Sequence[np.ndarray], states: Sequence[OvStreamState],
                   return_logits: bool = False) -> list[BackendOutput]:
        """Every stream's own InferRequest started before any is waited for, each against its own ring:
        with ``openvino_streams`` > 1 and two or more images on the side-by-side model, whose streams run
        them at once; else on the latency model, one after the other."""
        self.check_many(images, states, return_logits)
        t0 = time.perf_counter()
        started = []
        side = self.side_by_side is not None and len(images) > 1
        try:
            for image, state in zip(images, states, strict=True):
                state.start(image, side)
                started.append(state)
        finally:
            for state in started:  # a request that started is always waited for (and its slot committed)
                state.wait()
        return [self._output(state, return_logits, t0) for state in states]
