"""Loaders on tiny fixtures written in the exact Cityscapes, CamVid and SynthDrive layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stt_ros.metrics import warp_nearest
from stt_train.augment import ClipAugment
from stt_train.datasets import CamVidVideo, CityscapesVideo, DatasetError, SynthDriveVideo, build_dataset
from stt_train.sampler import ClipSampler


def test_cityscapes_clips_frames_and_label_mapping(cityscapes: Path) -> None:
    ds = CityscapesVideo(cityscapes, "train", prev_frames=3, stride=2)
    assert len(ds) == 2 and ds.num_classes == 19
    spec = ds.clips[0]
    assert [p.name for p in spec.frames] == [f"aachen_000000_{f:06d}_leftImg8bit.png" for f in (13, 15, 17, 19)]
    frames, label = ds.load(0)
    assert [int(f[0, 0, 0]) for f in frames] == [13, 15, 17, 19]
    assert label[0, 0] == 10 and label[4, 0] == 13 and label[15, 31] == 0  # sky, car, road trainIds
    assert label[6, 0] == 255 and label[8, 0] == 255  # unlabeled and parking are ignored
    assert [p.name[:-len("_leftImg8bit.png")] for p in ds.clips[1].frames][-1] == "frankfurt_000294_000294"
    item = ds[0]
    assert item["frames"].shape == (4, 3, 16, 32) and item["frames"].dtype == torch.float32
    assert item["label"].dtype == torch.int64
    seqs = ds.sequences(frames=6)
    assert len(seqs[0].frames) == 6 and seqs[0].labels[:-1] == [None] * 5 and seqs[0].labels[-1] == spec.label


def test_cityscapes_missing_frame_names_the_file(cityscapes: Path) -> None:
    missing = cityscapes / "leftImg8bit_sequence/train/aachen/aachen_000000_000017_leftImg8bit.png"
    missing.unlink()
    CityscapesVideo(cityscapes, "train", prev_frames=1, stride=1)  # frame 17 not needed
    with pytest.raises(DatasetError, match="aachen_000000_000017_leftImg8bit.png"):
        CityscapesVideo(cityscapes, "train", prev_frames=2, stride=1)
    with pytest.raises(DatasetError, match="gtFine/val"):
        CityscapesVideo(cityscapes, "val")


def test_camvid_clips_and_void(camvid: Path) -> None:
    ds = CamVidVideo(camvid, "train", prev_frames=2, stride=2)
    assert len(ds) == 2 and ds.num_classes == 11
    names = [[p.name for p in c.frames] for c in ds.clips]
    assert names[0] == ["0001TP_006686.png", "0001TP_006688.png", "0001TP_006690.png"]
    assert names[1] == ["Seq05VD_f00026.png", "Seq05VD_f00028.png", "Seq05VD_f00030.png"]
    frames, label = ds.load(1)
    assert [int(f[0, 0, 0]) for f in frames] == [26, 28, 30]
    assert label[0, 0] == 0 and label[15, 31] == 3 and label[15, 0] == 255


def test_camvid_missing_frame_names_the_file(camvid: Path) -> None:
    (camvid / "frames/Seq05VD/Seq05VD_f00027.png").unlink()
    with pytest.raises(DatasetError, match="Seq05VD_f00027.png"):
        CamVidVideo(camvid, "train", prev_frames=3, stride=1)
    with pytest.raises(DatasetError, match="camvid/val does not exist"):
        build_dataset("camvid", camvid, "val", 0)


def test_synthdrive_every_frame_is_a_target_with_flow(mini_synthdrive: Path, mini_config) -> None:
    ds = SynthDriveVideo(mini_synthdrive, "train", prev_frames=2)
    assert len(ds) == 2 * (mini_config.frames - 2)  # targets need two predecessors in their sequence
    assert ds.clips[0].frame_index == 2 and ds.clips[0].frames[0].name.endswith("_000000_leftImg8bit.png")
    seqs = SynthDriveVideo(mini_synthdrive, "val").sequences()
    assert len(seqs) == 1 and len(seqs[0].frames) == mini_config.frames
    assert all(lab is not None for lab in seqs[0].labels)
    assert seqs[0].flows[0] is None and all(f is not None and f.is_file() for f in seqs[0].flows[1:])


def test_augmentation_is_identical_for_every_frame_of_a_clip() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 19, (6, 10)).astype(np.uint8)
    label = cv2.resize(label, (80, 48), interpolation=cv2.INTER_NEAREST)
    img = np.repeat((label * 10)[..., None], 3, 2)  # the image encodes the label
    aug = ClipAugment(crop=(32, 64), scale=(0.5, 1.5), flip=True, color=0.0)
    for seed in range(20):
        frames, lab = aug([img, img.copy(), img.copy()], label, np.random.default_rng(seed))
        assert all(np.array_equal(frames[0], f) for f in frames[1:])
        assert frames[0].shape == (32, 64, 3) and lab.shape == (32, 64)
        inside = lab != 255
        agree = (np.abs(frames[0][..., 0].astype(int) - lab.astype(int) * 10) <= 5)[inside].mean()
        assert agree > 0.6  # aligned (a misaligned label would agree on ~1 pixel in 19; bilinear edges blend)
    exact = ClipAugment(crop=(32, 64), scale=(1.0, 1.0), flip=True)
    for seed in range(5):
        frames, lab = exact([img], label, np.random.default_rng(seed))
        assert np.array_equal(frames[0][..., 0], lab * 10)
    a = aug([img], label, np.random.default_rng([1, 2, 3]))
    b = aug([img], label, np.random.default_rng([1, 2, 3]))
    assert np.array_equal(a[0][0], b[0][0]) and np.array_equal(a[1], b[1])  # a pure function of the seed


def test_colour_jitter_is_shared_by_the_clip() -> None:
    img = np.random.default_rng(1).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    frames, _ = ClipAugment(color=0.4, flip=False)([img, img.copy()], np.zeros((16, 16), np.uint8),
                                                   np.random.default_rng(4))
    assert np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[0], img)


def test_sampler_splits_each_global_batch_across_processes() -> None:
    one = ClipSampler(50, 1, 0, seed=3, local_batch=4)
    two = [ClipSampler(50, 2, r, seed=3, local_batch=2) for r in range(2)]
    for epoch in (0, 1):
        one.set_position(epoch)
        for s in two:
            s.set_position(epoch)
        a = list(one)
        b = [list(s) for s in two]
        assert len(a) == 48 and len(b[0]) == len(b[1]) == 24
        for k in range(12):
            batch = sorted(a[4 * k:4 * k + 4])
            assert batch == sorted(b[0][2 * k:2 * k + 2] + b[1][2 * k:2 * k + 2])
        assert all(seed == (3, epoch, i) for i, seed in a)
    one.set_position(1, 5)  # resume at global batch 5 of epoch 1
    assert list(one) == a[20:]


def test_flow_follows_scale_crop_and_flip() -> None:
    """A clip moving (dx, dy) = (5, -3) pixels a frame: after augmentation its flow still maps each pixel
    of a frame to where it was in the frame before (a wrong sign on flip or a missed scale fails)."""
    rng = np.random.default_rng(0)
    texture = cv2.resize(rng.integers(0, 255, (12, 20, 3)).astype(np.uint8), (160, 96),
                         interpolation=cv2.INTER_CUBIC)  # smooth: bilinear resampling stays close
    frames = [np.roll(texture, (-3 * k, 5 * k), (0, 1)) for k in range(3)]
    flow = np.zeros((96, 160, 2), np.float32)
    flow[..., 0], flow[..., 1] = -5, 3
    valid = np.ones((96, 160), bool)
    valid[:3], valid[:, -5:] = False, False  # what np.roll wrapped around is not the same surface
    label = np.zeros((96, 160), np.uint8)
    aug = ClipAugment(crop=(64, 96), scale=(0.75, 1.5), flip=True)
    flipped = 0
    for seed in range(12):
        out, lab, flows = aug(frames, label, np.random.default_rng(seed), [(flow, valid), (flow, valid)])
        assert len(flows) == 2 and flows[0][0].shape == (64, 96, 2) and flows[0][1].shape == (64, 96)
        assert flows[0][0].dtype == np.float32 and flows[0][1].dtype == bool
        flipped += bool(flows[0][0][..., 0].mean() > 0)
        for k in (1, 2):
            fl, ok = flows[k - 1]
            warped, inside = warp_nearest(out[k - 1][..., 0], fl)  # one channel of the texture
            m = ok & inside
            assert m.mean() > 0.5
            moved = np.abs(warped.astype(int) - out[k][..., 0].astype(int))[m].mean()
            still = np.abs(out[k - 1][..., 0].astype(int) - out[k][..., 0].astype(int))[m].mean()
            assert moved < 0.25 * still, (seed, k, moved, still)
    assert 0 < flipped < 12  # both mirrored and unmirrored clips were checked
    frames2, lab2 = aug(frames, label, np.random.default_rng(3))  # without flow: the same draws, two outputs
    assert np.array_equal(frames2[0], aug(frames, label, np.random.default_rng(3), [(flow, valid)] * 2)[0][0])


def test_synthdrive_clips_with_flow(mini_synthdrive: Path, tmp_path: Path) -> None:
    import shutil

    ds = SynthDriveVideo(mini_synthdrive, "train", prev_frames=2, with_flow=True)
    item = ds[0]
    h, w = item["label"].shape
    assert item["flow"].shape == (2, 2, h, w) and item["flow_valid"].shape == (2, h, w)
    spec = ds.clips[0]
    labels = [cv2.imread(str(p).replace("leftImg8bit_sequence", "gtFine").replace("_leftImg8bit.png",
                         "_gtFine_labelTrainIds.png"), cv2.IMREAD_UNCHANGED) for p in spec.frames]
    for k in (1, 2):  # the exact flow carries frame k-1's labels onto frame k where valid
        fl = item["flow"][k - 1].permute(1, 2, 0).numpy()
        warped, inside = warp_nearest(labels[k - 1], fl)
        m = item["flow_valid"][k - 1].numpy() & inside
        assert m.mean() > 0.5 and (warped == labels[k])[m].mean() > 0.97
        assert (warped == labels[k])[m].mean() > (labels[k - 1] == labels[k])[m].mean()
    plain = SynthDriveVideo(mini_synthdrive, "train", prev_frames=2)[0]
    assert "flow" not in plain and torch.equal(plain["frames"], item["frames"])
    assert "flow" in build_dataset("synthdrive", mini_synthdrive, "train", 2, with_flow=True)[1]
    with pytest.raises(DatasetError, match="stride 1"):
        SynthDriveVideo(mini_synthdrive, "train", prev_frames=1, stride=2, with_flow=True)
    copy = tmp_path / "sd"
    shutil.copytree(mini_synthdrive, copy)
    gone = next((copy / "flow/train").glob("*/*_000001_flowBackward.png"))
    gone.unlink()
    broken = SynthDriveVideo(copy, "train", prev_frames=2, with_flow=True)
    with pytest.raises(DatasetError, match=gone.name):
        [broken[i] for i in range(len(broken))]


def test_only_synthdrive_has_flow(cityscapes: Path) -> None:
    with pytest.raises(DatasetError, match="no ground-truth optical flow"):
        build_dataset("cityscapes", cityscapes, "train", 1, with_flow=True)
