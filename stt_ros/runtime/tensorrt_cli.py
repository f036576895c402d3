"""stt-tensorrt: build (or validate) the cached TensorRT engine of an exported graph; without
--build-only, also run it on synthetic frames and report fps.

Examples::

    stt-tensorrt --config models/stt_bise18_synthdrive.yaml --onnx models/stt_bise18_synthdrive.onnx \\
        --precision fp16 --build-only
    stt-tensorrt --onnx /tmp/stt_1024.onnx --input-height 1024 --input-width 2048 --precision int8 \\
        --calib-dir data/synthdrive/val/images --calib-frames 200 --build-only
    stt-tensorrt --onnx /tmp/stt_1024.onnx --input-height 1024 --input-width 2048 --cuda-graph
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from stt_ros.config import ConfigError, STTConfig, read_config_file
from stt_ros.runtime.calibration import DEFAULT_CALIB_FRAMES
from stt_ros.runtime.tensorrt_backend import TensorRTBackend
from stt_ros.runtime.tensorrt_build import DEFAULT_WORKSPACE_MIB
from stt_ros.runtime.tensorrt_cuda import EngineError

_DESCRIPTION, _EXAMPLES = __doc__.split("\n\nExamples::\n\n")


def build_parser() -> argparse.ArgumentParser:
    examples = "\n".join(line[2:] for line in _EXAMPLES.rstrip().splitlines())  # 4-space indent -> 2
    description = " ".join(_DESCRIPTION.split()[1:])  # without the leading "stt-tensorrt:"
    p = argparse.ArgumentParser(prog="stt-tensorrt", description=description[0].upper() + description[1:],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n" + examples)
    p.add_argument("--onnx", required=True, help="graph written by stt-export (the plan is cached beside it)")
    p.add_argument("--config", help="STTConfig YAML (or ROS params file) the graph was exported with "
                   "(default: STTConfig defaults)")
    p.add_argument("--model", help="zoo model, if not in --config")
    p.add_argument("--input-height", type=int, help="network input height, if not in --config")
    p.add_argument("--input-width", type=int, help="network input width, if not in --config")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16", help="(default: %(default)s)")
    p.add_argument("--device", default="cuda", help="cuda or cuda:N (default: %(default)s)")
    p.add_argument("--workspace-mib", type=int, default=DEFAULT_WORKSPACE_MIB, help="builder workspace limit "
                   "(default: %(default)s)")
    p.add_argument("--calib-dir", help="int8: directory of images (sorted, consecutive frames) or a rosbag2 to "
                   "calibrate the Q/DQ graph on (once; then the plan or <onnx stem>.int8.onnx is reused)")
    p.add_argument("--calib-topic", help="int8 from a bag with several image topics: the topic to use")
    p.add_argument("--calib-frames", type=int, default=DEFAULT_CALIB_FRAMES, help="int8: frames (default: %(default)s)")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if the cached plan is up to date")
    p.add_argument("--build-only", action="store_true", help="build (or validate) the cached plan and exit")
    p.add_argument("--cuda-graph", action="store_true", help="replay steps from CUDA graphs")
    p.add_argument("--frames", type=int, default=50, help="frames for the fps run (default: %(default)s)")
    return p


def config_from_args(args: argparse.Namespace) -> STTConfig:
    cfg = read_config_file(args.config) if args.config else STTConfig()
    changes = {k: v for k, v in (("model", args.model), ("input_height", args.input_height),
                                 ("input_width", args.input_width)) if v is not None}
    return cfg.replace(**changes, backend="tensorrt", precision=args.precision, device=args.device, weights=args.onnx)


def median_step_ms(backend: TensorRTBackend, frames: int) -> tuple[float, int]:
    """(median ms per step once the ring buffer is full, steps counted) on one random frame."""
    from stt_ros.runtime.segmenter import StreamingSegmenter

    cfg = backend.config
    seg = StreamingSegmenter(backend, output_size="network")
    frame = np.random.default_rng(0).integers(0, 256, (cfg.input_height, cfg.input_width, 3), dtype=np.uint8)
    times = [seg.process(frame).timings["network_ms"] for _ in range(frames)]
    steady = sorted(times[min(len(times) - 1, cfg.key_frames + 2):])
    return steady[len(steady) // 2], len(steady)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)
        backend = TensorRTBackend(cfg, workspace_mib=args.workspace_mib, calib_source=args.calib_dir,
                                  calib_frames=args.calib_frames, calib_topic=args.calib_topic,
                                  cuda_graph=args.cuda_graph, rebuild=args.rebuild, build_only=args.build_only)
    except (ConfigError, EngineError, OSError) as exc:  # user-caused (missing file, package, GPU): no traceback
        print(f"stt-tensorrt: error: {exc}", file=sys.stderr)
        return 2
    print(f"stt-tensorrt: plan {backend.plan_path}")
    if args.build_only:
        return 0
    try:
        median, steps = median_step_ms(backend, args.frames)
    except (ConfigError, EngineError) as exc:
        print(f"stt-tensorrt: error: {exc}", file=sys.stderr)
        return 2
    print(f"stt-tensorrt: {cfg.model} {cfg.precision} {cfg.input_height}x{cfg.input_width}: median {median:.2f} ms "
          f"per step ({1e3 / median:.1f} fps) over {steps} steps with a full buffer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
