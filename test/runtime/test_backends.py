"""Every backend passes the shared :class:`stt_testing.backend_tester.BackendTester`: stream parity
with torch across a reset, refusal of bad inputs without touching the state, and isolation of two
cameras sharing one backend. A new backend adds a subclass here (see the tester's docstring)."""

from __future__ import annotations

import pytest

from stt_ros.runtime import Backend, create_backend
from stt_testing.backend_tester import BackendTester, StepGraph, step_graph  # noqa: F401 (the fixture)


class TestTorch(BackendTester):
    # batched cameras run the per-frame network as one batch, and oneDNN's convolutions are not
    # batch-invariant (features differ by ~3e-5 in fp32 between batch 4 and batch 1)
    batch_exact = False

    def make_backend(self, graph: StepGraph, request: pytest.FixtureRequest) -> Backend:
        return create_backend(graph.config, graph.model)


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
