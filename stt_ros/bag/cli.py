"""stt-bag-eval: run a recorded drive through the STT pipeline and report TC, latency and mIoU.

Reads a rosbag2 bag (MCAP or sqlite3; a bare .mcap file too) with rosbags, no ROS needed, and
writes to --out: ``bag/`` (rosbag2 MCAP: input images, masks, colour masks, overlays and
TemporalConsistency messages on the node's topics, original stamps), ``metrics.json``,
``report.md`` with plots/ (TC over time, latency histogram, sample-overlay strip) and overlays/.
With --through-node the bag is played to stt_node over DDS (loopback) and the node's outputs are
evaluated, frame drops included.

Exit status: 0 done; 1 the bag is damaged (everything before the damage is evaluated and
written) or the node failed; 2 bad arguments, a bag that cannot be opened or has no image topic.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from stt_ros.bag.source import BagError, BagSource, typestore
from stt_ros.config import ConfigError, STTConfig, load_config, resolve_weights
from stt_ros.metrics import TC_PROTOCOLS
from stt_ros.runtime.stream_policy import DEFAULT_MAX_GAP_S
from stt_ros.viz import class_names

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "models" / "stt_bise18_synthdrive.yaml"

EXAMPLES = """examples:
  stt-bag-eval data/demo/bag --out runs/bag_eval                       # offline, shipped demo model
  stt-bag-eval drive.mcap --topics /front/image_raw/compressed --out out --config my_model.yaml
  stt-bag-eval drive_bag --labels /cam/image_raw=/cam/labels --out out --weights w.safetensors
  ROS_DOMAIN_ID=42 stt-bag-eval drive_bag --through-node --rate 0.5 --out out_online
