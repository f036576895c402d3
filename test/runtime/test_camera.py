"""CameraPipeline, the per-camera loop the node and stt-bag-eval share: reset policy, outputs on
demand, the one TC definition (network size, the shipped flow settings), counters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stt_ros.config import STTConfig
from stt_ros.metrics import TC_FLOW_PRESET, TC_FLOW_SCALE, FlowEstimator, pair_agreement
from stt_ros.runtime import StreamingSegmenter, create_backend
from stt_ros.runtime.camera import CameraPipeline, PipelineSettings
from stt_ros.viz import colorize, overlay, palette

H, W = 64, 128


def drive(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth texture drifting right by 4 px a frame (so optical flow has something to find)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, size=(h, w + 4 * n, 3), dtype=np.uint8), (0, 0), 2)
    return [np.ascontiguousarray(base[:, 4 * i:4 * i + w]) for i in range(n)]


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    return create_backend(STTConfig(model="stt_bise18", input_height=H, input_width=W, key_frames=2, num_classes=5))


def test_tc_is_computed_at_the_network_size_with_the_shipped_flow(backend) -> None:
    """Camera frames at twice the network size: masks come back at camera size, TC is the
    agreement of the network-size class maps along DIS flow between the network-size inputs."""
    pipe = CameraPipeline(StreamingSegmenter(backend, "input"))
    assert (pipe.settings.flow_preset, pipe.settings.flow_scale) == (TC_FLOW_PRESET, TC_FLOW_SCALE)
    ref_flow = FlowEstimator(TC_FLOW_PRESET, TC_FLOW_SCALE)
    prev = None
    frames = [pipe.process(rgb, 0.1 * i) for i, rgb in enumerate(drive(5, 2 * H, 2 * W))]
    for i, f in enumerate(frames):
        assert f.mask.shape == (2 * H, 2 * W) and f.result.class_map_net.shape == (H, W)
        assert f.color is None and f.overlay is None  # not asked for
        if prev is None:
            assert f.tc is None and f.buffer_fill == 0
        else:
            flow = ref_flow.backward(prev.result.net_image, f.result.net_image)
            ref = pair_agreement(prev.result.class_map_net, f.result.class_map_net, flow, 5)
            assert f.tc.miou == pytest.approx(ref.miou, abs=1e-12), f"frame {i}"
            assert f.tc.intersection.tolist() == ref.intersection.tolist()
            assert f.tc.union.sum() == ref.union.sum() > 0
        prev = f
    assert pipe.counters.processed == 5 and pipe.counters.resets == 0
    assert list(pipe.recent_tc) == [f.tc.miou for f in frames[1:]]


def test_tc_may_lag_the_model_by_frames_and_a_reset(backend) -> None:
    """The node computes frame N's TC while frame N+1 is in the model: a frame's pair is fixed when it
    is segmented, so TC computed late (after later frames and a reset) equals TC computed in order."""
    clip = drive(4, H, W, seed=3)
    stamps = [0.0, 0.1, 0.2, 5.0]  # frame 3 comes after a gap: reset
    inline = CameraPipeline(StreamingSegmenter(backend))
    ref = [inline.process(rgb, t).tc for rgb, t in zip(clip, stamps, strict=True)]
    late = CameraPipeline(StreamingSegmenter(backend))
    frames = [late.segment(rgb, t) for rgb, t in zip(clip[:3], stamps[:3], strict=True)]
    assert late.consistency(frames[0]) is None
    frames.append(late.segment(clip[3], stamps[3]))
    assert frames[3].reset.startswith("gap of")
    for i in (2, 1, 3):  # out of order, after the reset
        got = late.consistency(frames[i])
        if ref[i] is None:
            assert got is None, f"frame {i}"
        else:
            assert got.intersection.tolist() == ref[i].intersection.tolist(), f"frame {i}"
            assert got.union.tolist() == ref[i].union.tolist(), f"frame {i}"
    assert ref[1] is not None and ref[2] is not None and ref[3] is None


def test_a_reset_starts_tc_and_the_ring_buffer_afresh(backend) -> None:
    pipe = CameraPipeline(StreamingSegmenter(backend), PipelineSettings(max_gap_s=0.5))
    clip = drive(4, H, W, seed=1)
    first = [pipe.process(rgb, 0.1 * i) for i, rgb in enumerate(clip[:2])]
    assert first[1].tc is not None and first[1].buffer_fill == 1
    gap = pipe.process(clip[2], 5.0)  # a 4.9 s gap
    assert gap.reset.startswith("gap of") and gap.tc is None and gap.buffer_fill == 0
    back = pipe.process(clip[3], 1.0)  # the stamp went backwards
    assert "backwards" in back.reset and back.tc is None
    assert pipe.counters.resets == 2
    pipe.reset()  # e.g. the node's ~/reset service
    pipe.forget()
    fresh = pipe.process(clip[3], 0.0)
    assert fresh.reset == "" and fresh.tc is None and fresh.buffer_fill == 0 and pipe.counters.resets == 3


def test_outputs_on_demand_and_disabled_tc(backend) -> None:
    lut = palette("camvid")
    pipe = CameraPipeline(StreamingSegmenter(backend), PipelineSettings(tc_enabled=False, overlay_alpha=0.25), lut)
    rgb = drive(1, H + 6, W, seed=2)[0]
    frame = pipe.segment(rgb, 0.0)
    assert frame.color is None
    np.testing.assert_array_equal(pipe.colorize(frame), colorize(frame.mask, lut))
    np.testing.assert_array_equal(pipe.overlay(frame), overlay(rgb, colorize(frame.mask, lut), 0.25))
    assert pipe.consistency(frame) is None and pipe.consistency(pipe.segment(rgb, 0.1)) is None
    pipe.configure(PipelineSettings(tc_enabled=True, flow_preset="ultrafast", flow_scale=1.0))
    assert pipe.consistency(pipe.segment(rgb, 0.2)) is not None  # the previous frame was kept
    with pytest.raises(ValueError, match="flow preset"):
        pipe.configure(PipelineSettings(flow_preset="slow"))
    pipe.count_dropped()
    pipe.reject()
    c = pipe.counters
    assert (c.processed, c.dropped, c.rejected, c.resets) == (3, 1, 1, 0)
