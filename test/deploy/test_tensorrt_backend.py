"""TensorRT backend: engine-cache naming and rebuild decision, calibration sources and the install
error run everywhere; the end-to-end engine test needs a GPU and tensorrt and skips without them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stt_ros.config import ConfigError, STTConfig
from stt_ros.runtime import create_backend
from stt_ros.runtime.calibration import calibration_descriptor, calibration_images
from stt_ros.runtime.tensorrt_cache import (
    EngineKey,
    engine_cache_path,
    file_sha256,
    gpu_slug,
    rebuild_reason,
    sidecar_path,
    write_plan,
)
from stt_testing.trt_emulation import tensorrt_gpu_skip_reason

GPU_SKIP = tensorrt_gpu_skip_reason()


def key(**changes: str) -> EngineKey:
    base = {"onnx_sha256": "ab" * 32, "precision": "fp16", "gpu": "NVIDIA A40", "compute_capability": "8.6",
            "tensorrt": "10.3.0", "calibration": ""}
    return EngineKey(**{**base, **changes})


def test_cache_name_encodes_precision_gpu_and_version(tmp_path: Path) -> None:
    onnx = tmp_path / "models" / "stt_bise18.onnx"
    assert engine_cache_path(onnx, "fp16", "NVIDIA A40", "10.3.0") == \
        tmp_path / "models" / "stt_bise18.fp16.nvidia-a40.trt10.3.0.plan"
    assert engine_cache_path(onnx, "int8", "NVIDIA GeForce RTX 4090", "10.13.0.35").name == \
        "stt_bise18.int8.nvidia-geforce-rtx-4090.trt10.13.0.35.plan"
    assert gpu_slug("Orin (nvgpu)") == "orin-nvgpu" and gpu_slug("???") == "gpu"
    names = {engine_cache_path(onnx, p, g, v).name for p in ("fp16", "int8") for g in ("A40", "H100")
             for v in ("10.0.1", "10.3.0")}
    assert len(names) == 8  # every combination gets its own file


def test_rebuild_decision(tmp_path: Path) -> None:
    plan = tmp_path / "m.fp16.nvidia-a40.trt10.3.0.plan"
    assert "no cached plan" in rebuild_reason(plan, key())
    plan.write_bytes(b"plan")
    assert "missing or unreadable" in rebuild_reason(plan, key())  # a plan without its sidecar
    write_plan(plan, b"engine bytes", key(), {"config": "{}"})
    assert plan.read_bytes() == b"engine bytes"
    assert rebuild_reason(plan, key()) is None
    for field, value in (("onnx_sha256", "cd" * 32), ("precision", "int8"), ("gpu", "NVIDIA H100"),
                         ("compute_capability", "9.0"), ("tensorrt", "10.4.0"), ("calibration", "frames")):
        reason = rebuild_reason(plan, key(**{field: value}))
        assert reason is not None and field in reason and value in reason
    sidecar_path(plan).write_text("{not json")
    assert "unreadable" in rebuild_reason(plan, key())
    assert sorted(p.name for p in tmp_path.iterdir()) == [plan.name, plan.name + ".json"]  # no temp files


def test_onnx_hash_changes_with_the_file(tmp_path: Path) -> None:
    f = tmp_path / "m.onnx"
    f.write_bytes(b"graph v1")
    h1 = file_sha256(f)
    f.write_bytes(b"graph v2")
    assert file_sha256(f) != h1 and len(h1) == 64
    saved = json.loads(json.dumps(key(onnx_sha256=h1).__dict__))
    assert saved["onnx_sha256"] == h1


def test_calibration_frames_from_a_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(4)]
    for i, img in enumerate(imgs):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    got = list(calibration_images(tmp_path, limit=3))
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, imgs, strict=False))  # RGB, in order
    d1 = calibration_descriptor(tmp_path, 3)
    assert calibration_descriptor(tmp_path, 3) == d1
    cv2.imwrite(str(tmp_path / "frame_001.png"), np.zeros((5, 5, 3), np.uint8))
    assert calibration_descriptor(tmp_path, 3) != d1  # another frame: recalibrate
    with pytest.raises(ConfigError, match="holds no images"):
        list(calibration_images(tmp_path / "frame_000.png"))
    with pytest.raises(ConfigError, match="does not exist"):
        list(calibration_images(tmp_path / "missing"))


def test_calibration_frames_from_a_bag(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    t = ts.types
    bag = tmp_path / "drive"
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for _ in range(3)]
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cams = {topic: writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=ts)
                for topic in ("/cam/rgb", "/cam/labels")}
        for i, img in enumerate(frames):
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id="c")
            bgr = np.ascontiguousarray(img[..., ::-1])
            msg = t["sensor_msgs/msg/Image"](header=header, height=6, width=8, encoding="bgr8", is_bigendian=0,
                                             step=24, data=bgr.reshape(-1))
            writer.write(cams["/cam/rgb"], i * 10**8, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            writer.write(cams["/cam/labels"], i * 10**8, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    with pytest.raises(ConfigError, match="several image topics"):
        list(calibration_images(bag))
    got = list(calibration_images(bag, limit=2, topic="/cam/rgb"))
    assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, frames, strict=False))
    assert "frames<=2" in calibration_descriptor(bag, 2)


def test_calibration_frames_from_a_compressed_bag_file_as_bag_evaluation_reads_them(tmp_path: Path) -> None:
    """A bare .mcap of CompressedImage (read by stt_ros.bag's BagSource, decoded by runtime.images):
    undecodable frames are skipped, not fatal."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    t = ts.types
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for _ in range(3)]
    payloads = [cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].reshape(-1) for f in frames]
    payloads.insert(1, np.frombuffer(b"not a png", np.uint8))
    with Writer(tmp_path / "drive", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cam = writer.add_connection("/cam/compressed", "sensor_msgs/msg/CompressedImage", typestore=ts)
        for i, data in enumerate(payloads):
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id="c")
            msg = t["sensor_msgs/msg/CompressedImage"](header=header, format="png", data=data)
            writer.write(cam, i * 10**8, ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
    mcap = next((tmp_path / "drive").glob("*.mcap"))
    got = list(calibration_images(mcap, limit=10))
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, frames, strict=True))
    with pytest.raises(ConfigError, match="no image topic /other"):
        list(calibration_images(mcap, topic="/other"))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_selecting_tensorrt_without_it_says_what_to_install(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    cfg = STTConfig(backend="tensorrt", precision="int8", device="cuda", weights=str(onnx))
    with pytest.raises(ConfigError, match=r"not installed: `pip install 'tensorrt>=10,<12' cuda-python`"):
        create_backend(cfg)
    with pytest.raises(ConfigError, match="set device=cuda"):
        create_backend(cfg.replace(device="cpu"))
    # the package itself never imports tensorrt
    import subprocess
    import sys

    code = ("import sys, stt_ros.runtime, stt_ros.runtime.tensorrt_backend, stt_ros.runtime.onnx_backend\n"
            "print(any(m.split('.')[0] in ('tensorrt', 'pycuda', 'cuda') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.slow
@pytest.mark.skipif(GPU_SKIP is not None, reason=f"TensorRT end-to-end needs a GPU and tensorrt: {GPU_SKIP}")
def test_tensorrt_engine_matches_torch_and_caches(tmp_path: Path) -> None:  # pragma: no cover - GPU machines
    from stt_ros.model.zoo import build_model
    from stt_ros.runtime import StreamingSegmenter
    from stt_ros.runtime.tensorrt_backend import TensorRTBackend
    from stt_train.export import export_step

    torch.manual_seed(0)
    cfg = STTConfig(model="stt_bise18", input_height=128, input_width=256)
    model = build_model(cfg).eval()
    path = tmp_path / "stt.onnx"
    export_step(model, cfg, path, with_logits=True)
    trt_cfg = cfg.replace(backend="tensorrt", device="cuda", precision="fp32", weights=str(path))
    built = TensorRTBackend(trt_cfg, build_only=True)
    assert built.plan_path.is_file() and sidecar_path(built.plan_path).is_file()
    mtime = built.plan_path.stat().st_mtime_ns
    for cuda_graph in (False, True):
        backend = TensorRTBackend(trt_cfg, cuda_graph=cuda_graph)
        assert backend.plan_path.stat().st_mtime_ns == mtime  # cached plan reused
        st, sr = StreamingSegmenter(create_backend(cfg, model)), StreamingSegmenter(backend)
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (128, 256 + 60, 3), dtype=np.uint8)
        for i in range(12):
            if i == 8:
                st.reset()
                sr.reset()
            f = np.ascontiguousarray(base[:, 5 * i:5 * i + 256])
            a, b = st.process(f, return_logits=True), sr.process(f, return_logits=True)
            assert a.buffer_fill == b.buffer_fill
            assert (a.mask == b.mask).mean() >= 0.999
            assert np.isclose(a.logits, b.logits, rtol=1e-2, atol=1e-2).mean() >= 0.999
    path.write_bytes(path.read_bytes())  # same content: same hash, no rebuild
    assert TensorRTBackend(trt_cfg, build_only=True).plan_path.stat().st_mtime_ns == mtime


# ---------------------------------------------------------------------------- emulated TensorRT runtime
# The backend's own code on a CPU emulation of the TensorRT/cuda-python calls (see trt_emulation.py):
# cache and rebuild flow, calibrator, ring binding, CUDA-graph keying. Results come from onnxruntime
# running the same graph, so they must equal the torch backend's like the onnxruntime backend's do.
EH, EW, ET = 64, 128, 3


@pytest.fixture(scope="module")
def small_graph(tmp_path_factory: pytest.TempPathFactory):
    from stt_ros.model.zoo import build_model
    from stt_train.export import export_step

    torch.manual_seed(0)
    cfg = STTConfig(model="stt_bise18", input_height=EH, input_width=EW, key_frames=ET)
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("trt") / "stt.onnx"
    export_step(model, cfg, path, with_logits=True)
    return cfg, model, path


#: the TensorRT majors the emulated tests run on; each emulates that major's API (trt_emulation)
VERSIONS = ("10.0.0", "11.0.0")


@pytest.fixture(params=VERSIONS, ids=lambda v: f"trt{v.split('.')[0]}")
def trt_version(request: pytest.FixtureRequest) -> str:
    return request.param


def emulate(monkeypatch: pytest.MonkeyPatch, version: str = "10.0.0", devices: int = 1):
    from stt_ros.runtime import tensorrt_backend
    from stt_testing import trt_emulation

    cudart = trt_emulation.FakeCudart(devices)
    trt = trt_emulation.make_fake_tensorrt(cudart, version)
    monkeypatch.setattr(tensorrt_backend, "import_tensorrt", lambda: (trt, cudart))
    return trt, cudart


def clip(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (EH, EW + 4 * n, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[:, 4 * i:4 * i + EW]) for i in range(n)]


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_emulated_engine_caches_its_plan(small_graph, monkeypatch, cuda_graph: bool, trt_version: str) -> None:
    """Stream parity with torch (across a reset, with and without CUDA graphs) is the shared backend
    test (test/runtime/test_backends.py); here the fp16 plan is built once, from the fp16 graph on a
    strongly typed network (no precision flags: 11 has none), with a timing cache, and then reused."""
    from stt_ros.runtime import StreamingSegmenter
    from stt_ros.runtime.tensorrt_backend import TensorRTBackend
    from stt_ros.runtime.tensorrt_build import timing_cache_path

    cfg, _, path = small_graph
    trt, cudart = emulate(monkeypatch, trt_version)
    trt_cfg = cfg.replace(backend="tensorrt", device="cuda", precision="fp16", weights=str(path))
    backend = create_backend(trt_cfg, cuda_graph=cuda_graph)
    assert backend.plan_path == path.with_name(f"stt.fp16.emulated-gpu.trt{trt_version}.plan")
    json_meta = json.loads(sidecar_path(backend.plan_path).read_text())
    assert json_meta["onnx_sha256"] == file_sha256(path) and json_meta["gpu"] == "Emulated GPU"
    builds = len(trt.builds)
    assert builds <= 1 and (builds == 0 or trt.builds[-1] == {"strongly_typed": True, "flags": [], "graph": "fp16"})
    assert path.with_name("stt.fp16.onnx").is_file() and timing_cache_path(backend.plan_path).is_file()
    seg = StreamingSegmenter(backend)
    for f in clip(5):
        out = seg.process(f, return_logits=True)
    assert out.logits.dtype == np.float32 and np.isfinite(out.logits).all()  # fp16 inside, fp32 at the edges
    state = TensorRTBackend(trt_cfg, cuda_graph=cuda_graph).create_state()
    assert len(state.slots) == ET + 1 and len({s.ptr for s in state.slots}) == ET + 1
    assert len(trt.builds) == builds  # the cached plan was reused, not rebuilt
    if cuda_graph:
        assert cudart.launches > 0


def test_emulated_rebuild_reuses_the_timing_cache(small_graph, monkeypatch, tmp_path: Path, trt_version: str) -> None:
    from stt_ros.runtime.tensorrt_backend import TensorRTBackend
    from stt_ros.runtime.tensorrt_build import timing_cache_path

    cfg, _, path = small_graph
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(path.read_bytes())
    trt, _ = emulate(monkeypatch, trt_version)
    trt_cfg = cfg.replace(backend="tensorrt", device="cuda", precision="fp32", weights=str(onnx))
    plan = TensorRTBackend(trt_cfg, build_only=True).plan_path
    TensorRTBackend(trt_cfg, build_only=True, rebuild=True)
    assert trt.timing_caches == [b"", b"timed;"]  # the second build started from the first one's timings
    assert timing_cache_path(plan).read_bytes() == b"timed;timed;"
    assert trt.builds[0] == {"strongly_typed": True, "flags": [], "graph": "fp32"}


def test_emulated_engine_binds_slots_without_copies(small_graph, monkeypatch, trt_version: str) -> None:
    from stt_ros.runtime import StreamingSegmenter

    cfg, _, path = small_graph
    _, cudart = emulate(monkeypatch, trt_version)
    backend = create_backend(cfg.replace(backend="tensorrt", device="cuda", weights=str(path)), cuda_graph=True)
    seg = StreamingSegmenter(backend)
    frames = clip(12, seed=2)
    seg.process(frames[0])
    mallocs, ptrs = cudart.mallocs, [s.ptr for s in seg.state.slots]
    for f in frames[1:]:
        _, _, out = seg.state.ring.bindings()
        seg.process(f)
        addresses = seg.state.context.addresses
        assert addresses["new_memory"] == seg.state.slots[out].ptr  # written straight into its slot
        assert [addresses[f"memory_{k}"] for k in range(seg.state.fill - 1)] == \
            [seg.state.slots[s].ptr for s in seg.state.ring.order[1:]]  # bound nearest first
    assert cudart.mallocs == mallocs and [s.ptr for s in seg.state.slots] == ptrs  # nothing allocated per frame
    assert len(seg.state.graphs) <= 2 * ET + 2  # one CUDA graph per binding pattern
    assert cudart.launches == len(frames)  # every step ran from a graph (a new pattern: captured first)


def test_emulated_cache_rebuilds_for_version_and_onnx_changes(small_graph, monkeypatch, tmp_path: Path) -> None:
    from stt_ros.model.zoo import build_model
    from stt_ros.runtime.tensorrt_backend import TensorRTBackend
    from stt_ros.runtime.tensorrt_cuda import EngineError
    from stt_train.export import export_step

    cfg, _, path = small_graph
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(path.read_bytes())
    trt_cfg = cfg.replace(backend="tensorrt", device="cuda", precision="fp32", weights=str(onnx))
    trt, _ = emulate(monkeypatch, "10.0.0")
    first = TensorRTBackend(trt_cfg, build_only=True)
    assert first.engine is None and len(trt.builds) == 1
    with pytest.raises(EngineError, match="build_only"):
        first.create_state()
    TensorRTBackend(trt_cfg, build_only=True)
    assert len(trt.builds) == 1  # up to date
    torch.manual_seed(1)
    export_step(build_model(cfg).eval(), cfg, onnx, with_logits=True)  # other weights: other hash
    TensorRTBackend(trt_cfg, build_only=True)
    assert len(trt.builds) == 2
    TensorRTBackend(trt_cfg, build_only=True, rebuild=True)
    assert len(trt.builds) == 3
    plan_10_0 = first.plan_path
    trt, _ = emulate(monkeypatch, "10.1.0")  # another TensorRT: its own cache file
    newer = TensorRTBackend(trt_cfg, build_only=True)
    assert newer.plan_path.name == "m.fp32.emulated-gpu.trt10.1.0.plan" and len(trt.builds) == 1
    with pytest.raises(EngineError, match="built with TensorRT 10.0.0, this is 10.1.0"):
        TensorRTBackend(trt_cfg.replace(weights=str(plan_10_0)))
    trt, _ = emulate(monkeypatch, "11.4.0.106")  # and across majors
    assert TensorRTBackend(trt_cfg, build_only=True).plan_path.name == "m.fp32.emulated-gpu.trt11.4.0.106.plan"
    with pytest.raises(EngineError, match="built with TensorRT 10.0.0, this is 11.4.0.106"):
        TensorRTBackend(trt_cfg.replace(weights=str(plan_10_0)))
    sidecar_path(plan_10_0).unlink()  # no sidecar: TensorRT itself refuses the plan
    with pytest.raises(EngineError, match="cannot load"):
        TensorRTBackend(trt_cfg.replace(weights=str(plan_10_0)))


def test_emulated_errors_before_building(small_graph, monkeypatch) -> None:
    from stt_ros.runtime.tensorrt_backend import TensorRTBackend
    from stt_ros.runtime.tensorrt_cuda import EngineError

    cfg, _, path = small_graph
    trt, _ = emulate(monkeypatch, devices=0)
    with pytest.raises(EngineError, match="needs an NVIDIA GPU"):
        TensorRTBackend(cfg.replace(backend="tensorrt", device="cuda", weights=str(path)))
    trt, _ = emulate(monkeypatch)
    with pytest.raises(EngineError, match="has 1 GPU"):
        TensorRTBackend(cfg.replace(backend="tensorrt", device="cuda:2", weights=str(path)))
    with pytest.raises(ConfigError, match="key_frames: graph 3, config 4"):
        TensorRTBackend(cfg.replace(backend="tensorrt", device="cuda", weights=str(path), key_frames=4))
    assert trt.builds == []  # refused before any build


def test_emulated_int8_builds_a_qdq_graph_calibrated_on_real_memory(small_graph, monkeypatch, tmp_path: Path,
                                                                     trt_version: str) -> None:
    from stt_ros.runtime.tensorrt_backend import TensorRTBackend

    cfg, model, path = small_graph
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(path.read_bytes())
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(clip(5, seed=3)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    trt, _ = emulate(monkeypatch, trt_version)
    calls = []
    from stt_ros.runtime import onnx_backend

    real_infer = onnx_backend.OnnxRuntimeBackend.infer
    monkeypatch.setattr(onnx_backend.OnnxRuntimeBackend, "infer",
                        lambda self, image, state, return_logits=False: calls.append(state.fill)
                        or real_infer(self, image, state, return_logits))
    trt_cfg = cfg.replace(backend="tensorrt", device="cuda", precision="int8", weights=str(onnx))
    backend = TensorRTBackend(trt_cfg, calib_source=frames, calib_frames=4)
    assert trt.builds == [{"strongly_typed": True, "flags": [], "graph": "int8"}]  # explicit quantization
    assert calls[:4] == [0, 1, 2, 3]  # each calibration frame saw the previous frames' memory (T=3 caps at 3)
    qdq = tmp_path / "m.int8.onnx"
    import onnx as onnx_lib

    ops = {n.op_type for n in onnx_lib.load(str(qdq)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    seg_out = backend.infer(clip(1)[0], backend.create_state())
    assert seg_out.class_map.shape == (EH, EW)
    TensorRTBackend(trt_cfg)  # at run time, without frames: the cached int8 plan is used
    assert len(trt.builds) == 1
    cv2.imwrite(str(frames / "000.png"), np.zeros((EH, EW, 3), np.uint8))
    mtime = qdq.stat().st_mtime_ns
    TensorRTBackend(trt_cfg, calib_source=frames, calib_frames=4)  # other frames: recalibrate
    assert len(trt.builds) == 2 and qdq.stat().st_mtime_ns != mtime
    TensorRTBackend(trt_cfg, rebuild=True)  # rebuilding without frames: from the Q/DQ graph of the same source
    assert len(trt.builds) == 3
    qdq.unlink()
    with pytest.raises(ConfigError, match="needs calibration frames"):
        TensorRTBackend(trt_cfg, rebuild=True)


def test_version_gate_names_the_installed_version_and_what_is_supported() -> None:
    from stt_ros.runtime.tensorrt_cuda import check_version

    for ok in ("10.0.1", "10.16.1.11", "11.4.0.106"):
        check_version(ok)
    for bad, extra in (("9.3.0", ""), ("12.0.0", "newer than this stt_ros knows"), ("x", "cannot read")):
        with pytest.raises(ConfigError, match="TensorRT 10.x or 11.x") as info:
            check_version(bad)
        assert bad in str(info.value) and extra in str(info.value)


def test_import_errors_say_which_library_is_missing() -> None:
    from stt_ros.runtime.tensorrt_cuda import import_error_message, missing_library

    exc = ImportError("libnvonnxparser.so.11: cannot open shared object file: No such file or directory")
    assert missing_library(exc) == "libnvonnxparser.so.11"
    msg = import_error_message(exc)
    assert "installed but its library libnvonnxparser.so.11 cannot be loaded" in msg and "not installed" not in msg
    assert missing_library(OSError("libnvinfer.so.10: cannot open shared object file")) == "libnvinfer.so.10"
    gone = ModuleNotFoundError("No module named 'tensorrt'", name="tensorrt")
    assert "which is not installed" in import_error_message(gone)
    other = ImportError("tensorrt_bindings/tensorrt.so: undefined symbol: getPluginRegistry")
    assert "import tensorrt` failed" in import_error_message(other) or "cannot be loaded" in import_error_message(other)


def test_stt_tensorrt_reports_user_errors_without_a_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    from stt_ros.runtime import tensorrt_backend, tensorrt_cli

    def no_tensorrt() -> None:
        raise ConfigError("backend=tensorrt: TensorRT 12.0.0 is installed; supported: TensorRT 10.x or 11.x")

    monkeypatch.setattr(tensorrt_backend, "import_tensorrt", no_tensorrt)
    assert tensorrt_cli.main(["--onnx", str(tmp_path / "missing.onnx"), "--build-only"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stt-tensorrt: error:") and "Traceback" not in err and "12.0.0" in err


def test_emulated_precision_auto_runs_fp32_and_says_so(small_graph, monkeypatch, caplog) -> None:
    """The node's default precision (auto) on TensorRT: the fp32 engine, logged, until fp16's accuracy
    is measured on a GPU; onnxruntime's auto is its fp32 too (the start-up line prints what runs)."""
    cfg, _, path = small_graph
    emulate(monkeypatch)
    with caplog.at_level("INFO", logger="stt_ros"):
        backend = create_backend(cfg.replace(backend="tensorrt", device="cuda", precision="auto", weights=str(path)))
    assert backend.precision == backend.config.precision == "fp32"
    assert backend.plan_path.name.startswith("stt.fp32.")
    assert "precision=auto runs fp32" in caplog.text
    ort_backend = create_backend(cfg.replace(backend="onnxruntime", precision="auto", weights=str(path)))
    assert ort_backend.precision == ort_backend.config.precision == "fp32"
