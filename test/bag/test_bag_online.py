"""stt-bag-eval --through-node: the bag played to stt_node over real DDS (loopback, the test's own
domain) gives the same masks as the offline mode for every frame the node did not drop."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from stt_testing.bagtools import bag_frames, compressed_msg, masks_by_stamp, run_cli, tc_by_stamp, typestore, write_bag

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def offline_run(bag: Path, skip: set[int], topic: str = "/camera/image_raw") -> Path:
    """Offline evaluation through the API, leaving out the frames the node dropped; its output bag."""
    from stt_ros.bag.cameras import select_cameras
    from stt_ros.bag.cli import DEFAULT_CONFIG
    from stt_ros.bag.evaluate import EvalSettings, Run, run_offline
    from stt_ros.bag.output import OutputBag
    from stt_ros.bag.source import BagSource, typestore
    from stt_ros.config import load_config, resolve_weights

    cfg = resolve_weights(load_config(str(DEFAULT_CONFIG)), DEFAULT_CONFIG)
    out = Path(tempfile.mkdtemp(prefix="offline_", dir=bag.parent)) / "bag"
    with BagSource(bag) as src:
        cams, _ = select_cameras(src)
        out_bag = OutputBag(out, typestore())
        run = Run(src, cams, cfg, EvalSettings(progress=False, samples=0), out_bag)
        run_offline(run, skip={topic: skip})
        out_bag.close()
    return out


@pytest.mark.parametrize("rate", [0.5, 10.0])
def test_online_masks_equal_offline(synth_bag: Path, tmp_path: Path, rate: float) -> None:
    """At half speed the node keeps up; at 10x (150 fps) it drops frames, and the frames it
    processed still get exactly the masks offline evaluation gives the same frame sequence."""
    out = tmp_path / "online"
    res = run_cli(synth_bag, "--out", out, "--through-node", "--rate", str(rate))
    assert res.returncode == 0, res.stderr + res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    cam = metrics["cameras"][0]
    assert metrics["mode"] == "through-node" and metrics["node"]["returncode"] == 0
    assert cam["frames"] == 12 and cam["processed"] + cam["dropped"] == 12 and cam["processed"] >= 2
    if rate > 1:
        assert cam["dropped"] > 0
    assert cam["rejected"] == 0 and cam["resets"] == 0
    assert cam["end_to_end_ms"]["n"] == cam["processed"]
    assert cam["end_to_end_ms"]["p50"] >= cam["inference_ms"]["p50"] > 0

    online = masks_by_stamp(out / "bag")
    assert len(online) == cam["processed"]
    all_stamps = set(masks_by_stamp(out / "bag", "/camera/labels"))
    assert len(all_stamps) == 12
    dropped = all_stamps - set(online)
    offline_bag = offline_run(synth_bag, dropped)
    offline = masks_by_stamp(offline_bag)
    assert sorted(offline) == sorted(online)
    for stamp, mask in online.items():
        np.testing.assert_array_equal(mask, offline[stamp], err_msg=f"frame {stamp}")
    assert len({m.tobytes() for m in online.values()}) > 1  # the masks follow the drive

    # the TC the node published for each frame is the one the offline evaluation computes
    online_tc, offline_tc = tc_by_stamp(out / "bag"), tc_by_stamp(offline_bag)
    assert sorted(online_tc) == sorted(offline_tc) == sorted(online)
    valid = [s for s, (ok, *_) in online_tc.items() if ok]
    assert len(valid) == cam["processed"] - 1  # every frame but the first has a previous one
    for stamp, (ok, miou, inter, union) in online_tc.items():
        o_ok, o_miou, o_inter, o_union = offline_tc[stamp]
        assert ok == o_ok and (inter, union) == (o_inter, o_union), f"frame {stamp}"
        if ok:
            assert abs(miou - o_miou) <= 1e-6 and 0 < miou <= 1, f"frame {stamp}"
    assert len(valid) < 2 or len({round(online_tc[s][1], 6) for s in valid}) > 1  # values, not a constant
    summary = json.loads((out / "metrics.json").read_text())["cameras"][0]
    assert summary["tc_pairs"] == len(valid) and summary["tc_protocol"] == "stt_ros"

    report = (out / "report.md").read_text()
    assert "Mode: **through-node**" in report and "node/node.log" in report
    assert "stt_node" in (out / "node" / "node.log").read_text()


def test_node_that_cannot_start_is_one_clear_error(synth_bag: Path, tmp_path: Path) -> None:
    """Weights of another architecture: stt_node refuses them and stt-bag-eval says so."""
    res = run_cli(synth_bag, "--out", tmp_path / "out", "--through-node", "--set", "model=stt_psp18")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert "stt_node exited with code 1" in errors[0] and "cannot start" in errors[0] and "stt_psp18" in errors[0]
    assert not (tmp_path / "out").exists()


def test_compressed_topic_through_the_node(synth_bag: Path, tmp_path: Path) -> None:
    """A CompressedImage topic is played on <camera topic>/compressed, which the node decodes."""
    ts = typestore()
    frames = bag_frames(synth_bag)[:6]
    bag = write_bag(tmp_path / "jpeg_bag", [("/front/image_raw/compressed", "sensor_msgs/msg/CompressedImage", t,
                                             compressed_msg(ts, rgb, t, "jpg")) for t, rgb in frames])
    res = run_cli(bag, "--out", tmp_path / "online", "--through-node", "--rate", "0.5", "--flow", "none")
    assert res.returncode == 0, res.stderr + res.stdout
    params = (tmp_path / "online" / "node" / "node_params.yaml").read_text()
    assert "/front/image_raw" in params and "compressed" in params
    online = masks_by_stamp(tmp_path / "online" / "bag", "/front/mask")
    assert 2 <= len(online) <= 6
    offline = masks_by_stamp(offline_run(bag, {t for t, _ in frames} - set(online), "/front/image_raw/compressed"),
                             "/front/mask")
    assert sorted(offline) == sorted(online)
    for stamp, mask in online.items():
        np.testing.assert_array_equal(mask, offline[stamp])


def test_truncated_bag_through_the_node(synth_bag: Path, tmp_path: Path) -> None:
    """The replay plays the frames before the damage, the report covers them, one error line."""
    import shutil

    bag = tmp_path / "truncated"
    shutil.copytree(synth_bag, bag)
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.7)])
    res = run_cli(bag, "--out", tmp_path / "out", "--through-node", "--rate", "0.5", "--flow", "none")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("stt-bag-eval: error:")]
    assert len(errors) == 1 and "truncated or corrupt" in errors[0]
    cam = json.loads((tmp_path / "out" / "metrics.json").read_text())["cameras"][0]
    assert 0 < cam["frames"] < 12 and cam["processed"] + cam["dropped"] == cam["frames"] and cam["processed"] > 0