"""


def model_config(args: argparse.Namespace) -> STTConfig:
    import yaml

    path = Path(args.config) if args.config else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    cfg = load_config(str(path)) if path is not None else STTConfig()
    cfg = resolve_weights(cfg, path)
    over = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE")
        over[key] = yaml.safe_load(value)
    if args.weights is not None:
        over["weights"] = args.weights
    if over:
        data = cfg.to_dict()
        unknown = sorted(set(over) - set(data))
        if unknown:
            raise ConfigError(f"--set: unknown model setting(s) {', '.join(unknown)}; known: {', '.join(sorted(data))}")
        data.update(over)
        cfg = STTConfig.from_dict(data)
    cfg.validate()
    if cfg.weights and not Path(cfg.weights).exists():
        raise ConfigError(f"weights file {cfg.weights} does not exist")
    return cfg


def parse_labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        cam, sep, lab = item.partition("=")
        if not sep or not cam or not lab:
            raise ConfigError(f"--labels {item!r}: write CAMERA_TOPIC=LABEL_TOPIC")
        out[cam] = lab
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stt-bag-eval", description=__doc__.split("\n\n")[0],
                                epilog=EXAMPLES + "\n" + __doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", help="rosbag2 folder (MCAP or sqlite3) or .mcap file")
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty, unless --overwrite)")
    p.add_argument("--topics", nargs="+", help="camera image topics (Image or CompressedImage); default: every image "
                                                "topic that is not a label or output topic")
    p.add_argument("--labels", nargs="*", default=[], metavar="CAMERA=LABEL",
                   help="label topic (mono8 class ids) of a camera topic; default: <camera namespace>/labels")
    p.add_argument("--camera-names", nargs="+", help="output namespace per camera topic (default: from the topic)")
    p.add_argument("--config", help=f"model YAML (STTConfig); default: {DEFAULT_CONFIG.relative_to(ROOT)}")
    p.add_argument("--weights", help="override the config's weights (.safetensors, or .onnx for onnxruntime)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override model settings (repeatable)")
    p.add_argument("--through-node", action="store_true", help="play the bag to stt_node over DDS and evaluate its "
                                                               "outputs (drops included)")
    p.add_argument("--rate", type=float, default=1.0, help="--through-node playback speed factor (default 1.0)")
    p.add_argument("--domain-id", type=int, help="--through-node ROS_DOMAIN_ID (default: the environment's)")
    p.add_argument("--flow", default="dis", help="optical flow for TC: dis (as the node: DIS fast at half the network "
                   "size), dis:<preset> (ultrafast, fast, medium at full size), none (no TC)")
    p.add_argument("--tc-protocol", choices=TC_PROTOCOLS, default="stt_ros",
                   help="the sequence TC reported: stt_ros (the node's per-frame TC at the network size, summed over "
                   "pairs) or etc (ETC's eval_tc.py on the camera-size masks, for published tables: forward flow, "
                   "bilinear class ids, clamped borders, mean over all classes); per-frame TC stays the node's")
    p.add_argument("--max-frame-gap", type=float, default=DEFAULT_MAX_GAP_S,
                   help="reset a camera's ring buffer when stamps jump forward by more than this (s), as the node")
    p.add_argument("--palette", default=None, help="cityscapes or camvid (default: from the number of classes)")
    p.add_argument("--overlay-alpha", type=float, default=0.5)
    p.add_argument("--samples", type=int, default=6, help="sample overlays per camera in the report")
    p.add_argument("--batch-cameras", action="store_true",
                   help="step the cameras together (as stt_node's batch_cameras): offline, one frame of each camera "
                        "in bag order forms a batch; --through-node sets the node's parameter")
    p.add_argument("--overwrite", action="store_true", help="replace --out")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from stt_ros.bag.cameras import select_cameras
    from stt_ros.bag.evaluate import EvalSettings, Run, run_offline
    from stt_ros.bag.online import run_online
    from stt_ros.bag.output import OutputBag
    from stt_ros.bag.report import write_report

    args = build_parser().parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    try:
        if out.exists() and any(out.iterdir()) and not args.overwrite:
            raise ConfigError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
        if args.rate <= 0:
            raise ConfigError(f"--rate {args.rate} must be positive")
        if not 0 <= args.overlay_alpha <= 1:
            raise ConfigError(f"--overlay-alpha {args.overlay_alpha} must lie in [0, 1]")
        if args.domain_id is not None and not 0 <= args.domain_id <= 232:
            raise ConfigError(f"--domain-id {args.domain_id} must lie in 0..232")
        if args.through_node:
            import importlib.util

            if importlib.util.find_spec("rclpy") is None:
                raise ConfigError("--through-node needs ROS 2 (rclpy) and the built stt_ros messages: run it from a "
                                  "sourced ROS 2 workspace or `make setup`'s .venv; without them, drop --through-node")
        cfg = model_config(args)
        pal = args.palette or ("camvid" if cfg.num_classes == 11 else "cityscapes")
        settings = EvalSettings(flow=args.flow, tc_protocol=args.tc_protocol, max_gap_s=args.max_frame_gap,
                                overlay_alpha=args.overlay_alpha, batch_cameras=args.batch_cameras,
                                palette=pal, samples=args.samples, rate=args.rate, domain_id=args.domain_id,
                                progress=not args.no_progress)
        from stt_ros.viz import palette

        if len(palette(pal)) < cfg.num_classes:
            raise ConfigError(f"palette {pal} has {len(palette(pal))} colours for {cfg.num_classes} classes")
        source = BagSource(args.bag)
        cams, skipped = select_cameras(source, args.topics, parse_labels(args.labels), args.camera_names)
    except (ConfigError, BagError, ValueError, OSError) as exc:
        print(f"stt-bag-eval: error: {exc}", file=sys.stderr)
        return 2
    if source.fallback_note:
        print(f"stt-bag-eval: {source.fallback_note}", file=sys.stderr)
    for line in skipped:
        print(f"stt-bag-eval: skipping topic {line}")
    for c in cams:
        print(f"stt-bag-eval: camera {c.name}: {c.topic} ({c.msgtype}, {source.topics[c.topic].count} frames)"
              + (f", labels {c.label_topic}" if c.label_topic else ", no labels"))

    work = out.parent / f".{out.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out_bag = OutputBag(work / "bag", typestore())
    run = Run(source, cams, cfg, settings, out_bag, class_names(cfg.num_classes, pal))
    node_info = None
    try:
        if args.through_node:
            summary = run_online(run, work / "node")
            node_info = {"returncode": summary.get("node_returncode"), "log": "node/node.log",
                         "unanswered": summary.get("unanswered", [])}
        else:
            run_offline(run)
    except (BagError, ConfigError, OSError, KeyboardInterrupt) as exc:
        out_bag.close()
        source.close()
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            print("stt-bag-eval: interrupted; nothing written to --out", file=sys.stderr)
            return 130
        print(f"stt-bag-eval: error: {exc}; nothing written to --out", file=sys.stderr)
        return 1
    out_bag.close()
    source.close()
    results = {
        "bag": str(args.bag), "mode": "through-node" if args.through_node else "offline", "rate": args.rate,
        "flow": args.flow, "tc_protocol": args.tc_protocol, "model": cfg.to_dict(), "wall_s": time.perf_counter() - t0,
        "error": run.error, "skipped_topics": skipped, "output_bag": "bag/", "node": node_info,
        "cameras": [run.metrics[c.topic].summary() for c in cams],
    }
    write_report(work, results, run)
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)

    for c in results["cameras"]:
        miou = f"mIoU {c['miou']:.1f}%, " if c["miou"] is not None else ""
        tc = f"TC {c['tc']:.1f}%" if c["tc"] is not None else "TC -"
        p50 = c["inference_ms"]["p50"]
        print(f"stt-bag-eval: {c['camera']}: {c['processed']}/{c['frames']} frames processed, {c['dropped']} dropped, "
              f"{c['rejected']} rejected, {c['resets']} resets; {miou}{tc}; model "
              f"{'-' if p50 is None else f'{p50:.1f}'} ms median")
    print(f"stt-bag-eval: report     {out / 'report.md'}")
    print(f"stt-bag-eval: output bag {out / 'bag'}")
    print(f"stt-bag-eval: overlays   {out / 'overlays'}/ (strip: {out / 'plots'}/samples_*.png)")
    if run.error:
        print(f"stt-bag-eval: error: {run.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
