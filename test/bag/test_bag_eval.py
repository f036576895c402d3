"""stt-bag-eval offline: metrics agree with stt-eval, the output bag reads with an independent MCAP
reader, the report is complete, and bad or damaged bags give one clear error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stt_testing.bagtools import (
    ROOT,
    bag_frames,
    compressed_msg,
    image_msg,
    masks_by_stamp,
    run_cli,
    tc_by_stamp,
    typestore,
    write_bag,
)

WEIGHTS = ROOT / "models" / "stt_bise18_synthdrive.safetensors"
EXPECTED_TOPICS = {"/camera/image_raw", "/camera/labels", "/camera/mask", "/camera/color_mask", "/camera/overlay",
                   "/camera/temporal_consistency"}


@pytest.fixture(scope="module")
def offline(synth_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bag_eval") / "out"
    res = run_cli(synth_bag, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert f"report     {out / 'report.md'}" in res.stdout
    return out


def test_metrics_agree_with_stt_eval(offline: Path, synthdrive: Path, tmp_path: Path) -> None:
    """The same frames, model and flow through stt-eval (Cityscapes layout) give the same numbers."""
    res = subprocess.run([sys.executable, "-m", "stt_train.evaluate", "--weights", str(WEIGHTS), "--dataset",
                          "synthdrive", "--root", str(synthdrive), "--split", "val", "--flow", "dis", "--json",
                          str(tmp_path / "e.json"), "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    ref = json.loads((tmp_path / "e.json").read_text())
    cam = json.loads((offline / "metrics.json").read_text())["cameras"][0]
    assert cam["frames"] == cam["processed"] == ref["frames"] == 12
    assert cam["labelled_frames"] == ref["labelled_frames"] == 12
    assert cam["tc_pairs"] == ref["tc_pairs"] == 11
    assert cam["miou"] == pytest.approx(ref["miou"], abs=1e-9)
    assert cam["tc"] == pytest.approx(ref["tc"], abs=1e-9)
    assert cam["per_class_iou"] == pytest.approx(ref["per_class_iou"], abs=1e-9)
    assert cam["per_class_tc"] == pytest.approx(ref["per_class_tc"], abs=1e-9)
    present = [v for v in ref["per_class_tc"].values() if v is not None]  # TC: the mean over predicted classes
    assert 0 < len(present) < 19 and sum(present) / len(present) == pytest.approx(ref["tc"], abs=1e-9)
    assert 20 < cam["miou"] < 100 and 20 < cam["tc"] < 100  # a trained model, not noise


def test_output_bag_opens_with_the_mcap_library(offline: Path, synth_bag: Path) -> None:
    """A second, independent reader (mcap + mcap-ros2-support) decodes every message."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    files = list((offline / "bag").glob("*.mcap"))
    assert len(files) == 1
    inputs = {t: rgb for t, rgb in bag_frames(synth_bag)}
    by_topic: dict[str, list] = {}
    with open(files[0], "rb") as fh:
        for _schema, channel, message, decoded in make_reader(fh, decoder_factories=[DecoderFactory()]) \
                .iter_decoded_messages():
            by_topic.setdefault(channel.topic, []).append((message.log_time, decoded))
    assert set(by_topic) == EXPECTED_TOPICS
    assert all(len(v) == 12 for v in by_topic.values())
    for (t_in, img), (t_mask, mask), (_, tc) in zip(by_topic["/camera/image_raw"], by_topic["/camera/mask"],
                                                    by_topic["/camera/temporal_consistency"], strict=True):
        assert t_in == t_mask  # the original log time
        assert mask.header.stamp.sec == img.header.stamp.sec and mask.header.stamp.nanosec == img.header.stamp.nanosec
        assert mask.header.frame_id == img.header.frame_id == "camera"
        assert (mask.encoding, mask.height, mask.width) == ("mono8", 128, 256)
        assert max(mask.data) < 19
        assert bytes(img.data) == inputs[t_in].tobytes()  # input copied untouched
        assert tc.camera_name == "camera" and tc.ring_buffer_capacity == 2
    tcs = [tc for _, tc in by_topic["/camera/temporal_consistency"]]
    assert not tcs[0].tc_valid and all(m.tc_valid for m in tcs[1:])
    assert [m.frames_processed for m in tcs] == list(range(1, 13))
    assert [m.ring_buffer_fill for m in tcs] == [0, 1] + [2] * 10
    overlay = by_topic["/camera/overlay"][5][1]
    assert overlay.encoding == "rgb8" and len(overlay.data) == 128 * 256 * 3


