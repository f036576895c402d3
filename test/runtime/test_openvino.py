"""The OpenVINO backend beyond the shared BackendTester (test_backends.TestOpenVINO): the demo model
from its checkpoint equals torch, the compiled-model cache (rebuilt when weights, precision, input
size, OpenVINO version or, for a checkpoint, the exporter differ; a damaged file rebuilt with one
warning; where it lives), the argmax rewrite, bf16 only where the CPU has it, int8 by NNCF; torch
bf16; and what ``backend: auto`` picks."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from stt_ros.config import ConfigError, STTConfig, load_config, resolve_weights
from stt_ros.runtime import create_backend, factory
from stt_testing.backend_tester import StepGraph, compare_streams, step_graph, video  # noqa: F401 (the fixture)

ov = pytest.importorskip("openvino")
from stt_ros.runtime import openvino_backend  # noqa: E402 (needs openvino)

ROOT = Path(__file__).resolve().parents[2]
DEMO_YAML = ROOT / "models" / "stt_bise18_synthdrive.yaml"
LOG = "stt_ros.runtime.openvino_backend"


def cpu_has_bf16() -> bool:
    return "BF16" in openvino_backend.cpu_capabilities(ov.Core())


@pytest.fixture(scope="module")
def demo() -> STTConfig:
    if not DEMO_YAML.is_file():
        pytest.skip("models/stt_bise18_synthdrive.yaml is missing")
    return resolve_weights(load_config(str(DEMO_YAML)), DEMO_YAML)


@pytest.fixture(scope="module")
def demo_frames(demo: STTConfig) -> list[np.ndarray]:
    """20 consecutive held-out SynthDrive frames at the demo model's size."""
    from stt_train.synthdrive.config import SynthDriveConfig
    from stt_train.synthdrive.dataset import render_sequence

    sd = SynthDriveConfig(height=demo.input_height, width=demo.input_width, frames=20, supersample=1)
    return [f.image for f in render_sequence(sd, seed=5, split="val")]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ov_demo_cache")  # never models/: the checkout stays clean


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The ONNX graphs the backend converts (one per build; empty when the cache served)."""
    seen: list[Path] = []
    convert = openvino_backend.convert_onnx

    def spy(ov_module, path, precision="fp32"):  # noqa: ANN001, ANN202
        seen.append(Path(path))
        return convert(ov_module, path, precision)

    monkeypatch.setattr(openvino_backend, "convert_onnx", spy)
    return seen


@pytest.fixture
def graph_copy(step_graph: StepGraph, tmp_path: Path) -> Path:  # noqa: F811
    path = tmp_path / "stt.onnx"
    shutil.copy(step_graph.path, path)
    return path


def ov_config(graph: StepGraph, path: Path, **changes) -> STTConfig:  # noqa: ANN003
    return graph.config.replace(backend="openvino", weights=str(path), **changes)


# ---------------------------------------------------------------------------- accuracy
def test_demo_model_from_its_checkpoint_equals_torch(demo: STTConfig, demo_frames: list[np.ndarray],
                                                     demo_cache: Path) -> None:
    backend = create_backend(demo.replace(backend="openvino"), cache_dir=demo_cache)
    assert backend.name == "openvino" and backend.precision == "fp32" and backend.from_checkpoint
    res = compare_streams(create_backend(demo), backend, demo_frames, reset_at=10)
    assert res["fills"] == [min(i, demo.key_frames) for i in range(10)] * 2
    assert res["mask"] >= 0.999 and res["logits_close"] >= 0.999, res


def test_a_checkpoints_cached_model_is_rebuilt_when_the_exporter_changes(
        demo: STTConfig, demo_cache: Path, builds: list[Path], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint's graph comes from the model and exporter code, not from a file: the cache key holds a
    fingerprint of that code, so a changed export formulation is rebuilt, not served stale."""
    cfg = demo.replace(backend="openvino")
    create_backend(cfg, cache_dir=demo_cache)  # built by the test above or now
    n = len(builds)
    create_backend(cfg, cache_dir=demo_cache)
    assert len(builds) == n  # served from the cache
    monkeypatch.setattr(openvino_backend, "exporter_fingerprint", lambda: "another exporter")
    with caplog.at_level(logging.INFO, logger=LOG):
        create_backend(cfg, cache_dir=demo_cache)
    assert len(builds) == n + 1 and "built for other inputs: exporter" in caplog.text
    assert "corrupt" not in caplog.text


