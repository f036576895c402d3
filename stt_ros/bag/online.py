"""stt-bag-eval --through-node: the bag played to stt_node (a subprocess: ``python -m
stt_ros.ros.replay`` plays it onto ROS topics at the recorded speed times a rate factor, runs the
node over DDS on loopback and records what it published), then the recording paired with the bag's
frames by header stamp. Frames without a mask are the node's drops. Nothing here imports ROS."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

from stt_ros.bag.cameras import Camera
from stt_ros.bag.evaluate import EvalSettings, Run, agreement_from_message, decode, deserialize, header_stamp_ns
from stt_ros.bag.output import output_topics
from stt_ros.bag.source import BagError, BagSource
from stt_ros.config import STTConfig
from stt_ros.runtime.images import ImageError, image_to_rgb, mono8_to_array
from stt_ros.viz import colorize, overlay


def node_parameters(cams: list[Camera], cfg: STTConfig, settings: EvalSettings) -> dict:
    """stt_node's parameters for replaying ``cams`` with model ``cfg``."""
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.to_dict().items()}
    if params.get("weights"):
        params["weights"] = str(Path(params["weights"]).resolve())
    pipe = settings.pipeline_settings()
    params.update(camera_names=[c.name for c in cams], camera_topics=[c.node_topic for c in cams],
                  camera_transports=["compressed" if c.compressed else "raw" for c in cams],
                  mask_resolution="camera", max_frame_gap_s=float(settings.max_gap_s),
                  overlay_alpha=float(settings.overlay_alpha), palette=settings.palette,
                  tc_enabled=pipe.tc_enabled, flow_preset=pipe.flow_preset, flow_scale=float(pipe.flow_scale),
                  batch_cameras=bool(settings.batch_cameras))
    return params


def run_online(run: Run, workdir: Path) -> dict:
    """Replay through stt_node (subprocess) and merge its recorded outputs; returns the replay's
    summary (sent frames, node exit code, warm-up)."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    params_file = workdir / "node_params.yaml"
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": node_parameters(
        run.cams, run.cfg, run.settings)}}))
    spec = {"bag": str(run.source.path), "recording": str(workdir / "recording"),
            "summary": str(workdir / "replay.json"), "node_log": str(workdir / "node.log"),
            "params_file": str(params_file), "rate": run.settings.rate,
            "cameras": [{"name": c.name, "topic": c.topic, "msgtype": c.msgtype, "publish_topic": c.publish_topic}
                        for c in run.cams]}
    spec_file = workdir / "replay_spec.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    if run.settings.domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(run.settings.domain_id)
    cmd = [sys.executable, "-m", "stt_ros.ros.replay", str(spec_file)]
    if not run.settings.progress:
        cmd.append("--no-progress")
    proc = subprocess.run(cmd, env=env, cwd=Path.cwd())
    summary_path = workdir / "replay.json"
    if not summary_path.is_file():
        raise BagError(f"the replay through stt_node failed (exit {proc.returncode}) before writing its summary; "
                       f"see {workdir / 'node.log'}")
    summary = json.loads(summary_path.read_text())
    if summary.get("fatal"):
        raise BagError(f"replay through stt_node failed: {summary['fatal']}")
    merge_recording(run, workdir / "recording", summary)
    return summary


class RecordingCursor:
    """The node's recorded outputs, read lazily and matched to the bag's frames in order.

    Per topic the node publishes in the order it processed frames, a subsequence of the played
    order, so the head of a topic's queue either carries the frame's stamp (its output) or not (the
    frame was dropped). Only messages read ahead of the current frame are held in memory.
    """

    def __init__(self, recording: Path, ts) -> None:  # noqa: ANN001
        self.ts = ts
        self._source = BagSource(recording) if recording.exists() else None
        self._it = self._source.messages() if self._source is not None else iter(())
        self._queues: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    def take(self, topic: str, stamp: int) -> tuple[str, bytes, int] | None:
        """(msgtype, raw, receive ns) of ``topic``'s output for the frame ``stamp``, or None."""
        q = self._queues[topic]
        while not q:
            m = next(self._it, None)
            if m is None:
                return None
            st = header_stamp_ns(self.ts.deserialize_cdr(m.raw, m.msgtype))
            self._queues[m.topic].append((st, m.msgtype, m.raw, m.log_time))
        if q[0][0] != stamp:
            return None
        _, msgtype, raw, receive = q.popleft()
        return msgtype, raw, receive

    def close(self) -> None:
        if self._source is not None:
            self._source.close()