def test_report_has_plots_overlays_and_metrics(offline: Path) -> None:
    report = (offline / "report.md").read_text()
    metrics = json.loads((offline / "metrics.json").read_text())
    cam = metrics["cameras"][0]
    assert metrics["mode"] == "offline" and metrics["error"] == ""
    assert f"| {cam['miou']:.1f} | {cam['tc']:.1f} |" in report
    for rel in ("plots/tc_camera.png", "plots/latency_camera.png", "plots/samples_camera.png"):
        assert f"]({rel})" in report
        img = cv2.imread(str(offline / rel))
        assert img is not None and img.shape[0] > 100
    overlays = sorted((offline / "overlays").glob("camera_*.png"))
    assert len(overlays) == 6
    assert cv2.imread(str(overlays[0])).shape == (128, 256, 3)
    assert cam["inference_ms"]["n"] == 12 and cam["inference_ms"]["p50"] > 0
    road = f"| road | {cam['per_class_iou']['road']:.1f} | {cam['per_class_tc']['road']:.1f} |"
    assert road in report  # the per-class table has IoU and TC


def test_compressed_images_unknown_topics_and_bad_frames(synth_bag: Path, tmp_path: Path, offline: Path) -> None:
    """PNG CompressedImage frames give the same masks as the raw bag; an undecodable frame is
    rejected and counted (the ring buffer carries on); unrelated topics are listed and skipped."""
    ts = typestore()
    frames = bag_frames(synth_bag)
    msgs = []
    topic, msgtype = "/front/image_raw/compressed", "sensor_msgs/msg/CompressedImage"
    for i, (t, rgb) in enumerate(frames):
        frame = compressed_msg(ts, None, t, data=b"\x89PNG garbage") if i == 6 else compressed_msg(ts, rgb, t)
        msgs.append((topic, msgtype, t, frame))
        msgs.append(("/chatter", "std_msgs/msg/String", t, ts.types["std_msgs/msg/String"](data=f"hello {i}")))
    bag = write_bag(tmp_path / "compressed_bag", msgs)
    res = run_cli(bag, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "skipping topic /chatter (std_msgs/msg/String, 12 messages)" in res.stdout
    cam = json.loads((tmp_path / "out" / "metrics.json").read_text())["cameras"][0]
    assert (cam["camera"], cam["frames"], cam["processed"], cam["rejected"]) == ("front", 12, 11, 1)
    assert "cannot decode compressed image" in cam["rejections"][0]
    got = masks_by_stamp(tmp_path / "out" / "bag", "/front/mask")
    ref = masks_by_stamp(offline / "bag")
    stamps = sorted(ref)
    assert sorted(got) == stamps[:6] + stamps[7:]
    for s in stamps[:6]:  # before the bad frame the streams are identical
        np.testing.assert_array_equal(got[s], ref[s])


def test_sqlite3_bag(synth_bag: Path, tmp_path: Path) -> None:
    ts = typestore()
    frames = bag_frames(synth_bag)[:4]
    bag = write_bag(tmp_path / "sqlite_bag", [("/cam/image_raw", "sensor_msgs/msg/Image", t, image_msg(ts, rgb, t))
                                              for t, rgb in frames], storage="sqlite3")
    assert list(bag.glob("*.db3"))
    res = run_cli(bag, "--out", tmp_path / "out", "--flow", "none")
    assert res.returncode == 0, res.stderr
    cam = json.loads((tmp_path / "out" / "metrics.json").read_text())["cameras"][0]
    assert (cam["topic"], cam["processed"], cam["miou"], cam["tc"]) == ("/cam/image_raw", 4, None, None)


def test_truncated_bag_keeps_frames_before_the_damage(synth_bag: Path, tmp_path: Path) -> None:
    bag = tmp_path / "truncated"
    shutil.copytree(synth_bag, bag)
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(len(data) * 0.7)])
    res = run_cli(bag, "--out", tmp_path / "out")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("stt-bag-eval: error:")]
    assert len(errors) == 1 and "truncated or corrupt" in errors[0] and "before the damage were used" in errors[0]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    cam = metrics["cameras"][0]
    assert 0 < cam["processed"] < 12 and cam["processed"] == cam["frames"]
    assert "damaged" in metrics["error"] and "damaged" in (tmp_path / "out" / "report.md").read_text()
    assert len(masks_by_stamp(tmp_path / "out" / "bag")) == cam["processed"]


