"""stt-export: export one streaming step of a zoo model as a static-shape ONNX graph.

The graph (opset 17 by default; TensorRT 10 parses opsets 9..20) is what the onnxruntime and
TensorRT backends run. Shapes are fixed by the config: H x W = input_height x input_width,
h x w = H/8 x W/8, T = key_frames, heads = attn_heads, d = attn_dim / attn_heads.

Inputs (STT models)
  ``image``        uint8   (1, H, W, 3)      RGB at the network size (normalised inside the graph)
  ``memory_0`` ..  float32 (1, heads, h*w, 2d)  keys/values of the buffered frames, nearest first
  ``memory_{T-1}``                           (one input per frame, so a runtime binds ring-buffer
                                             slots in place: no copy, no concatenation)
  ``frame_valid``  bool    (T,)              False for memory inputs that hold no frame yet (the
                                             buffer fills over the first T steps, or after a reset)
Outputs
  ``class_map``    int32   (1, H, W)         argmax of the logits
  ``new_memory``   float32 (1, heads, h*w, 2d)  this frame's keys/values: the runtime writes it
                                             into the slot that becomes ``memory_0`` next step
  ``logits``       float32 (1, classes, H, W)  only with ``--logits``

Per-frame baselines (bise18, psp18, ...) have only ``image`` in and ``class_map`` (+ ``logits``)
out. A frame marked invalid contributes no key (-inf before the softmax); with no valid frame
the step is the per-frame prediction. Query selection runs one TopK per query tile (a band of rows) with a
constant K <= 3840 (TensorRT's limit); the attention runs per square tile of queries over the union
of its queries' windows (:mod:`stt_ros.model.stt`), one Gather of a static table per chunk of tiles
(``--query-chunk`` queries bound the gathered keys/values); the selected positions are marked with a
ScatterND without reduction. ``--layout openvino`` writes the order of operations OpenVINO runs
fastest (8x8 tiles, key|value rows gathered whole; what its backend exports a checkpoint with), the
default ``portable`` the one for onnxruntime and TensorRT; the values are the same.

``--precision fp16`` writes the float16 graph and ``--precision int8`` the Q/DQ graph calibrated on
``--calib-dir`` frames (:mod:`stt_ros.runtime.tensorrt_precision`; the graph's inputs and outputs keep
their types): what a strongly typed TensorRT 10/11 network builds those precisions from. The
TensorRT backend derives them itself from the fp32 graph; these flags write them ahead of time.

The file carries its config in the ONNX metadata (``stt_ros.config``), so a backend can refuse a
graph exported for other settings. Writing is atomic: a failed export leaves no file behind.

Examples::

    stt-export --config models/stt_bise18_synthdrive.yaml \\
        --output models/stt_bise18_synthdrive.onnx
    stt-export --model stt_bise18 --input-height 1024 --input-width 2048 --output /tmp/stt_1024.onnx
    stt-export --model bise18 --num-classes 11 --logits --output /tmp/bise18_camvid.onnx
    stt-export --config models/stt_bise18_synthdrive.yaml --precision fp16 \\
        --output models/stt_bise18_synthdrive.fp16.onnx
    stt-export --config models/stt_bise18_synthdrive.yaml --precision int8 \\
        --calib-dir data/synthdrive/leftImg8bit_sequence/train --output models/stt_bise18_synthdrive.int8.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from stt_ros.config import ConfigError, STTConfig, read_config_file
from stt_ros.model.graph_contract import (
    GRAPH_FIELDS,
    GRAPH_FORMAT,
    META_CONFIG,
    META_FORMAT,
    META_LAYOUT,
    META_QUERY_CHUNK,
    META_TORCH,
    META_WEIGHTS,
    META_WITH_LOGITS,
    Signature,
    proto_signature,
)
from stt_ros.model.stt import EXPORT_LAYOUTS, TOPK_LIMIT
from stt_ros.model.zoo import StreamingStepGraph, VideoSegModel, build_model

DEFAULT_OPSET = 17
#: TensorRT 10 parses opsets 9..20; the legacy TorchScript exporter used here writes up to 20.
OPSET_RANGE = (13, 20)
#: Queries per attention chunk in the graph (gathered keys/values per chunk:
#: chunk * key_size * heads * 2d floats, 69 MB for 1024 queries at the default settings).
DEFAULT_QUERY_CHUNK = 1024
#: Config fields a command-line flag cannot set (runtime choices or their own flag).
_NOT_FLAGS = ("backend", "precision", "device", "weights")


IOList = list[tuple[str, tuple[int, ...], str]]  # [(name, shape, numpy dtype name)]


class ExportError(RuntimeError):
    """The export failed or produced a graph that breaks a deployment rule; the message says which."""


@dataclass
class ExportResult:
    path: Path
    opset: int
    inputs: IOList
    outputs: IOList
    topk_ks: list[int]
    size_bytes: int
    seconds: float
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"wrote {self.path} ({self.size_bytes / 2 ** 20:.1f} MiB, opset {self.opset}, "
                 f"{self.seconds:.1f} s)"]
        for kind, items in (("input ", self.inputs), ("output", self.outputs)):
            lines += [f"  {kind} {name:<12} {dtype:<7} {list(shape)}" for name, shape, dtype in items]
        if self.topk_ks:
            lines.append(f"  TopK K per query tile: {self.topk_ks} (TensorRT limit {TOPK_LIMIT})")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- graph inspection
def _constant_values(graph: Any) -> dict[str, Any]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def topk_ks(model_proto: Any) -> list[int | None]:
    """K of every TopK node (None where K is not a constant: TensorRT needs it to be one)."""
    consts = _constant_values(model_proto.graph)
    ks: list[int | None] = []
    for node in model_proto.graph.node:
        if node.op_type == "TopK":
            k = consts.get(node.input[1]) if len(node.input) > 1 else None
            ks.append(None if k is None else int(k.reshape(-1)[0]))
    return ks


def graph_problems(model_proto: Any, topk_limit: int = TOPK_LIMIT) -> list[str]:
    """Deployment rules the graph breaks: TopK with a non-constant K or K > limit, ScatterND or
    ScatterElements with a reduction (TensorRT: none only), a non-static input/output shape."""
    problems = []
    for node, k in zip((n for n in model_proto.graph.node if n.op_type == "TopK"), topk_ks(model_proto),
                       strict=True):
        if k is None:
            problems.append(f"TopK {node.name!r}: K is not a constant")
        elif k > topk_limit:
            problems.append(f"TopK {node.name!r}: K={k} > {topk_limit}")
    for node in model_proto.graph.node:
        if node.op_type in ("ScatterND", "ScatterElements"):
            red = [a.s.decode() for a in node.attribute if a.name == "reduction"]
            if red and red[0] != "none":
                problems.append(f"{node.op_type} {node.name!r}: reduction={red[0]}")
    for vi in list(model_proto.graph.input) + list(model_proto.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or any(not d.HasField("dim_value") for d in tt.shape.dim):
            problems.append(f"{vi.name}: shape is not static")
    return problems


def io_signature(model_proto: Any) -> tuple[IOList, IOList]:
    """[(name, shape, dtype)] of the graph inputs and outputs (dtype as a numpy name)."""
    inputs, outputs, _ = proto_signature(model_proto)
    return _io_list(inputs), _io_list(outputs)


def _io_list(sig: Signature) -> IOList:
    return [(name, shape, dtype) for name, (shape, dtype) in sig.items()]


# ---------------------------------------------------------------------------- export
def export_step(model: VideoSegModel, config: STTConfig, output: str | Path, opset: int = DEFAULT_OPSET,
                with_logits: bool = False, query_chunk: int = DEFAULT_QUERY_CHUNK, check: bool = True,
                weights_note: str = "", layout: str = "portable") -> ExportResult:
    """Trace ``model``'s streaming step at ``config``'s input size into ``output`` (.onnx).

    ``layout``: the attention's order of operations, a key of :data:`EXPORT_LAYOUTS` (``portable`` for
    onnxruntime and TensorRT, ``openvino`` for OpenVINO; the same values).

    ``check``: run onnx.checker and :func:`graph_problems`, raising :class:`ExportError` (and
    writing nothing) on any problem.
    """
    import onnx

    from stt_ros.weights import atomic_write

    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise ExportError(f"opset {opset} is outside {OPSET_RANGE[0]}..{OPSET_RANGE[1]} (TensorRT 10 parses up to 20, "
                          f"the exporter writes up to 20); use --opset {DEFAULT_OPSET}")
    if query_chunk < 1:
        raise ExportError(f"query_chunk={query_chunk} must be >= 1")
    if layout not in EXPORT_LAYOUTS:
        raise ExportError(f"layout={layout!r}: choose one of {', '.join(EXPORT_LAYOUTS)}")
    output = Path(output)
    if output.suffix != ".onnx":
        raise ExportError(f"output {output} must end in .onnx")
    t0 = time.perf_counter()
    graph = StreamingStepGraph(model, config.mean, config.std, with_logits, query_chunk, layout).eval()
    args = graph.example_inputs(config.input_height, config.input_width)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(graph, args, buf, dynamo=False, opset_version=opset, input_names=graph.input_names(),
                          output_names=graph.output_names(), do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    meta = {META_FORMAT: GRAPH_FORMAT,
            META_CONFIG: json.dumps({k: v for k, v in config.to_dict().items() if k in GRAPH_FIELDS},
                                         sort_keys=True),
            META_QUERY_CHUNK: str(query_chunk), META_LAYOUT: layout, META_WITH_LOGITS: str(int(with_logits)),
            META_WEIGHTS: weights_note or "random initialisation",
            META_TORCH: torch.__version__}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "stt_ros stt-export"
    problems = graph_problems(proto)
    if check:
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"the exported graph fails onnx.checker (nothing written): {exc}") from exc
        if problems:
            raise ExportError("the exported graph breaks TensorRT's rules (nothing written):\n  "
                              + "\n  ".join(problems))
    data = proto.SerializeToString()
    atomic_write(output, lambda tmp: Path(tmp).write_bytes(data))
    inputs, outputs = io_signature(proto)
    return ExportResult(output, opset, inputs, outputs, [k for k in topk_ks(proto) if k is not None], len(data),
                        time.perf_counter() - t0, problems)


# ---------------------------------------------------------------------------- CLI
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    examples = __doc__.split("Examples::\n\n")[1].rstrip().splitlines()  # the module docstring's, 2-space indent
    p = argparse.ArgumentParser(prog="stt-export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Graph inputs/outputs, opset and shapes: see docs/DEPLOY.md.\n\nexamples:\n"
                                + "\n".join(line[2:] for line in examples))
    p.add_argument("--config", metavar="YAML", help="STTConfig YAML (flat mapping, or a ROS params file); "
                   "flags below override its values")
    p.add_argument("--weights", metavar="PATH", default=None,
                   help="checkpoint (.safetensors or .pth); default: the config's weights, else random weights")
    p.add_argument("--output", "-o", required=True, metavar="ONNX", help="output .onnx file (written atomically)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: %(default)s)")
    p.add_argument("--logits", action="store_true", help="also output the logits (1, classes, H, W)")
    p.add_argument("--layout", choices=tuple(EXPORT_LAYOUTS), default="portable",
                   help="the attention's order of operations, for the engine that will run the graph: portable "
                   "(onnxruntime, TensorRT) or openvino (its bf16 runs it ~15 %% faster; onnxruntime slower); "
                   "the same values (default: %(default)s)")
    p.add_argument("--query-chunk", type=int, default=DEFAULT_QUERY_CHUNK,
                   help="queries per attention chunk in the graph (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights (default: %(default)s)")
    p.add_argument("--no-check", action="store_true", help="skip onnx.checker and the TensorRT rule checks")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="graph precision: fp16 (float16 inside) or int8 (Q/DQ, needs --calib-dir) "
                   "(default: %(default)s)")
    p.add_argument("--calib-dir", metavar="PATH", help="int8: directory of images (consecutive frames) or a rosbag2")
    p.add_argument("--calib-topic", help="int8 from a bag with several image topics: the topic to use")
    p.add_argument("--calib-frames", type=int, default=100, help="int8: calibration frames (default: %(default)s)")
    group = p.add_argument_group("config fields (override the YAML; defaults: STTConfig's)")
    for f in fields(STTConfig):
        if f.name in _NOT_FLAGS:
            continue
        kw: dict[str, Any] = {"default": None, "help": f.metadata["help"], "dest": f.name}
        if f.name in ("mean", "std"):
            kw.update(nargs=3, type=float, metavar=("R", "G", "B"))
        elif f.type in ("int", int):
            kw["type"] = int
        elif f.type in ("float", float):
            kw["type"] = float
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        group.add_argument(_flag(f.name), **kw)
    return p


def write_precision(fp32_graph: str | Path, output: str | Path, precision: str, config: STTConfig,
                    calib_dir: str | Path | None = None, calib_frames: int = 100, calib_topic: str | None = None
                    ) -> Path:
    """Write the ``precision`` (fp16 or int8 Q/DQ) graph of ``fp32_graph`` to ``output`` (atomically)."""
    import onnx

    from stt_ros.runtime.tensorrt_precision import to_fp16, to_qdq
    from stt_ros.weights import atomic_write

    output = Path(output)
    if precision == "fp16":
        data = to_fp16(onnx.load(str(fp32_graph))).SerializeToString()
        atomic_write(output, lambda tmp: Path(tmp).write_bytes(data))
    elif precision == "int8":
        if calib_dir is None:
            raise ExportError("--precision int8 needs --calib-dir (a directory of images or a rosbag2)")
        to_qdq(Path(fp32_graph), output, config, calib_dir, calib_frames, calib_topic)
    else:
        raise ExportError(f"precision {precision!r}: use fp32, fp16 or int8")
    return output


def config_from_args(args: argparse.Namespace) -> STTConfig:
    cfg = read_config_file(args.config) if args.config else STTConfig()
    changes = {f.name: getattr(args, f.name) for f in fields(STTConfig)
               if f.name not in _NOT_FLAGS and getattr(args, f.name, None) is not None}
    for name in ("mean", "std"):
        if name in changes:
            changes[name] = tuple(changes[name])
    if args.weights is not None:
        changes["weights"] = args.weights
    # exporting never runs a backend: runtime choices go back to defaults so validation passes
    return dataclasses.replace(cfg, **changes, backend="torch", precision="fp32", device="cpu")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    torch.manual_seed(args.seed)
    model = build_model(cfg).eval()
    note = "random initialisation"
    if cfg.weights:
        from stt_ros.weights import WeightsError, load_weights

        try:
            load_weights(model, cfg.weights, config=cfg.to_dict())
        except WeightsError as exc:
            print(f"stt-export: error: {exc}", file=sys.stderr)
            return 2
        note = str(cfg.weights)
    else:
        print("stt-export: no --weights given: exporting RANDOM weights (for tests and benchmarks only)",
              file=sys.stderr)
    print(f"stt-export: {cfg.model} at {cfg.input_height}x{cfg.input_width}, T={cfg.key_frames}, "
          f"classes={cfg.num_classes}, opset {args.opset}, weights: {note}")
    if args.precision == "int8" and not args.calib_dir:
        parser.error("--precision int8 needs --calib-dir (a directory of images or a rosbag2)")
    output = Path(args.output)
    fp32_out = output if args.precision == "fp32" else output.with_name(output.stem + ".fp32-tmp.onnx")
    try:
        result = export_step(model, cfg, fp32_out, opset=args.opset, with_logits=args.logits,
                             query_chunk=args.query_chunk, check=not args.no_check, weights_note=note,
                             layout=args.layout)
        if args.precision != "fp32":
            write_precision(fp32_out, output, args.precision, cfg, args.calib_dir, args.calib_frames,
                            args.calib_topic)
    except (ExportError, ConfigError) as exc:
        print(f"stt-export: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if fp32_out != output:
            fp32_out.unlink(missing_ok=True)
    if args.precision != "fp32":
        result = dataclasses.replace(result, path=output, size_bytes=output.stat().st_size)
    print(result.describe() + ("" if args.precision == "fp32" else f" ({args.precision} graph)"))
    for problem in result.problems:
        print(f"stt-export: warning: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
