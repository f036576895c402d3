"""SynthDrive: determinism, labels, exact flow, nuisances, file layout, rosbag2 MCAP output."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stt_ros.metrics import warp_nearest
from stt_train import synthdrive as sd
from stt_train.bagwriter import IMAGE_TOPIC, LABEL_TOPIC, read_bag_frames
from stt_train.synthdrive.config import ROAD, SKY

MINI = sd.SynthDriveConfig(height=64, width=128, frames=6, supersample=1)  # as conftest's mini_synthdrive

USED_TRAIN_IDS = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13}


def frames(cfg: sd.SynthDriveConfig, seed: int = 0, split: str = "train", index: int = 0, clean: bool = False):
    return list(sd.render_sequence(cfg, seed, split, index, keep_clean=clean))


def test_deterministic_from_the_seed_and_different_across_seeds_and_splits() -> None:
    cfg = sd.SynthDriveConfig(height=48, width=96, frames=3, supersample=1)
    a, b = frames(cfg, 3), frames(cfg, 3)
    for fa, fb in zip(a, b, strict=True):
        assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.label, fb.label)
    assert not np.array_equal(a[0].label, frames(cfg, 4)[0].label)
    assert not np.array_equal(a[0].label, frames(cfg, 3, "val")[0].label)


def test_any_resolution_and_every_pixel_labelled_with_cityscapes_train_ids() -> None:
    for h, w in ((40, 72), (96, 320)):
        fr = frames(sd.SynthDriveConfig(height=h, width=w, frames=2, supersample=1))
        assert fr[0].image.shape == (h, w, 3) and fr[0].image.dtype == np.uint8
        assert fr[1].label.shape == (h, w) and set(np.unique(fr[1].label)) <= USED_TRAIN_IDS
        assert fr[0].flow is None and fr[1].flow.shape == (h, w, 2)
    # a street scene: road at the bottom centre, sky at the top centre
    fr = frames(sd.SynthDriveConfig(height=64, width=128, frames=2, supersample=1))
    assert fr[0].label[-1, 64] == ROAD and SKY in fr[0].label[:8]


def test_ground_truth_flow_is_exact() -> None:
    cfg = sd.SynthDriveConfig(height=96, width=192, frames=5, supersample=2, nuisance=0.0)
    fr = frames(cfg, 1, clean=True)
    for prev, cur in zip(fr[:-1], fr[1:], strict=True):
        warped, inside = warp_nearest(prev.label, cur.flow)
        ok = inside & cur.flow_valid
        assert ok.mean() > 0.85
        assert (warped[ok] == cur.label[ok]).mean() > 0.995  # labels move exactly with the flow
        assert np.abs(cur.flow[ok]).max() > 1.0  # the camera moves
        g0 = cv2.cvtColor(prev.clean, cv2.COLOR_RGB2GRAY).astype(np.float32)
        g1 = cv2.cvtColor(cur.clean, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gy, gx = np.mgrid[0:96, 0:192].astype(np.float32)
        back = cv2.remap(g0, gx + cur.flow[..., 0], gy + cur.flow[..., 1], cv2.INTER_LINEAR)
        err, still = np.abs(back - g1)[ok].mean(), np.abs(g0 - g1)[ok].mean()
        assert err < 0.5 * still, (err, still)  # brightness moves with the flow too


def test_nuisances_change_images_but_never_labels() -> None:
    base = dict(height=64, width=128, frames=12, supersample=1)
    clean = frames(sd.SynthDriveConfig(**base, nuisance=0.0), 2, clean=True)
    noisy = frames(sd.SynthDriveConfig(**base, nuisance=1.0), 2, clean=True)
    diffs = []
    for c, n in zip(clean, noisy, strict=True):
        assert np.array_equal(c.label, n.label) and np.array_equal(c.clean, n.clean)
        assert np.array_equal(c.image, c.clean)  # nuisance 0: the image is the clean render
        diffs.append(np.abs(n.image.astype(np.int16) - n.clean).mean())
    # every frame has sensor noise; some frames get strong nuisances (bursts, flicker, blur, occluders)
    assert min(diffs) > 0.5 and max(diffs) > 4 * np.median(diffs) or max(diffs) > 10


def test_dataset_layout_labels_flow_and_metadata(mini_synthdrive: Path) -> None:
    root = mini_synthdrive
    stem = "synthdrive_000001_000004"
    img = root / "leftImg8bit_sequence/train/synthdrive" / f"{stem}_leftImg8bit.png"
    train_ids = cv2.imread(str(root / "gtFine/train/synthdrive" / f"{stem}_gtFine_labelTrainIds.png"), -1)
    label_ids = cv2.imread(str(root / "gtFine/train/synthdrive" / f"{stem}_gtFine_labelIds.png"), -1)
    assert cv2.imread(str(img)).shape == (64, 128, 3)
    from cityscapesscripts.helpers.labels import id2label

    assert all(id2label[int(i)].trainId == t for i, t in zip(label_ids.ravel(), train_ids.ravel(), strict=True))
    assert len(list((root / "gtFine/train/synthdrive").glob("*_labelTrainIds.png"))) == 2 * MINI.frames
    flows = sorted((root / "flow/val/synthdrive").glob("*_flowBackward.png"))
    assert [f.name for f in flows] == [f"synthdrive_000000_{i:06d}_flowBackward.png" for i in range(1, 6)]
    flow, valid = sd.read_flow_png(flows[0])
    ref = frames(MINI, 5, "val")[1]
    assert np.abs(flow - ref.flow)[ref.flow_valid].max() <= 1 / 128 + 1e-4 and np.array_equal(valid, ref.flow_valid)
    meta = json.loads((root / "synthdrive.json").read_text())
    assert meta["seed"] == 5 and meta["splits"] == {"train": ["synthdrive_000000", "synthdrive_000001"],
                                                    "val": ["synthdrive_000000"]}


def test_rosbag2_mcap_holds_images_and_labels(mini_synthdrive: Path) -> None:
    bag = mini_synthdrive / "bags/val/synthdrive_000000"
    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap"))
    msgs = read_bag_frames(bag)
    images = [m for m in msgs if m[1] == IMAGE_TOPIC]
    labels = [m for m in msgs if m[1] == LABEL_TOPIC]
    assert len(images) == len(labels) == MINI.frames
    assert [s for s, _, _ in images] == [s for s, _, _ in labels]  # paired by stamp
    png = cv2.cvtColor(cv2.imread(str(mini_synthdrive / "leftImg8bit_sequence/val/synthdrive/"
                                      "synthdrive_000000_000002_leftImg8bit.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(images[2][2], png)
    lab = cv2.imread(str(mini_synthdrive / "gtFine/val/synthdrive/synthdrive_000000_000002_gtFine_labelTrainIds.png"),
                     -1)
    assert np.array_equal(labels[2][2], lab)


def test_existing_output_is_refused_and_failures_leave_nothing(tmp_path: Path, monkeypatch) -> None:
    cfg = sd.SynthDriveConfig(height=32, width=64, frames=2, supersample=1)
    out = sd.write_dataset(tmp_path / "a", cfg, splits={"train": 1}, bags=False, progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        sd.write_dataset(out, cfg, splits={"train": 1}, bags=False, progress=False)

    def broken(*args, **kwargs):
        yield from []
        raise OSError("disk full")

    monkeypatch.setattr(sd.dataset, "render_sequence", broken)  # what write_dataset calls
    with pytest.raises(OSError, match="disk full"):
        sd.write_dataset(tmp_path / "b", cfg, splits={"train": 1}, bags=False, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no partial dataset, no temporary folder


def test_cli_help_and_errors(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        sd.main(["--help"])
    assert exc.value.code == 0 and "examples" in capsys.readouterr().out
    assert sd.main(["--out", "/nonexistent-dir/x", "--frames", "1"]) == 2
    assert "at least 2 frames" in capsys.readouterr().err