def test_bag_without_image_topic(tmp_path: Path) -> None:
    ts = typestore()
    bag = write_bag(tmp_path / "chatter", [("/chatter", "std_msgs/msg/String", i, ts.types["std_msgs/msg/String"](
        data="x")) for i in range(3)])
    res = run_cli(bag, "--out", tmp_path / "out")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"stt-bag-eval: error: {bag} has no image topic (sensor_msgs/msg/Image or CompressedImage); it has: "
        f"/chatter (std_msgs/msg/String)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--topics", "/nope"], "/nope not an image topic of"),
    (["--set", "key_frames=0"], "key_frames"),
    (["--weights", "/does/not/exist.safetensors"], "does not exist"),
    (["--flow", "raft"], "flow 'raft'"),
])
def test_clear_errors_for_bad_arguments(synth_bag: Path, tmp_path: Path, args: list[str], message: str) -> None:
    res = run_cli(synth_bag, "--out", tmp_path / "out", *args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and message in res.stderr
    assert not (tmp_path / "out").exists()


def test_missing_bag_and_existing_output(tmp_path: Path, synth_bag: Path) -> None:
    res = run_cli(tmp_path / "missing", "--out", tmp_path / "out")
    assert res.returncode == 2 and "no such bag" in res.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    res = run_cli(synth_bag, "--out", tmp_path / "full")
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_bare_mcap_file(synth_bag: Path, tmp_path: Path, offline: Path) -> None:
    """A .mcap file without its metadata.yaml is read sequentially with the mcap library."""
    res = run_cli(next(synth_bag.glob("*.mcap")), "--out", tmp_path / "out", "--flow", "none")
    assert res.returncode == 0, res.stderr
    assert "no metadata.yaml" not in res.stderr
    got, ref = masks_by_stamp(tmp_path / "out" / "bag"), masks_by_stamp(offline / "bag")
    assert sorted(got) == sorted(ref) and len(got) == 12
    for stamp, mask in got.items():
        np.testing.assert_array_equal(mask, ref[stamp])


def stereo_bag(synth_bag: Path, path: Path, right_back_at: int | None = None) -> Path:
    """The synth bag's frames as a left camera, interleaved with a right camera showing them mirrored
    in reverse order; from frame ``right_back_at`` on, the right camera's stamps are 1 s earlier."""
    ts = typestore()
    frames = bag_frames(synth_bag)
    msgs = []
    for i, (t, rgb) in enumerate(frames):
        msgs.append(("/left/image_raw", "sensor_msgs/msg/Image", t, image_msg(ts, rgb, t)))
        flipped = np.ascontiguousarray(frames[len(frames) - 1 - i][1][:, ::-1])
        stamp = t - 10**9 if right_back_at is not None and i >= right_back_at else t
        msgs.append(("/right/image_raw", "sensor_msgs/msg/Image", t + 1, image_msg(ts, flipped, stamp)))
    return write_bag(path, msgs)


def test_two_cameras_keep_their_own_ring_buffers(synth_bag: Path, tmp_path: Path, offline: Path) -> None:
    """Frames of two cameras interleaved in one bag: each camera's masks are those of a bag with
    that camera alone (its ring buffer never sees the other camera's frames)."""
    bag = stereo_bag(synth_bag, tmp_path / "stereo")
    res = run_cli(bag, "--out", tmp_path / "out", "--flow", "none")
    assert res.returncode == 0, res.stderr
    cams = json.loads((tmp_path / "out" / "metrics.json").read_text())["cameras"]
    assert [(c["camera"], c["processed"]) for c in cams] == [("left", 12), ("right", 12)]
    left = masks_by_stamp(tmp_path / "out" / "bag", "/left/mask")
    ref = masks_by_stamp(offline / "bag")
    assert sorted(left) == sorted(ref)
    for stamp in ref:
        np.testing.assert_array_equal(left[stamp], ref[stamp])
    right = masks_by_stamp(tmp_path / "out" / "bag", "/right/mask")
    assert len(right) == 12 and any(not np.array_equal(right[s], left[s]) for s in ref)


def test_batch_cameras_gives_each_camera_its_own_stream(synth_bag: Path, tmp_path: Path) -> None:
    """--batch-cameras: the two cameras' frames stepped together give the masks, TC and counts of the
    same bag evaluated one frame at a time (torch batches the per-frame network: masks to 99.9 %)."""
    frames = bag_frames(synth_bag)
    # the right camera's stamps jump back half way: its ring buffer resets there, the left one's not
    bag = stereo_bag(synth_bag, tmp_path / "stereo", right_back_at=len(frames) // 2)
    outs = {}
    for mode, extra in (("alone", ()), ("batched", ("--batch-cameras",))):
        res = run_cli(bag, "--out", tmp_path / mode, *extra)
        assert res.returncode == 0, res.stderr
        outs[mode] = tmp_path / mode
    for cam in ("left", "right"):
        alone = masks_by_stamp(outs["alone"] / "bag", f"/{cam}/mask")
        batched = masks_by_stamp(outs["batched"] / "bag", f"/{cam}/mask")
        assert sorted(alone) == sorted(batched) and len(alone) == len(frames)
        for stamp in alone:
            assert (alone[stamp] == batched[stamp]).mean() >= 0.999, (cam, stamp)
        tc_a = tc_by_stamp(outs["alone"] / "bag", f"/{cam}/temporal_consistency")
        tc_b = tc_by_stamp(outs["batched"] / "bag", f"/{cam}/temporal_consistency")
        assert sorted(tc_a) == sorted(tc_b)
        assert [tc_a[s][0] for s in sorted(tc_a)] == [tc_b[s][0] for s in sorted(tc_a)], cam  # TC valid: same frames
        assert all(abs(tc_a[s][1] - tc_b[s][1]) < 0.01 for s in tc_a if tc_a[s][0]), cam
    cams = {c["camera"]: c for c in json.loads((outs["batched"] / "metrics.json").read_text())["cameras"]}
    assert cams["left"]["resets"] == 0 and cams["right"]["resets"] == 1, cams


def test_etc_protocol_on_the_camera_size_masks(synth_bag: Path, tmp_path: Path, offline: Path) -> None:
    """--tc-protocol etc: the sequence TC is ETC's eval_tc.py over consecutive output masks (forward
    DIS flow between the camera images), the per-frame TC messages stay the node's definition."""
    from stt_ros.metrics import ETCAccumulator, make_flow

    res = run_cli(synth_bag, "--out", tmp_path / "etc", "--tc-protocol", "etc", "--samples", "0")
    assert res.returncode == 0, res.stderr
    cam = json.loads((tmp_path / "etc" / "metrics.json").read_text())["cameras"][0]
    base = json.loads((offline / "metrics.json").read_text())["cameras"][0]
    assert cam["tc_protocol"] == "etc" and base["tc_protocol"] == "stt_ros"
    masks = masks_by_stamp(tmp_path / "etc" / "bag")
    images = [rgb for _, rgb in bag_frames(synth_bag)]
    stamps = sorted(masks)
    acc, flow = ETCAccumulator(19), make_flow("dis")
    for i in range(len(stamps) - 1):
        acc.update(masks[stamps[i]], masks[stamps[i + 1]], flow.backward(images[i + 1], images[i]))
    assert cam["tc_pairs"] == acc.pairs == 11
    assert cam["tc"] == pytest.approx(100 * acc.value(), abs=1e-9)
    assert cam["per_class_tc"]["train"] == 0.0  # a class that never occurs counts 0 (stt_ros: undefined)
    assert base["per_class_tc"]["train"] is None and cam["tc"] < base["tc"]
    assert cam["tc_frame_mean"] == pytest.approx(base["tc_frame_mean"], abs=1e-9)  # per frame: unchanged
    assert "ETC's protocol" in (tmp_path / "etc" / "report.md").read_text()


def test_compressed_transport_of_a_camera_is_not_a_second_camera(synth_bag: Path, tmp_path: Path) -> None:
    """image_transport: /front/image_raw and /front/image_raw/compressed are one camera, evaluated once."""
    ts = typestore()
    frames = bag_frames(synth_bag)[:3]
    kinds = (("/front/image_raw", "sensor_msgs/msg/Image", image_msg),
             ("/front/image_raw/compressed", "sensor_msgs/msg/CompressedImage", compressed_msg))
    msgs = [(topic, kind, t, make(ts, rgb, t)) for t, rgb in frames for topic, kind, make in kinds]
    res = run_cli(write_bag(tmp_path / "both", msgs), "--out", tmp_path / "out", "--flow", "none")
    assert res.returncode == 0, res.stderr
    cams = json.loads((tmp_path / "out" / "metrics.json").read_text())["cameras"]
    assert [(c["camera"], c["topic"], c["processed"]) for c in cams] == [("front", "/front/image_raw", 3)]
    assert "skipping topic /front/image_raw/compressed" in res.stdout and "compressed transport" in res.stdout


def test_set_repeats_and_takes_several_values() -> None:
    """`--set a=1 --set b=2` keeps both (a repeated option must not replace the first), as `--set a=1 b=2`."""
    from stt_ros.bag.cli import build_parser, model_config

    for argv in (["bag", "--out", "o", "--set", "key_frames=3", "--set", "query_ratio=0.25"],
                 ["bag", "--out", "o", "--set", "key_frames=3", "query_ratio=0.25"]):
        cfg = model_config(build_parser().parse_args(argv))
        assert (cfg.key_frames, cfg.query_ratio) == (3, 0.25), argv
