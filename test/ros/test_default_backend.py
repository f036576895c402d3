"""What a user gets without choosing: stt_node runs ``backend: auto`` and ``precision: auto``.

The node's parameters and the shipped config/stt.yaml default to auto (stt_ros.ros.settings.
NODE_MODEL_DEFAULTS); the library (STTConfig: stt-eval, training, export) keeps torch/fp32. A model
YAML that records only the library's torch/fp32 (as every YAML stt_train.release writes) leaves the
node on auto. The real node, started with nothing but the shipped params file and a checkpoint,
runs what stt_ros.runtime.factory.resolve_auto picks on this machine and says so, with the reason,
in its start-up line; its masks are that backend's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from stt_ros.config import STTConfig
from stt_ros.runtime import StreamingSegmenter, create_backend
from stt_ros.runtime.factory import resolve_auto
from stt_testing.node_harness import ROOT, Client, NodeProcess, image_msg, random_weights, textured_frames

pytestmark = pytest.mark.ros

NET = {"model": "stt_bise18", "input_height": 64, "input_width": 128, "key_frames": 2}


def test_node_defaults_are_auto_and_the_library_keeps_torch_fp32() -> None:
    from stt_ros.ros.params import all_fields

    defaults = {f.name: default for owner, f, default in all_fields() if owner is STTConfig}
    assert (defaults["backend"], defaults["precision"]) == ("auto", "auto")
    shipped = yaml.safe_load((ROOT / "config" / "stt.yaml").read_text())["/**"]["ros__parameters"]
    assert (shipped["backend"], shipped["precision"]) == ("auto", "auto")
    assert (STTConfig().backend, STTConfig().precision) == ("torch", "fp32")  # stt-eval's reproducible numbers
    # every other model parameter defaults as the library does
    assert STTConfig(**{**defaults, "backend": "torch", "precision": "fp32"}) == STTConfig()


@pytest.fixture
def ros_context():  # noqa: ANN201
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


def declared_config(context, **overrides) -> STTConfig:  # noqa: ANN001, ANN003
    """The STTConfig an stt_node's parameters give with these -p style overrides (in-process node)."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from stt_ros.ros.params import declare_parameters, read_settings

    node = Node("stt_node", context=context,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    try:
        declare_parameters(node)
        return read_settings(node)[1]
    finally:
        node.destroy_node()


@pytest.mark.parametrize(("in_yaml", "overrides", "runs"), [
    ({"backend": "torch", "precision": "fp32"}, {}, ("auto", "auto")),  # the library's pair: no choice
    ({"backend": "torch", "precision": "fp32"}, {"backend": "torch"}, ("torch", "auto")),  # a parameter wins
    ({"backend": "torch", "precision": "fp32"}, {"precision": "fp32"}, ("auto", "fp32")),
    ({"backend": "torch", "precision": "bf16"}, {}, ("torch", "bf16")),  # a YAML's own choice is kept
    ({"backend": "onnxruntime", "precision": "fp32"}, {}, ("onnxruntime", "fp32")),
])
def test_model_config_leaves_the_node_on_auto_unless_it_chose(ros_context, tmp_path: Path, in_yaml: dict,
                                                              overrides: dict, runs: tuple) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"")  # only its path is read here
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**STTConfig(**NET, **in_yaml).to_dict(), "weights": "m.safetensors"}))
    cfg = declared_config(ros_context, model_config=str(path), **overrides)
    assert (cfg.backend, cfg.precision) == runs
    assert (cfg.input_width, cfg.key_frames, cfg.weights) == (128, 2, str(tmp_path / "m.safetensors"))


def start_default_node(tmp_path: Path, domain: int, **params) -> NodeProcess:  # noqa: ANN003
    """stt_node on the shipped config/stt.yaml and ``params``, neither of which sets backend or precision."""
    assert "backend" not in params and "precision" not in params
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        **NET, "camera_names": ["cam"], "camera_topics": ["/cam/image"], "input_reliability": "reliable", **params}}}))
    proc = NodeProcess(path, domain)
    assert proc.wait_for_line("cameras:", 120), proc.output
    return proc


def startup_line(proc: NodeProcess) -> str:
    return next(line for line in proc.lines if "cameras: cam <- /cam/image" in line)


def test_the_default_node_runs_and_logs_what_auto_picks(tmp_path: Path, dds_isolation: int) -> None:
    """With a checkpoint: OpenVINO on this CPU where it is installed (else torch), in the precision the
    backend picks; the start-up line names both and why, and the masks are that backend's."""
    from sensor_msgs.msg import Image

    weights = random_weights(tmp_path / "stt.safetensors", STTConfig(**NET), seed=11)
    proc = start_default_node(tmp_path, dds_isolation, weights=str(weights))
    client = Client(dds_isolation)
    try:
        cfg = STTConfig(**NET, backend="auto", precision="auto", weights=str(weights))
        picked, why = resolve_auto(cfg)
        backend = create_backend(cfg)  # what the node must be running (OpenVINO: its cache, built by the node)
        assert backend.name == picked.backend
        if importlib_available("openvino"):
            assert backend.name == "openvino", why
        precision = getattr(backend, "precision", backend.config.precision)
        assert precision in ("fp32", "bf16")
        line = startup_line(proc)
        assert (f"stt_bise18 ({backend.name}, {precision}, cpu (backend=auto: {why}; precision=auto: "
                f"{precision} on this machine)) at 64x128, T=2") in line, proc.output
        client.subscribe(Image, "/cam/mask")
        pub = client.publisher(Image, "/cam/image")
        assert client.wait_matched("/cam/image"), proc.output
        frames = textured_frames(3, 64, 128, seed=5)
        for i, rgb in enumerate(frames):
            pub.publish(image_msg(rgb, 10 + 0.1 * i, "cam"))
            assert client.wait(lambda i=i: len(client.messages("/cam/mask")) > i, 30), proc.output
        seg = StreamingSegmenter(backend)
        for i, msg in enumerate(client.messages("/cam/mask")):
            mask = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :msg.width]
            np.testing.assert_array_equal(mask, seg.process(frames[i]).mask, err_msg=f"frame {i}")
    finally:
        client.close()
        assert proc.stop() == 0, proc.output


def test_the_default_node_without_weights_runs_torch(tmp_path: Path, dds_isolation: int) -> None:
    """Random initialisation: nothing for OpenVINO or TensorRT to convert, so auto runs torch, and
    precision auto is bf16 autocast where the CPU has it."""
    import torch

    from stt_ros.runtime.torch_backend import resolve_precision

    proc = start_default_node(tmp_path, dds_isolation)
    try:
        _, why = resolve_auto(STTConfig(**NET, backend="auto", precision="auto"))
        assert why.endswith("torch runs anywhere")
        precision, _ = resolve_precision("auto", torch.device("cpu"))
        assert (f"stt_bise18 (torch, {precision}, cpu (backend=auto: {why}; precision=auto: {precision} on this "
                f"machine)) at 64x128, T=2, weights: random") in startup_line(proc), proc.output
    finally:
        assert proc.stop() == 0, proc.output


def importlib_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
