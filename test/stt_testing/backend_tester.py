"""The test every inference backend passes, in the style of segmentation_models.pytorch's
BaseModelTester: :class:`BackendTester` holds the tests, a subclass per backend says how to make it.

Each backend runs the same small STT model (stt_bise18 at 64x128, T = 3, random weights, exported
once with logits by :func:`step_graph`) and must

* stream like the torch backend across a reset (class maps equal on >= 99.9 % of pixels, logits
  within 1e-3 on >= 99.9 %: a rare top-k tie may flip one query; fill levels equal);
* refuse a wrong shape or dtype with the one ValueError every ``infer`` raises, before the stream's
  state changes;
* keep two cameras sharing the backend apart (each stream's results equal its own stream alone).

Adding a backend (say OpenVINO)::

    class TestOpenVINO(BackendTester):
        requires = ("openvino",)

        def make_backend(self, graph, request):
            return create_backend(graph.config.replace(backend="openvino", weights=str(graph.path)))

in test/runtime/test_backends.py; the module there imports the :func:`step_graph` fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from stt_ros.config import STTConfig
from stt_ros.runtime import Backend, StreamingSegmenter, create_backend

H, W, T = 64, 128, 3


def video(n: int, h: int = H, w: int = W, seed: int = 0) -> list[np.ndarray]:
    """A smooth scene with sharp-edged blocks drifting right: consecutive frames correlate."""
    rng = np.random.default_rng(seed)
    cw = w + 3 * n
    yy, xx = np.mgrid[0:h, 0:cw].astype(np.float32)
    canvas = np.stack([128 + 90 * np.sin(xx / 9), 128 + 90 * np.cos(yy / 7), 128 + 60 * np.sin((xx + yy) / 13)], -1)
    for _ in range(12):
        y, x = rng.integers(0, h), rng.integers(0, cw)
        canvas[y:y + h // 4, x:x + w // 6] = rng.uniform(0, 255, 3)
    canvas = canvas.clip(0, 255).astype(np.uint8)
    return [np.ascontiguousarray(canvas[:, 3 * i:3 * i + w]) for i in range(n)]


def compare_streams(reference: Backend, backend: Backend, frames: list[np.ndarray], reset_at: int | None,
                    rtol: float = 1e-3, atol: float = 1e-3) -> dict:
    """Both backends through the same stream (reset at ``reset_at``): the worst frame's share of equal
    class-map pixels and of close logits, the largest logit difference, and the fill levels."""
    st, so = StreamingSegmenter(reference), StreamingSegmenter(backend)
    worst_mask, worst_logit_share, max_abs = 1.0, 1.0, 0.0
    fills = []
    for i, frame in enumerate(frames):
        if i == reset_at:
            st.reset()
            so.reset()
        a, b = st.process(frame, return_logits=True), so.process(frame, return_logits=True)
        assert a.buffer_fill == b.buffer_fill
        fills.append(b.buffer_fill)
        assert b.mask.dtype == np.uint8 and b.mask.shape == a.mask.shape
        worst_mask = min(worst_mask, float((a.mask == b.mask).mean()))
        worst_logit_share = min(worst_logit_share, float(np.isclose(b.logits, a.logits, rtol=rtol, atol=atol).mean()))
        max_abs = max(max_abs, float(np.abs(b.logits - a.logits).max()))
    return {"mask": worst_mask, "logits_close": worst_logit_share, "max_abs": max_abs, "fills": fills}


class StepGraph(NamedTuple):
    config: STTConfig  # backend=torch; a backend replaces backend/device/weights
    model: torch.nn.Module  # the torch reference
    path: Path  # the exported step (.onnx, with logits)


@pytest.fixture(scope="session")
def step_graph(tmp_path_factory: pytest.TempPathFactory) -> StepGraph:
    from stt_ros.model.zoo import build_model
    from stt_train.export import export_step

    torch.manual_seed(0)
    cfg = STTConfig(model="stt_bise18", input_height=H, input_width=W, key_frames=T)
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("backends") / "stt.onnx"
    export_step(model, cfg, path, with_logits=True, query_chunk=40)
    return StepGraph(cfg, model, path)


class BackendTester:
    """Subclass per backend: set ``requires`` (modules it needs; missing ones skip) and implement
    :meth:`make_backend`. Tolerances are class attributes a backend may loosen with a reason."""

    requires: tuple[str, ...] = ()
    min_mask_agreement = 0.999
    min_logits_close = 0.999
    logits_rtol = logits_atol = 1e-3

    def make_backend(self, graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        raise NotImplementedError

    @pytest.fixture
    def backend(self, step_graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        for module in self.requires:
            pytest.importorskip(module)
        return self.make_backend(step_graph, request)

    def test_stream_matches_torch_across_a_reset(self, step_graph: StepGraph, backend: Backend) -> None:
        frames, reset_at = video(12), 7
        res = compare_streams(create_backend(step_graph.config, step_graph.model), backend, frames, reset_at,
                              self.logits_rtol, self.logits_atol)
        assert res["fills"] == [min(i, T) for i in range(reset_at)] + [min(i, T) for i in range(len(frames) - reset_at)]
        assert res["mask"] >= self.min_mask_agreement, res
        assert res["logits_close"] >= self.min_logits_close, res
        # and the temporal part mattered: a fresh segmenter on the last frame differs from the stream
        fresh = StreamingSegmenter(backend).process(frames[-1], return_logits=True)
        last = StreamingSegmenter(backend)
        for f in frames[-4:]:
            streamed = last.process(f, return_logits=True)
        assert not np.allclose(fresh.logits, streamed.logits, atol=1e-3)

    def test_bad_inputs_raise_and_leave_the_state_unchanged(self, backend: Backend) -> None:
        frames = video(3, seed=6)
        reference = StreamingSegmenter(backend)
        expected = [reference.process(f, return_logits=True) for f in frames][-1]
        seg = StreamingSegmenter(backend)
        seg.process(frames[0])
        seg.process(frames[1])
        good = frames[2]
        bad = {"rows missing": good[:-8], "two channels": np.ascontiguousarray(good[..., :2]),
               "batched": good[None], "channels first": np.ascontiguousarray(good.transpose(2, 0, 1)),
               "float32": good.astype(np.float32), "int16": good.astype(np.int16), "a list": good.tolist()}
        for what, image in bad.items():
            with pytest.raises(ValueError, match=rf"backend input must be uint8 \({H}, {W}, 3\), got "):
                backend.infer(image, seg.state)
            assert seg.fill == 2, what
        got = seg.process(good, return_logits=True)
        assert got.buffer_fill == 2
        np.testing.assert_array_equal(got.logits, expected.logits)  # the refused inputs left no trace

    def test_two_cameras_never_see_each_others_frames(self, backend: Backend) -> None:
        a_frames, b_frames = video(6, seed=1), video(6, seed=2)
        solo = StreamingSegmenter(backend)
        ref_b = [solo.process(f, return_logits=True).logits for f in b_frames]
        sa, sb = StreamingSegmenter(backend), StreamingSegmenter(backend)
        for fa, fb, rb in zip(a_frames, b_frames, ref_b, strict=True):
            sa.process(fa)
            np.testing.assert_array_equal(sb.process(fb, return_logits=True).logits, rb)
        sa.reset()  # a reset camera predicts its next frame on its own, like a fresh one
        after = sa.process(b_frames[0], return_logits=True)
        np.testing.assert_array_equal(after.logits, ref_b[0])
        assert after.buffer_fill == 0 and sa.fill == 1

    #: whether cameras stepped together (:meth:`Backend.infer_many`) give bit-identical results to the
    #: same cameras stepped one by one; a backend that batches the per-frame network says False with a
    #: reason, and its batched results must then match to the streaming tolerances above
    batch_exact = True

    def test_cameras_batched_equal_cameras_one_by_one(self, backend: Backend) -> None:
        n, frames = 3, 8
        videos = [video(frames, seed=10 + c) for c in range(n)]
        solo = [StreamingSegmenter(backend) for _ in range(n)]
        batched = [StreamingSegmenter(backend) for _ in range(n)]
        for t in range(frames):
            if t == 4:  # camera 1 resets: the others keep their past
                solo[1].reset()
                batched[1].reset()
            # at t = 6 camera 2's frame is rejected: it stays out of the batch, the others go on
            cams = [0, 1] if t == 6 else list(range(n))
            expected = {c: solo[c].process(videos[c][t], return_logits=True) for c in cams}
            if t == 6:  # handed in anyway, a bad frame refuses the whole call and steps no camera
                fills = [s.fill for s in batched]
                bad = videos[2][t][:-8]
                with pytest.raises(ValueError, match="backend input must be uint8"):
                    backend.infer_many([videos[0][t], videos[1][t], bad], [s.state for s in batched])
                assert [s.fill for s in batched] == fills
            got = StreamingSegmenter.infer_many([batched[c] for c in cams],
                                                [batched[c].prepare(videos[c][t]) for c in cams], return_logits=True)
            for c, res in zip(cams, got, strict=True):
                ref = expected[c]
                assert res.buffer_fill == ref.buffer_fill, (t, c)
                assert res.mask.shape == ref.mask.shape and res.mask.dtype == np.uint8
                if self.batch_exact:
                    np.testing.assert_array_equal(res.logits, ref.logits, err_msg=f"frame {t} camera {c}")
                    np.testing.assert_array_equal(res.mask, ref.mask)
                else:
                    assert (res.mask == ref.mask).mean() >= self.min_mask_agreement, (t, c)
                    close = np.isclose(res.logits, ref.logits, rtol=self.logits_rtol, atol=self.logits_atol)
                    assert close.mean() >= self.min_logits_close, (t, c)
        assert [s.fill for s in batched] == [s.fill for s in solo] == [T] * n
        with pytest.raises(ValueError, match="same stream state twice"):
            backend.infer_many([videos[0][0]] * 2, [batched[0].state] * 2)