def merge_recording(run: Run, recording: Path, summary: dict) -> None:
    """Pair the node's recorded outputs with the bag's frames by header stamp."""
    from tqdm import tqdm

    cursor = RecordingCursor(recording, run.ts)
    sent = {t: {int(s): int(ns) for s, ns in pairs} for t, pairs in summary.get("sent", {}).items()}
    # the node's buffer_resets counter before the first played frame (the warm-up's ~/reset)
    last_resets = {c.topic: int(summary.get("resets_before_play", {}).get(c.name, 0)) for c in run.cams}
    with tqdm(total=run.total_frames(), unit="frame", desc="merging node outputs",
              disable=not run.settings.progress, dynamic_ncols=True) as bar:
        try:
            for m in run.source.messages(run.topics()):
                if m.topic in run.by_label:
                    run.on_label(m)
                    continue
                cam, met = run.by_topic[m.topic], run.metrics[m.topic]
                index = run.counts[m.topic]
                run.counts[m.topic] += 1
                bar.update(1)
                run.out.write_raw(m.topic, m.msgtype, m.log_time, m.raw)
                try:
                    msg = deserialize(run.ts, m.raw, m.msgtype)
                    stamp = header_stamp_ns(msg)
                except ImageError as exc:
                    met.add_dropped(m.log_time, str(exc))
                    continue
                run.first_stamp.setdefault(m.topic, stamp)
                topics = output_topics(cam.name)
                got = {kind: cursor.take(topic, stamp) for kind, topic in topics.items()}
                got_mask, got_tc = got["mask"], got["temporal_consistency"]
                if got_mask is None:
                    reason = "" if stamp in sent.get(cam.publish_topic, {}) else "not played (replay ended early)"
                    met.add_dropped(stamp, reason)
                    continue
                try:
                    rgb = decode(msg, m.msgtype)
                    mask = mono8_to_array(deserialize(run.ts, got_mask[1], got_mask[0]))
                except ImageError as exc:
                    met.add_dropped(stamp, str(exc))
                    continue
                inference = float("nan")
                reset = ""
                tc = None
                if got_tc is not None:
                    tc_msg = run.ts.deserialize_cdr(got_tc[1], got_tc[0])
                    inference = float(tc_msg.inference_latency_ms)
                    tc = agreement_from_message(tc_msg)
                    if int(tc_msg.buffer_resets) > last_resets[m.topic]:
                        reset = f"node reset its ring buffer (buffer_resets {last_resets[m.topic]} -> " \
                                f"{int(tc_msg.buffer_resets)})"
                        last_resets[m.topic] = int(tc_msg.buffer_resets)
                send_ns = sent.get(cam.publish_topic, {}).get(stamp)
                e2e = (got_mask[2] - send_ns) / 1e6 if send_ns is not None else float("nan")
                met.add_frame(stamp, rgb, mask, inference, e2e, reset, tc)
                for kind, item in got.items():
                    if item is not None:
                        run.out.write_raw(topics[kind], item[0], m.log_time, item[1])
                over = got["overlay"]
                if index in run.wanted[m.topic]:
                    image = image_to_rgb(run.ts.deserialize_cdr(over[1], over[0])) if over is not None else \
                        overlay(rgb, colorize(mask, run.palette), run.settings.overlay_alpha)
                    run.keep_sample(cam, index, stamp, image)
        except BagError as exc:
            run.error = str(exc)
        finally:
            cursor.close()
