"""Every backend passes the shared :class:`stt_testing.backend_tester.BackendTester`: stream parity
with torch across a reset, refusal of bad inputs without touching the state, and isolation of two
cameras sharing one backend. A new backend adds a subclass here (see the tester's docstring)."""

from __future__ import annotations

import pytest

from stt_ros.runtime import Backend, create_backend
from stt_testing.backend_tester import BackendTester, StepGraph, step_graph  # noqa: F401 (the fixture)


class TestTorch(BackendTester):
    """torch on the CPU one camera after the other in infer_many (``batch_frames=1``, what a CPU runs
    at 512x1024 and above): bit-identical to each camera stepped alone."""

    def make_backend(self, graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        backend = create_backend(graph.config, graph.model, batch_frames=1)
        assert backend.batching == "sequential"
        return backend


class TestTorchBatched(BackendTester):
    """torch's batched infer_many (a GPU's, and a CPU's at small inputs), two frames per batch: the
    tester's three cameras go as a batch of two and a lone frame, each camera's temporal transformer
    against its own ring buffer."""

    # oneDNN's convolutions are not batch-invariant (features differ by ~3e-5 in fp32 between batch 4
    # and batch 1), so batched results match to the streaming tolerances, not bit for bit
    batch_exact = False

    def make_backend(self, graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        backend = create_backend(graph.config, graph.model, batch_frames=2)
        assert backend.batching == "batched"
        return backend


class TestOnnxRuntime(BackendTester):
    requires = ("onnxruntime",)

    def make_backend(self, graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        return create_backend(graph.config.replace(backend="onnxruntime", weights=str(graph.path)))


class TestOpenVINO(BackendTester):
    """OpenVINO's CPU plugin in fp32 on the same graph (compiled once, cached beside it)."""

    requires = ("openvino",)

    def make_backend(self, graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        return create_backend(graph.config.replace(backend="openvino", weights=str(graph.path)))


class TestOpenVINOStreams(TestOpenVINO):
    """The same with two CPU streams (``openvino_streams: 2``): infer_many's requests run side by side,
    each on one core, and must still give what each camera stepped alone gives."""

    def make_backend(self, graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        backend = create_backend(graph.config.replace(backend="openvino", weights=str(graph.path), openvino_streams=2))
        assert backend.streams == 2
        return backend


class TestTensorRTEmulated(BackendTester):
    """The TensorRT backend's own code on the CPU emulation of TensorRT and cuda-python
    (stt_testing.trt_emulation): the "engine" is onnxruntime running the same graph."""

    requires = ("onnxruntime",)
    cuda_graph = False

    def make_backend(self, graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        from stt_ros.runtime import tensorrt_backend
        from stt_testing import trt_emulation

        cudart = trt_emulation.FakeCudart()
        trt = trt_emulation.make_fake_tensorrt(cudart)
        request.getfixturevalue("monkeypatch").setattr(tensorrt_backend, "import_tensorrt", lambda: (trt, cudart))
        # fp32: parity with torch is an fp32 property; an fp16 engine now runs the fp16 graph (strong
        # typing), whose emulated build and run are test/deploy/test_tensorrt_backend.py's
        cfg = graph.config.replace(backend="tensorrt", device="cuda", precision="fp32", weights=str(graph.path))
        return create_backend(cfg, cuda_graph=self.cuda_graph)


class TestTensorRTEmulatedCudaGraphs(TestTensorRTEmulated):
    """The same with every binding pattern captured into a (emulated) CUDA graph and replayed."""

    cuda_graph = True


class TestTensorRTOnGPU(BackendTester):
    """The real TensorRT backend (fp32 engine built from the same graph); GPU machines only."""

    logits_rtol = logits_atol = 1e-2  # TensorRT's fp32 kernels (TF32 off by default) sum in other orders

    def make_backend(self, graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        from stt_testing.trt_emulation import tensorrt_gpu_skip_reason

        reason = tensorrt_gpu_skip_reason()
        if reason is not None:
            pytest.skip(f"the real TensorRT backend needs a GPU and tensorrt: {reason}")
        cfg = graph.config.replace(backend="tensorrt", device="cuda", precision="fp32", weights=str(graph.path))
        return create_backend(cfg)


@pytest.mark.parametrize(("size", "frames"), [((512, 1024), 1), ((1024, 2048), 1), ((256, 512), 2), ((128, 256), 8)])
def test_torch_on_a_cpu_batches_only_what_fits_its_pixel_budget(size: tuple[int, int], frames: int) -> None:
    """On a CPU torch's infer_many batches at most CPU_BATCH_PIXELS (512x1024 cameras one after the other,
    where a batch of 4 ran at 0.66-0.95x the throughput); a negative batch size is refused."""
    from stt_ros.config import ConfigError, STTConfig
    from stt_ros.runtime.torch_backend import CPU_BATCH_PIXELS

    cfg = STTConfig(model="bise18", input_height=size[0], input_width=size[1])
    backend = create_backend(cfg)
    assert backend.batch_frames == frames and frames * size[0] * size[1] <= max(CPU_BATCH_PIXELS, size[0] * size[1])
    assert backend.batching == ("sequential" if frames == 1 else "batched")
    assert create_backend(cfg, batch_frames=0).batching == "batched"  # 0: every frame in one batch
    with pytest.raises(ConfigError, match="batch_frames=-1"):
        create_backend(cfg, batch_frames=-1)
