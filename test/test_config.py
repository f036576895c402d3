"""STTConfig: defaults from the paper, validation with clear messages, YAML mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from stt_ros.config import ConfigError, STTConfig, load_config, read_config_file

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_papers_best_rows() -> None:
    cfg = STTConfig()
    assert (cfg.key_frames, cfg.key_window_start, cfg.key_window_end, cfg.key_window_step) == (7, 1, 5, 1)
    assert (cfg.query_radius, cfg.query_ratio) == (5, 0.5)
    assert cfg.model == "stt_bise18" and cfg.temporal and not cfg.replace(model="bise18").temporal


@pytest.mark.parametrize(("change", "message"), [
    ({"model": "stt_bise50"}, "not a zoo model"),
    ({"query_radius": 4}, "odd"),
    ({"query_ratio": 1.5}, "out of range"),
    ({"input_height": 500}, "multiple of 32"),
    ({"attn_dim": 30, "attn_heads": 4}, "divisible"),
    ({"backend": "tflite"}, "choose one of"),
    ({"key_window_start": 4, "key_window_end": 2}, "key_window_end"),
    ({"key_frames": 2.5}, "integer"),
    ({"precision": "int8"}, "tensorrt"),
    ({"precision": "int8", "backend": "onnxruntime"}, "int8 is not available with backend=onnxruntime; it needs "
                                                      "backend=tensorrt or openvino"),
    ({"precision": "bf16", "backend": "tensorrt"}, "bf16 is not available with backend=tensorrt; it needs "
                                                   "backend=torch or openvino"),
    ({"precision": "fp16", "backend": "openvino"}, "fp16 is not available with backend=openvino"),
    ({"precision": "fp8"}, "choose one of"),
    ({"std": (0.2, 0.0, 0.2)}, "positive"),
    ({"openvino_streams": 2, "backend": "torch"}, "openvino_streams=2 applies to backend=openvino only"),
    ({"openvino_streams": 0, "backend": "openvino"}, "out of range"),
])
def test_invalid_values_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        STTConfig(**change)


@pytest.mark.parametrize(("backend", "precision"), [
    ("openvino", "bf16"), ("openvino", "int8"), ("openvino", "auto"), ("torch", "bf16"), ("torch", "auto"),
    ("auto", "auto"), ("auto", "int8"), ("auto", "bf16"), ("tensorrt", "int8"), ("onnxruntime", "fp16"),
])
def test_backend_precision_pairs_that_run(backend: str, precision: str) -> None:
    """auto (backend or precision) is kept in the config: the backend resolves it and says what runs."""
    cfg = STTConfig(backend=backend, precision=precision)
    assert (cfg.backend, cfg.precision) == (backend, precision)
    assert STTConfig().backend == "torch" and STTConfig().precision == "fp32"  # the library's reference


def test_yaml_roundtrip_and_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: stt_psp18\nquery_ratio: 0.25\nmean: [0.5, 0.5, 0.5]\n")
    cfg = load_config(str(path))
    assert cfg.model == "stt_psp18" and cfg.query_ratio == 0.25 and cfg.mean == (0.5, 0.5, 0.5)
    assert STTConfig.from_dict(cfg.to_dict()) == cfg
    path.write_text("modle: stt_psp18\n")
    with pytest.raises(ConfigError, match="unknown config key.*modle"):
        load_config(str(path))
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"))


def test_config_file_is_a_flat_mapping_or_a_ros_params_file(tmp_path: Path) -> None:
    """stt-export/stt-tensorrt --config: the model fields of config/stt.yaml (the node's other
    parameters skipped), or a flat YAML with load_config's checks."""
    shipped = read_config_file(ROOT / "config" / "stt.yaml")
    assert isinstance(shipped, STTConfig)
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    model: bise18\n    camera_topics: [/a]\n    query_ratio: 0.25\n")
    assert read_config_file(params) == STTConfig(model="bise18", query_ratio=0.25)
    flat = tmp_path / "flat.yaml"
    flat.write_text("model: stt_psp18\n")
    assert read_config_file(flat) == load_config(str(flat))
    flat.write_text("modle: stt_psp18\n")
    with pytest.raises(ConfigError, match="unknown config key.*modle"):
        read_config_file(flat)
    flat.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_config_file(flat)
