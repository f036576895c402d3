"""StreamingSegmenter + torch backend: streaming equals the clip forward, resets, isolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stt_ros.config import ConfigError, STTConfig
from stt_ros.runtime import Preprocessor, RingBuffer, StreamingSegmenter, create_backend, postprocess

H, W = 64, 128


def frames(n: int, seed: int = 0, h: int = H, w: int = W) -> list[np.ndarray]:
    """A textured scene drifting to the right, so consecutive frames differ but correlate."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(h, w + 4 * n, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[:, 4 * i:4 * i + w]) for i in range(n)]


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    return create_backend(STTConfig(model="stt_bise18", input_height=H, input_width=W, key_frames=3))


def test_streaming_equals_clip_forward(backend) -> None:
    seg = StreamingSegmenter(backend)
    clip = frames(6)
    results = [seg.process(f, return_logits=True) for f in clip]
    assert [r.buffer_fill for r in results] == [0, 1, 2, 3, 3, 3]
    x = backend.normalize(torch.from_numpy(np.stack(clip)))[None]
    with torch.inference_mode():
        ref = backend.model.forward_clip(x, all_frames=True)[0]
    for i, r in enumerate(results):
        # the clip runs its frames as one batch: BLAS blocking differs, hence float tolerance
        np.testing.assert_allclose(r.logits, ref[i].numpy(), rtol=1e-4, atol=1e-3, err_msg=f"frame {i}")
        top2 = np.sort(ref[i].numpy(), axis=0)[-2:]
        decided = top2[1] - top2[0] > 1e-2  # pixels whose class is not a float-noise tie
        assert decided.mean() > 0.99
        np.testing.assert_array_equal(r.class_map_net[decided], ref[i].argmax(0).numpy()[decided])
    # the temporal module mattered: frame 5 alone differs from frame 5 in the stream
    alone = StreamingSegmenter(backend).process(clip[5], return_logits=True)
    assert not np.allclose(alone.logits, results[5].logits, atol=1e-4)


def test_reset_gives_the_fresh_first_frame(backend) -> None:
    clip = frames(5, seed=1)
    seg = StreamingSegmenter(backend)
    for f in clip[:4]:
        seg.process(f)
    storage = seg.state.storage.data_ptr()
    seg.reset()
    assert seg.fill == 0
    after = seg.process(clip[4], return_logits=True)
    fresh = StreamingSegmenter(backend).process(clip[4], return_logits=True)
    np.testing.assert_array_equal(after.logits, fresh.logits)
    assert after.buffer_fill == 0 and seg.fill == 1
    assert seg.state.storage.data_ptr() == storage  # no reallocation


def test_segmenters_sharing_a_model_are_isolated(backend) -> None:
    a_frames, b_frames = frames(5, seed=2), frames(5, seed=3)
    seg = StreamingSegmenter(backend)
    solo_a = [seg.process(f, return_logits=True).logits for f in a_frames]
    seg = StreamingSegmenter(backend)
    solo_b = [seg.process(f, return_logits=True).logits for f in b_frames]
    sa, sb = StreamingSegmenter(backend), StreamingSegmenter(backend)
    for i in range(5):  # interleaved on one model
        np.testing.assert_array_equal(sa.process(a_frames[i], return_logits=True).logits, solo_a[i])
        np.testing.assert_array_equal(sb.process(b_frames[i], return_logits=True).logits, solo_b[i])


def test_mask_returns_at_camera_size_with_known_ids(backend) -> None:
    seg = StreamingSegmenter(backend)
    img = frames(1, h=90, w=170)[0]
    r = seg.process(img)
    assert r.mask.shape == (90, 170) and r.mask.dtype == np.uint8
    assert set(np.unique(r.mask)) <= set(np.unique(r.class_map_net))  # nearest: no new ids
    assert r.class_map_net.shape == (H, W)
    for key in ("preprocess_ms", "network_ms", "postprocess_ms", "total_ms"):
        assert r.timings[key] >= 0
    net = StreamingSegmenter(backend, output_size="network").process(img)
    assert net.mask.shape == (H, W)


def test_bad_input_is_rejected_and_state_untouched(backend) -> None:
    seg = StreamingSegmenter(backend)
    seg.process(frames(1)[0])
    for bad in (np.zeros((H, W), np.uint8), np.zeros((H, W, 3), np.float32), np.zeros((0, 5, 3), np.uint8),
                np.zeros((H, W, 4), np.uint8)):
        with pytest.raises(ValueError):
            seg.process(bad)
    assert seg.fill == 1


def test_baseline_backend_has_no_memory() -> None:
    cfg = STTConfig(model="bise18", input_height=H, input_width=W)
    seg = StreamingSegmenter(create_backend(cfg))
    clip = frames(3)
    r = [seg.process(f, return_logits=True) for f in clip]
    assert seg.fill == 0 and seg.capacity == 0
    again = StreamingSegmenter(seg.backend).process(clip[2], return_logits=True)
    np.testing.assert_array_equal(r[2].logits, again.logits)


def test_backend_choices_are_validated() -> None:
    with pytest.raises(ConfigError, match="not available"):
        create_backend(STTConfig(backend="onnxruntime", input_height=H, input_width=W))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            create_backend(STTConfig(device="cuda", input_height=H, input_width=W))
    with pytest.raises(ConfigError, match="torch device"):
        create_backend(STTConfig(device="gpu0", input_height=H, input_width=W))


def test_ring_buffer_order_and_static_storage() -> None:
    rb = RingBuffer(3, (2, 4))
    ptr = rb.storage.data_ptr()
    assert rb.order() == []
    for i in range(5):
        rb.push(torch.full((2, 4), float(i)))
    assert rb.fill == 3
    assert [int(rb.storage[0, s, 0, 0]) for s in rb.order()] == [4, 3, 2]  # nearest first
    with pytest.raises(ValueError, match="does not fit"):
        rb.push(torch.zeros(3, 4))
    rb.reset()
    assert rb.fill == 0 and rb.order() == [] and rb.storage.data_ptr() == ptr


def test_letterbox_roundtrip() -> None:
    pre = Preprocessor(64, 128, "letterbox")
    img = np.full((100, 100, 3), 200, np.uint8)
    out, g = pre(img)
    assert out.shape == (64, 128, 3) and (g.height, g.width) == (64, 64) and (g.top, g.left) == (0, 32)
    assert (out[:, :32] == pre.pad_value).all() and (out[:, 32:96] == 200).all()
    class_map = np.zeros((64, 128), np.uint8)
    class_map[:, 32:96] = 7
    back = postprocess(class_map, g)
    assert back.shape == (100, 100) and (back == 7).all()
