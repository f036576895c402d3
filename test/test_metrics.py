"""mIoU and temporal consistency."""

from __future__ import annotations

import numpy as np
import pytest

from stt_ros.metrics import (
    ConfusionMatrix,
    FlowEstimator,
    TCAccumulator,
    confusion_matrix,
    mean_iou,
    pair_agreement,
    warp_nearest,
)
from stt_ros.viz import colorize, overlay, palette


def test_confusion_and_miou_by_hand() -> None:
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]], np.uint8)
    cm = confusion_matrix(pred, label, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    # IoU: class0 1/(2+2-1)=1/3, class1 3/(3+4-3)=3/4, class2 1/(2+1-1)=1/2
    assert mean_iou(cm) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    acc = ConfusionMatrix(3)
    acc.update(pred, label)
    acc.update(pred, label)
    assert acc.miou() == pytest.approx(mean_iou(cm)) and acc.pixel_accuracy() == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(np.full((2, 4), 3, np.uint8), label, 3)


def test_absent_classes_do_not_count() -> None:
    cm = confusion_matrix(np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8), 19)
    assert mean_iou(cm) == 1.0


def shifted_scene(dx: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    texture = cv2_blur(rng.integers(0, 256, (96, 160 + 16), dtype=np.uint8))
    mask = np.zeros((96, 176), np.uint8)
    mask[:, 40:90] = 3
    mask[30:60, 100:140] = 7
    return texture[:, 8 + dx:8 + dx + 160], mask[:, 8 + dx:8 + dx + 160]


def cv2_blur(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (5, 5), 1.5)


def test_known_flow_gives_full_agreement() -> None:
    _, prev = shifted_scene(0)
    _, cur = shifted_scene(3)  # the scene moved 3 px left: cur(x) = prev(x + 3)
    flow = np.zeros((*cur.shape, 2), np.float32)
    flow[..., 0] = 3
    warped, valid = warp_nearest(prev, flow)
    assert not valid[:, -3:].any() and valid[:, :-3].all()
    assert (warped[valid] == cur[valid]).all()
    a = pair_agreement(prev, cur, flow, 19)
    assert a.miou == 1.0 and a.pixel_agreement == 1.0
    no_flow = pair_agreement(prev, cur, np.zeros_like(flow), 19)
    assert no_flow.miou < 1.0


def test_dis_flow_recovers_a_translation_and_tc_accumulates() -> None:
    img0, m0 = shifted_scene(0)
    img1, m1 = shifted_scene(4)
    est = FlowEstimator("fast", scale=1.0)
    flow = est.backward(img0, img1)
    assert np.median(flow[10:-10, 10:-10, 0]) == pytest.approx(4, abs=0.5)
    tc = TCAccumulator(19)
    a = tc.update(m0, m1, flow)
    assert a.pixel_agreement > 0.97
    flipped = m1.copy()
    flipped[m1 == 7] = 3  # an inconsistent prediction lowers TC
    b = tc.update(m0, flipped, flow)
    assert b.miou < a.miou and tc.pairs == 2 and 0 < tc.value() < 1
    half = FlowEstimator("ultrafast", scale=0.5).backward(img0, img1)
    assert half.shape == flow.shape and np.median(half[10:-10, 10:-10, 0]) == pytest.approx(4, abs=1.0)


def test_palette_colorize_overlay() -> None:
    lut = palette("cityscapes")
    assert lut[0].tolist() == [128, 64, 128] and lut[13].tolist() == [0, 0, 142]  # road, car
    assert palette("camvid")[3].tolist() == [128, 64, 128]
    mask = np.array([[0, 13], [255, 1]], np.uint8)
    rgb = colorize(mask, lut)
    assert rgb.shape == (2, 2, 3) and rgb[1, 0].tolist() == [0, 0, 0]
    img = np.full((4, 4, 3), 200, np.uint8)
    out = overlay(img, colorize(np.zeros((2, 2), np.uint8), lut), alpha=0.5)
    assert out.shape == (4, 4, 3) and out[0, 0].tolist() == [164, 132, 164]
    with pytest.raises(ValueError):
        palette("mapillary")


@pytest.mark.parametrize("ignore", [255, 2])
def test_fast_and_general_confusion_paths_agree(ignore: int) -> None:
    rng = np.random.default_rng(ignore)
    pred = rng.integers(0, 5, (40, 50)).astype(np.uint8)
    label = rng.choice(np.array([0, 1, 2, 3, 4, 255], np.uint8), (40, 50))
    valid = rng.random((40, 50)) > 0.3
    fast = confusion_matrix(pred, label, 5, ignore, valid)
    general = confusion_matrix(pred.astype(np.int64), label.astype(np.int64), 5, ignore, valid)
    np.testing.assert_array_equal(fast, general)
    assert fast.sum() == (valid & (label != ignore) & (label < 5)).sum()


# ------------------------------------------------------------------ ETC's protocol (tool/eval_tc.py)
def test_etc_static_two_class_scene_means_over_all_classes() -> None:
    """No motion: every pixel agrees, but ETC averages over all classes, absent ones counting 0."""
    from stt_ros.metrics import ETCAccumulator, etc_pair

    pred = np.array([[0, 0, 1, 1]] * 2, np.uint8)
    zero = np.zeros((2, 4, 2), np.float32)
    inter, union = etc_pair(pred, pred, zero, 3)
    assert inter.tolist() == [4, 4, 0] and union.tolist() == [4, 4, 0]
    acc = ETCAccumulator(3)
    acc.update(pred, pred, zero)
    assert acc.value() == pytest.approx(2 / 3, abs=1e-9)  # (1 + 1 + 0) / 3; the stt_ros protocol gives 1
    assert pair_agreement(pred, pred, zero, 3).miou == 1.0


def test_etc_pan_clamps_the_border_instead_of_skipping_it() -> None:
    """The camera pans: frame t+1 is frame t shifted right by one pixel, a new class 2 entering at the
    left. Forward flow +1: the last column samples beyond the image, clamped to the edge (no mask)."""
    from stt_ros.metrics import ETCAccumulator, etc_pair, warp_bilinear_clamped

    pred = np.array([[0, 0, 1, 1, 0]], np.uint8)
    nxt = np.array([[2, 0, 0, 1, 1]], np.uint8)
    flow = np.zeros((1, 5, 2), np.float32)
    flow[..., 0] = 1.0
    assert warp_bilinear_clamped(nxt, flow).tolist() == [[0, 0, 1, 1, 1]]
    inter, union = etc_pair(pred, nxt, flow, 3)
    # class 0: pred at x 0,1,4, warped at 0,1 -> I 2, U 3; class 1: pred 2,3, warped 2,3,4 -> I 2, U 3
    assert inter.tolist() == [2, 2, 0] and union.tolist() == [3, 3, 0]
    acc = ETCAccumulator(3)
    acc.update(pred, nxt, flow)
    assert acc.value() == pytest.approx((2 / 3 + 2 / 3 + 0) / 3, abs=1e-9)


def test_etc_samples_class_ids_bilinearly_and_truncates() -> None:
    """Half-pixel flow: ETC interpolates the ids as numbers (0 and 2 -> 1, 1 and 2 -> 1.5 -> 1),
    and the clamped bottom row repeats; 255 in the warped map is ignored."""
    from stt_ros.metrics import etc_pair, warp_bilinear_clamped

    nxt = np.array([[0, 2, 1, 2], [3, 3, 3, 3]], np.uint8)
    flow = np.zeros((2, 4, 2), np.float32)
    flow[..., 0] = 0.5
    flow[..., 1] = 0.5  # the second row samples halfway to a row beyond the image: clamped to row 1
    warped = warp_bilinear_clamped(nxt, flow)
    # row 0: x=0 -> (0+2)/2 = 1 on row 0 and 3 on row 1 -> (1 + 3) / 2 = 2; x=1: (2+1)/2=1.5, 3 -> 2.25 -> 2;
    # x=2: (1+2)/2 = 1.5, 3 -> 2.25 -> 2; x=3 (clamped right): 2, 3 -> 2.5 -> 2. row 1: 3 everywhere
    assert warped.tolist() == [[2, 2, 2, 2], [3, 3, 3, 3]]
    ignore = np.full((2, 4), 255, np.uint8)
    inter, union = etc_pair(np.zeros((2, 4), np.uint8), ignore, np.zeros((2, 4, 2), np.float32), 4)
    assert inter.sum() == 0 and union.sum() == 0  # every warped pixel is 255: nothing compared


def test_etc_sums_over_pairs_before_dividing() -> None:
    from stt_ros.metrics import ETCAccumulator

    acc = ETCAccumulator(2)
    zero = np.zeros((1, 4, 2), np.float32)
    acc.update(np.array([[0, 0, 0, 0]], np.uint8), np.array([[0, 0, 0, 0]], np.uint8), zero)  # class 0: 4 / 4
    acc.update(np.array([[0, 1, 1, 1]], np.uint8), np.array([[0, 0, 1, 1]], np.uint8), zero)  # 0: 1/2, 1: 2/3
    assert acc.intersection.tolist() == [5, 2] and acc.union.tolist() == [6, 3] and acc.pairs == 2
    assert acc.value() == pytest.approx((5 / 6 + 2 / 3) / 2, abs=1e-9)  # not the mean of the pairs' values


def test_make_flow_names_the_tc_defaults() -> None:
    from stt_ros.metrics import TC_FLOW_PRESET, TC_FLOW_SCALE, make_flow

    f = make_flow("dis")
    assert (f.preset, f.scale) == (TC_FLOW_PRESET, TC_FLOW_SCALE)
    assert make_flow("dis:medium").preset == "medium" and make_flow("none") is None
    for bad in ("raft", "dis:slow", ""):
        with pytest.raises(ValueError, match="choose dis"):
            make_flow(bad)


def test_inline_cityscapes_palette_matches_cityscapesscripts() -> None:
    labels = pytest.importorskip("cityscapesscripts.helpers.labels", reason="cityscapesscripts (train extra)")
    from stt_ros.viz import CITYSCAPES_CLASSES, CITYSCAPES_COLORS, class_names

    train = sorted((lab.trainId, lab.name, tuple(lab.color)) for lab in labels.labels if 0 <= lab.trainId < 255)
    assert [n for _, n, _ in train] == list(CITYSCAPES_CLASSES) == class_names(19, "cityscapes")
    assert [c for _, _, c in train] == list(CITYSCAPES_COLORS)
    assert palette("cityscapes")[13].tolist() == [0, 0, 142]  # car
    assert class_names(11, "camvid")[0] == "sky" and class_names(5)[4] == "class_4"
