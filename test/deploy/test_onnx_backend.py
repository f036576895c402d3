"""onnxruntime backend (real onnxruntime, CPU provider): ring binding without copies, graph/config
checks, provider choice. Stream parity with torch, bad inputs and camera isolation are the shared
backend tests (test/runtime/test_backends.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stt_ros.config import ConfigError, STTConfig
from stt_ros.model.zoo import build_model
from stt_ros.runtime import StreamingSegmenter, create_backend
from stt_ros.runtime.graph_io import SlotRing
from stt_ros.runtime.onnx_backend import CPU_EP, CUDA_EP, TRT_EP, OnnxRuntimeBackend, OrtStreamState, choose_providers
from stt_testing.backend_tester import compare_streams, video
from stt_train.export import export_step

H, W = 64, 128
ROOT = Path(__file__).resolve().parents[2]
DEMO_WEIGHTS = ROOT / "models" / "stt_bise18_synthdrive.safetensors"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[STTConfig, torch.nn.Module, Path]:
    torch.manual_seed(0)
    cfg = STTConfig(model="stt_bise18", input_height=H, input_width=W)
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("ort") / "stt.onnx"
    export_step(model, cfg, path, with_logits=True, query_chunk=40)
    return cfg, model, path


def test_cpu_device_takes_the_cpu_provider(exported) -> None:
    cfg, _, path = exported
    assert create_backend(cfg.replace(backend="onnxruntime", weights=str(path))).providers[0] == CPU_EP


@pytest.mark.slow
@pytest.mark.skipif(not DEMO_WEIGHTS.is_file(), reason=f"shipped demo model {DEMO_WEIGHTS.relative_to(ROOT)} does not "
                    "exist yet (it comes from the training issue); the random-weight check covers the graph")
def test_demo_model_stream_matches_torch(tmp_path: Path) -> None:
    from stt_ros.weights import checkpoint_config, load_weights, read_state_dict

    _, meta = read_state_dict(DEMO_WEIGHTS)
    saved = checkpoint_config(meta) or {}
    fields = {k: v for k, v in saved.items() if k in STTConfig.field_help() and k not in ("backend", "device",
                                                                                            "precision", "weights")}
    cfg = STTConfig.from_dict(fields).replace(weights=str(DEMO_WEIGHTS))
    model = build_model(cfg).eval()
    load_weights(model, DEMO_WEIGHTS, config=cfg.to_dict())
    path = tmp_path / "demo.onnx"
    export_step(model, cfg, path, with_logits=True)
    ort_backend = create_backend(cfg.replace(backend="onnxruntime", weights=str(path)))
    res = compare_streams(create_backend(cfg, model), ort_backend,
                          video(20, cfg.input_height, cfg.input_width, seed=3), reset_at=9)
    assert res["mask"] >= 0.999 and res["logits_close"] >= 0.999, res


def test_ring_binds_slots_in_place(exported) -> None:
    cfg, _, path = exported
    backend = OnnxRuntimeBackend(cfg.replace(backend="onnxruntime"), onnx_path=path)
    seg = StreamingSegmenter(backend)
    state = seg.state
    assert isinstance(state, OrtStreamState) and len(state.arrays) == cfg.key_frames + 1
    arrays = list(state.arrays)
    ptrs = [a.ctypes.data for a in arrays]
    written = []
    for f in video(10, seed=5):
        _, _, out = state.ring.bindings()
        seg.process(f)
        written.append(out)
        assert np.abs(state.arrays[out]).sum() > 0  # the engine wrote this frame's keys/values into its slot
    assert [a.ctypes.data for a in state.arrays] == ptrs and all(a is b for a, b in zip(arrays, state.arrays,
                                                                                        strict=True))
    assert state.ring.order == written[::-1][:cfg.key_frames]  # nearest first
    seg.reset()
    assert seg.fill == 0 and [a.ctypes.data for a in state.arrays] == ptrs


def test_baseline_graph_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = STTConfig(model="bise18", input_height=H, input_width=W, num_classes=11)
    model = build_model(cfg).eval()
    export_step(model, cfg, tmp_path / "b.onnx", with_logits=True)
    ob = create_backend(cfg.replace(backend="onnxruntime", weights=str(tmp_path / "b.onnx")))
    tb = create_backend(cfg, model)
    seg_o, seg_t = StreamingSegmenter(ob), StreamingSegmenter(tb)
    for f in video(3, seed=4):
        a, b = seg_t.process(f, return_logits=True), seg_o.process(f, return_logits=True)
        np.testing.assert_allclose(b.logits, a.logits, rtol=1e-3, atol=1e-3)
        assert (a.mask == b.mask).mean() >= 0.999
    assert seg_o.fill == 0 and seg_o.capacity == 0


def test_graph_without_logits_refuses_return_logits(tmp_path: Path) -> None:
    cfg = STTConfig(model="bise18", input_height=32, input_width=64)
    export_step(build_model(cfg).eval(), cfg, tmp_path / "b.onnx")
    seg = StreamingSegmenter(create_backend(cfg.replace(backend="onnxruntime", weights=str(tmp_path / "b.onnx"))))
    frame = video(1, 32, 64)[0]
    assert seg.process(frame).mask.shape == (32, 64)
    with pytest.raises(ValueError, match="--logits"):
        seg.process(frame, return_logits=True)


# ---------------------------------------------------------------------------- errors
def test_graph_exported_for_other_settings_is_refused(exported, tmp_path: Path) -> None:
    cfg, _, path = exported
    with pytest.raises(ConfigError) as err:
        create_backend(cfg.replace(backend="onnxruntime", weights=str(path), key_frames=3, query_ratio=0.25,
                                   attn_affinity="l2"))
    msg = str(err.value)
    assert "key_frames: graph 7, config 3" in msg and "query_ratio" in msg and "memory_3" in msg
    assert "attn_affinity: graph 'dot', config 'l2'" in msg
    assert "stt-export" in msg
    with pytest.raises(ConfigError, match="input 'image' is uint8\\[1, 64, 128, 3\\], config needs"):
        create_backend(cfg.replace(backend="onnxruntime", weights=str(path), input_width=256))
    # a graph without metadata is still checked by its inputs and outputs
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ConfigError, match="unexpected input 'memory_3'"):
        create_backend(cfg.replace(backend="onnxruntime", weights=str(bare), key_frames=3))


def test_missing_graph_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not available without an exported graph.*stt-export"):
        create_backend(STTConfig(backend="onnxruntime", input_height=H, input_width=W))
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'm.onnx'} does not exist.*--weights {ckpt}"):
        create_backend(STTConfig(backend="onnxruntime", weights=str(ckpt), input_height=H, input_width=W))
    with pytest.raises(ConfigError, match="does not exist"):
        create_backend(STTConfig(backend="onnxruntime", weights=str(tmp_path / "x.onnx")))
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(ConfigError, match="cannot load"):
        create_backend(STTConfig(backend="onnxruntime", weights=str(tmp_path / "bad.onnx")))
    with pytest.raises(ConfigError, match="not a torch model"):
        create_backend(STTConfig(backend="onnxruntime"), build_model(STTConfig(model="bise18")))
    with pytest.raises(ConfigError, match="backend=auto takes no options"):
        create_backend(STTConfig(backend="auto"), threads=2)
    with pytest.raises(ConfigError, match="backend=torch takes only batch_frames"):
        create_backend(STTConfig(backend="torch"), threads=2)


def test_provider_preference() -> None:
    all_eps = [TRT_EP, CUDA_EP, CPU_EP]
    assert [n for n, _ in choose_providers("cpu", all_eps)] == [CPU_EP]
    chosen = choose_providers("cuda:1", all_eps, cache_dir="/tmp/c")
    assert [n for n, _ in chosen] == [TRT_EP, CUDA_EP, CPU_EP]
    assert chosen[0][1] == {"device_id": 1, "trt_fp16_enable": False, "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": "/tmp/c"}
    assert [n for n, _ in choose_providers("cuda", [CUDA_EP, CPU_EP])] == [CUDA_EP, CPU_EP]
    assert choose_providers("cuda", all_eps, precision="fp16")[0][1]["trt_fp16_enable"] is True
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        choose_providers("cuda", [CPU_EP])
    with pytest.raises(ConfigError, match="fp16 .* needs the TensorRT provider"):
        choose_providers("cuda", [CUDA_EP, CPU_EP], precision="fp16")
    with pytest.raises(ConfigError, match="not available in this build"):
        choose_providers("cpu", [CPU_EP], requested=[CUDA_EP])
    with pytest.raises(ConfigError, match="cpu, cuda or cuda:N"):
        choose_providers("mps", all_eps)


def test_gpu_device_without_gpu_provider_is_refused(exported) -> None:
    import onnxruntime as ort

    if set(ort.get_available_providers()) & {TRT_EP, CUDA_EP}:
        pytest.skip("this onnxruntime has a GPU provider")
    cfg, _, path = exported
    with pytest.raises(ConfigError, match="no GPU provider"):
        create_backend(cfg.replace(backend="onnxruntime", weights=str(path), device="cuda"))


def test_slot_ring_never_binds_the_output_slot_as_an_input() -> None:
    ring = SlotRing(3)
    history = []
    for step in range(9):
        inputs, valid, out = ring.bindings()
        assert len(inputs) == 3 and out not in inputs
        assert valid == [k < min(len(history), 3) for k in range(3)]
        assert inputs[:ring.fill] == ring.order
        ring.commit(out)
        history.append(out)
        if step == 5:
            ring.reset()
            history = []
        assert ring.order == history[::-1][:3]
    assert len(set(history)) <= 4  # T + 1 slots in all


def test_metadata_records_the_config(exported) -> None:
    _, _, path = exported
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    saved = json.loads(meta["stt_ros.config"])
    assert saved["model"] == "stt_bise18" and saved["input_height"] == H and saved["key_frames"] == 7
    assert meta["stt_ros.format"] == "stt_ros.step/1" and meta["stt_ros.with_logits"] == "1"