def test_bf16_stays_close_to_fp32_on_the_demo_model(demo: STTConfig, demo_frames: list[np.ndarray],
                                                    demo_cache: Path) -> None:
    if not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 (AVX512-BF16 or AMX) for OpenVINO")
    backend = create_backend(demo.replace(backend="openvino", precision="bf16"), cache_dir=demo_cache)
    assert backend.precision == "bf16"
    res = compare_streams(create_backend(demo), backend, demo_frames, reset_at=10, rtol=0.1, atol=0.5)
    assert res["mask"] >= 0.98, res


def test_torch_bf16_stays_close_to_fp32_on_the_demo_model(demo: STTConfig, demo_frames: list[np.ndarray]) -> None:
    from stt_ros.runtime import torch_backend

    if torch_backend.cpu_bf16_feature() is None:
        pytest.skip("this CPU has neither AVX512-BF16 nor AMX-BF16")
    backend = create_backend(demo.replace(precision="bf16"))
    assert backend.precision == "bf16" and backend.bf16
    res = compare_streams(create_backend(demo), backend, demo_frames, reset_at=10, rtol=0.1, atol=0.5)
    assert res["mask"] >= 0.98, res


@pytest.mark.slow
def test_int8_by_nncf_on_image_folder_frames(demo: STTConfig, demo_frames: list[np.ndarray], tmp_path: Path,
                                             builds: list[Path]) -> None:
    """int8 calibrated on an image folder (the shared calibration reader), cached with the frames in its key."""
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(demo_frames[:8]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    cfg = demo.replace(backend="openvino", precision="int8")
    backend = create_backend(cfg, cache_dir=tmp_path, calib_source=folder, calib_frames=8)
    assert backend.precision == "int8" and len(builds) == 1
    res = compare_streams(create_backend(demo), backend, demo_frames, reset_at=10, rtol=1.0, atol=2.0)
    # NNCF's TRANSFORMER model type: worst frame 99.6 % of the pixels, logits within 1.2 (the CNN type,
    # which quantizes the attention's additive masks: 97.1 %, 5.9)
    assert res["mask"] >= 0.99 and res["max_abs"] < 3.0, res
    create_backend(cfg, cache_dir=tmp_path, calib_source=folder, calib_frames=8)
    assert len(builds) == 1  # served from the cache
    cv2.imwrite(str(folder / "000.png"), np.zeros((8, 8, 3), np.uint8))
    create_backend(cfg, cache_dir=tmp_path, calib_source=folder, calib_frames=8)
    assert len(builds) == 2  # other calibration frames: quantized again


# ---------------------------------------------------------------------------- the cache
def test_cache_is_reused_and_rebuilt_when_the_weights_change(step_graph: StepGraph, graph_copy: Path,  # noqa: F811
                                                             builds: list[Path]) -> None:
    import onnx
    from onnx import numpy_helper

    cfg = ov_config(step_graph, graph_copy)
    first = create_backend(cfg)
    assert len(builds) == 1 and first.cache_path.parent == graph_copy.parent  # beside the weights
    frame = video(1)[0]
    expected = first.infer(frame, first.create_state(), return_logits=True).logits
    again = create_backend(cfg)
    assert len(builds) == 1
    np.testing.assert_array_equal(again.infer(frame, again.create_state(), return_logits=True).logits, expected)
    proto = onnx.load(str(graph_copy))
    init = next(i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 4)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(proto, str(graph_copy))
    changed = create_backend(cfg)
    assert len(builds) == 2
    assert not np.array_equal(changed.infer(frame, changed.create_state(), return_logits=True).logits, expected)


def test_cache_is_rebuilt_for_another_precision_or_input_size(step_graph: StepGraph, graph_copy: Path,  # noqa: F811
                                                              tmp_path: Path, builds: list[Path]) -> None:
    from stt_train.export import export_step

    create_backend(ov_config(step_graph, graph_copy))
    assert len(builds) == 1
    if cpu_has_bf16():
        create_backend(ov_config(step_graph, graph_copy, precision="bf16"))
        assert len(builds) == 2
    n = len(builds)
    small = step_graph.config.replace(input_height=64, input_width=64)
    other = tmp_path / "other" / "stt.onnx"
    other.parent.mkdir()
    export_step(step_graph.model, small, other, with_logits=True, query_chunk=40)
    backend = create_backend(small.replace(backend="openvino", weights=str(other)), cache_dir=graph_copy.parent)
    assert len(builds) == n + 1 and "64x64" in backend.cache_path.name
    assert sorted(p.name for p in graph_copy.parent.glob("*.blob")) == sorted(
        [f"stt.fp32.64x128.ov{openvino_backend.openvino_version(ov).split('-')[0]}.blob", backend.cache_path.name]
        + ([f"stt.bf16.64x128.ov{openvino_backend.openvino_version(ov).split('-')[0]}.blob"] if n == 2 else []))


def test_streams_reuse_the_cache_and_run_requests_side_by_side(step_graph: StepGraph, graph_copy: Path,  # noqa: F811
                                                                builds: list[Path],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """openvino_streams is how the compiled model runs, not what it computes: the cached model serves it (no
    rebuild), once on every core and once on that many CPU streams; cameras stepped together run on the
    latter, a camera stepped alone (infer, or infer_many of one) on the former, with the same masks as the
    latency configuration (fp32; OpenVINO splits the work by threads, not the sums)."""
    latency = create_backend(ov_config(step_graph, graph_copy))
    with caplog.at_level(logging.INFO, logger=LOG):
        streams = create_backend(ov_config(step_graph, graph_copy, openvino_streams=2))
    assert len(builds) == 1 and latency.streams == 1 and streams.streams == 2 and latency.side_by_side is None
    assert "cameras stepped together on 2 streams (requests side by side)" in caplog.text
    assert int(streams.side_by_side.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) == 2
    assert int(streams.compiled.get_property("NUM_STREAMS")) == 1
    assert streams.side_by_side.get_property("ENABLE_CPU_PINNING") is False  # the node's threads share the cores
    frames = video(3)
    states = [streams.create_state() for _ in range(2)]
    streams.infer_many(frames[:2], states)
    assert all(st.request is st.requests[1] for st in states)  # side by side
    streams.infer_many(frames[2:], states[:1])
    assert states[0].request is states[0].requests[0]  # alone: every core
    got = compare_streams(latency, streams, video(12), reset_at=6)
    assert got["mask"] == 1.0 and got["max_abs"] == 0.0, got


def test_cache_is_rebuilt_for_another_openvino_version(step_graph: StepGraph, graph_copy: Path,  # noqa: F811
                                                       builds: list[Path], monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    cfg = ov_config(step_graph, graph_copy)
    real = openvino_backend.openvino_version(ov)
    create_backend(cfg)
    monkeypatch.setattr(openvino_backend, "openvino_version", lambda _ov: real.split("-")[0] + "-another-build")
    with caplog.at_level(logging.INFO, logger=LOG):
        create_backend(cfg)  # same file name (same release), other build in the header
    assert len(builds) == 2 and "built for other inputs: openvino" in caplog.text
    monkeypatch.setattr(openvino_backend, "openvino_version", lambda _ov: "2099.1.0-future")
    assert "ov2099.1.0" in create_backend(cfg).cache_path.name and len(builds) == 3


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_cache_file_is_rebuilt_with_one_warning(step_graph: StepGraph, graph_copy: Path,  # noqa: F811
                                                          builds: list[Path], caplog: pytest.LogCaptureFixture,
                                                          damage: str) -> None:
    cfg = ov_config(step_graph, graph_copy)
    backend = create_backend(cfg)
    frame = video(1)[0]
    expected = backend.infer(frame, backend.create_state(), return_logits=True).logits
    data = backend.cache_path.read_bytes()
    backend.cache_path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\0" * 1000, "empty": b""}[damage])
    with caplog.at_level(logging.INFO, logger=LOG):
        rebuilt = create_backend(cfg)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "corrupt cache file" in warnings[0].getMessage(), caplog.text
    assert len(builds) == 2
    np.testing.assert_array_equal(rebuilt.infer(frame, rebuilt.create_state(), return_logits=True).logits, expected)
    caplog.clear()
    create_backend(cfg)
    assert len(builds) == 2 and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_cache_goes_to_the_user_cache_dir_when_the_weights_folder_is_read_only(
        step_graph: StepGraph, graph_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(openvino_backend, "folder_writable", lambda folder: False)
    with caplog.at_level(logging.INFO, logger=LOG):
        backend = create_backend(ov_config(step_graph, graph_copy))
    assert backend.cache_path.parent == tmp_path / "xdg" / "stt_ros" / "openvino"
    assert backend.cache_path.is_file() and "in the user cache dir" in caplog.text
    assert not list(graph_copy.parent.glob("*.blob"))


# ---------------------------------------------------------------------------- bf16 capability
def test_a_cpu_without_bf16_runs_fp32_on_auto_and_refuses_bf16(step_graph: StepGraph, graph_copy: Path,  # noqa: F811
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from stt_ros.runtime import torch_backend

    monkeypatch.setattr(openvino_backend, "cpu_capabilities", lambda core: ["FP32", "INT8", "EXPORT_IMPORT"])
    with caplog.at_level(logging.INFO, logger=LOG):
        backend = create_backend(ov_config(step_graph, graph_copy, precision="auto"))
    assert backend.precision == "fp32" and "no bf16" in caplog.text
    with pytest.raises(ConfigError, match="precision=bf16 needs a CPU with AVX512-BF16 or AMX-BF16; .* lacks it"):
        create_backend(ov_config(step_graph, graph_copy, precision="bf16"))

    monkeypatch.setattr(torch_backend, "cpu_bf16_feature", lambda: None)
    assert create_backend(step_graph.config.replace(precision="auto"), step_graph.model).precision == "fp32"
    with pytest.raises(ConfigError, match="needs a CPU with AVX512-BF16 or AMX-BF16; this CPU has neither"):
        create_backend(step_graph.config.replace(precision="bf16"), step_graph.model)


def test_auto_precision_picks_bf16_where_the_cpu_has_it(step_graph: StepGraph, graph_copy: Path,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from stt_ros.runtime import torch_backend

    monkeypatch.setattr(torch_backend, "cpu_bf16_feature", lambda: "AMX-BF16")
    backend = create_backend(step_graph.config.replace(precision="auto"), step_graph.model)
    assert backend.precision == "bf16" and backend.config.precision == "auto"
    assert openvino_backend.resolve_precision("auto", ["FP32", "BF16"])[0] == "bf16"
    with pytest.raises(ConfigError, match="not fp16"):
        openvino_backend.resolve_precision("fp16", ["FP32", "BF16"])


# ---------------------------------------------------------------------------- backend: auto
def test_backend_auto_picks_tensorrt_then_openvino_then_torch(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    installed = {"tensorrt", "openvino", "onnxruntime"}
    gpus = [1]
    monkeypatch.setattr(factory, "module_available", lambda name: name in installed)
    monkeypatch.setattr(factory, "cuda_device_count", lambda: gpus[0])
    onnx = tmp_path / "stt.onnx"
    onnx.write_bytes(b"")
    ckpt = tmp_path / "m.safetensors"
    cfg = STTConfig(backend="auto", precision="auto")

    def pick(**changes) -> tuple[str, str, str]:  # noqa: ANN003
        got, why = factory.resolve_auto(cfg.replace(**changes))
        return got.backend, got.device, why

    assert pick(weights=str(onnx))[:2] == ("tensorrt", "cuda")
    assert pick(weights=str(onnx), device="cuda:1")[:2] == ("tensorrt", "cuda:1")
    backend, _, why = pick(weights=str(ckpt))  # a checkpoint without an .onnx beside it: TensorRT cannot build
    assert backend == "openvino" and "no exported graph" in why
    assert pick(weights=str(onnx), precision="bf16")[0] == "openvino"  # TensorRT's backend runs no bf16
    gpus[0] = 0
    backend, _, why = pick(weights=str(onnx))
    assert backend == "openvino" and "tensorrt: no CUDA device" in why
    installed.discard("openvino")
    assert pick(weights=str(onnx))[0] == "onnxruntime"
    backend, _, why = pick(weights=str(ckpt))
    assert backend == "torch" and "openvino: not installed" in why
    assert pick()[0] == "torch"
    with pytest.raises(ConfigError, match="precision=int8 needs tensorrt or openvino"):
        pick(weights=str(ckpt), precision="int8")
    installed.add("openvino")
    assert pick()[0] == "torch"  # random weights: nothing to convert
    assert factory.resolve_auto(cfg, with_model=True)[0].backend == "torch"


def test_backend_auto_runs_openvino_here_and_says_so(step_graph: StepGraph, graph_copy: Path,  # noqa: F811
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(factory, "module_available", lambda name: name != "tensorrt")
    with caplog.at_level(logging.INFO, logger="stt_ros.runtime.factory"):
        backend = create_backend(step_graph.config.replace(backend="auto", weights=str(graph_copy)))
    assert backend.name == "openvino" and backend.config.backend == "openvino"
    assert "backend=auto: running openvino (tensorrt: not installed; openvino is installed (CPU))" in caplog.text


# ---------------------------------------------------------------------------- graph rewrites
@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_argmax_rewrite_gives_the_same_indices_ties_included(opset: int, keepdims: int) -> None:
    """OpenVINO gets the class argmax as reductions (decompose_argmax): the same indices as ArgMax in
    onnxruntime, the first one on ties, on both the attribute (opset 17) and input (18) forms of axes."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 6, 7])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, 1, 6, 7] if keepdims else [1, 6, 7])
    graph = helper.make_graph([helper.make_node("ArgMax", ["x"], ["y"], name="am", axis=1, keepdims=keepdims)],
                              "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert openvino_backend.decompose_argmax(rewritten) == 1
    assert "ArgMax" not in {n.op_type for n in rewritten.graph.node}
    onnx.checker.check_model(rewritten, full_check=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 3, (1, 5, 6, 7)).astype(np.float32)  # few values: many ties
    data[0, :, 0, 0] = 2.0  # all equal: index 0
    got = {}
    for name, m in (("argmax", model), ("rewritten", rewritten)):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        got[name] = sess.run(None, {"x": data})[0]
    np.testing.assert_array_equal(got["rewritten"], got["argmax"])
    assert got["argmax"].dtype == got["rewritten"].dtype == np.int64
    expected = data.argmax(1)
    np.testing.assert_array_equal(got["argmax"].reshape(expected.shape), expected)
    compiled = ov.Core().compile_model(_ov_from_proto(rewritten), "CPU")
    np.testing.assert_array_equal(compiled(data)[0].reshape(expected.shape), expected)


def test_argmax_rewrite_reaches_the_exported_step_graph_in_fp32_only(step_graph: StepGraph) -> None:  # noqa: F811
    """The exported graph's ArgMax reads a Resize whose class count only shape inference with data
    propagation knows: the rewrite must find it there (fp32), and leave it to OpenVINO's TopK in bf16."""
    import onnx

    assert openvino_backend.decompose_argmax(onnx.load(str(step_graph.path))) == 1
    ops = {p: [n.get_type_name() for n in openvino_backend.convert_onnx(ov, step_graph.path, p).get_ops()]
           for p in ("fp32", "bf16")}
    assert "ReduceMin" in ops["fp32"] and "ReduceMin" not in ops["bf16"]
    assert ops["bf16"].count("TopK") == ops["fp32"].count("TopK") + 1  # the argmax; the rest: query selection


def _ov_from_proto(proto) -> object:  # noqa: ANN001
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:  # the rewritten graph through OpenVINO's own ONNX reader
        path = Path(tmp) / "g.onnx"
        onnx.save(proto, str(path))
        return ov.convert_model(str(path))
