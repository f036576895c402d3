"""ONNX export of the streaming step: frame-validity masking, the static formulation, the graph's
TensorRT rules (operator list, TopK K <= 3840), the stt-export CLI and its atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from stt_ros.config import STTConfig
from stt_ros.model.stt import (
    EXPORT_LAYOUTS,
    TOPK_LIMIT,
    ExportLayout,
    SparseTemporalTransformer,
    key_half_widths,
    tile_tables,
)
from stt_ros.model.zoo import StreamingStepGraph, build_model
from stt_testing.stt_inputs import make_memory
from stt_train import export as export_mod
from stt_train.export import ExportError, export_step, graph_problems, main, topk_ks

H, W = 64, 128

# Operators marked supported ("Y") in onnx-tensorrt's docs/operators.md, the ONNX parser's support
# matrix. The stored copy of that page (onnx/onnx-tensorrt, commit 6d0ab7be) is the TensorRT 8.5
# edition; TensorRT 10's edition (opsets 9..20) only adds operators to it (e.g. LayerNormalization,
# GroupNormalization, BF16/INT4/FP8 types), so a graph within this list parses on TensorRT 8.5 and 10.
_TENSORRT_OPS_TABLE = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum
Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSwish HardSigmoid Identity If ImageScaler
InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul
Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
"""
TENSORRT_ONNX_OPS = frozenset(_TENSORRT_OPS_TABLE.split())
#: The page's restrictions that an exported graph could break.
RESIZE_MODES = {"nearest", "linear"}
RESIZE_TRANSFORMS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


# ---------------------------------------------------------------------------- validity mask
@pytest.mark.parametrize("fill", [0, 1, 2, 3, 4])
def test_masked_frames_equal_passing_fewer_frames(fill: int) -> None:
    torch.manual_seed(0)
    c, h, w, t = 12, 9, 14, 4
    stt = SparseTemporalTransformer(c, key_frames=t, query_ratio=0.5, attn_dim=8, heads=2).double().eval()
    feat = torch.randn(1, c, h, w, dtype=torch.float64)
    memory = make_memory(stt.float(), t, c, h, w).double()
    stt.double()
    order = [2, 0, 3, 1]
    valid = torch.tensor([k < fill for k in range(t)])
    with torch.no_grad():
        masked = stt(feat, memory, order, valid=valid)
        fewer = stt(feat, memory, order[:fill])
        static = stt.forward_frames(feat, [memory[:, s] for s in order], valid, query_chunk=7)
    # a masked key's weight is exactly 0, but the product then sums over more terms, in an order that depends
    # on the CPU's kernels: equal to the bit on one machine, an ulp or two apart (4e-16) on another
    torch.testing.assert_close(masked, fewer, rtol=0, atol=1e-13)
    torch.testing.assert_close(static, fewer, rtol=1e-12, atol=1e-12)
    if fill == 0:
        assert torch.equal(masked, feat) and torch.equal(static, feat)  # no valid key: features kept
    else:
        assert not torch.allclose(masked, feat)


@pytest.mark.parametrize("affinity", ["dot", "l2"])
def test_static_formulation_matches_with_full_ratio_and_all_fills(affinity: str) -> None:
    """query_ratio=1 (no top-k) and every fill level, chunk sizes that do not divide N."""
    torch.manual_seed(1)
    c, h, w, t = 10, 5, 8, 3
    stt = SparseTemporalTransformer(c, key_frames=t, window_start=1, window_end=2, query_ratio=1.0, attn_dim=8,
                                    heads=2, affinity=affinity).double().eval()
    feat = torch.randn(1, c, h, w, dtype=torch.float64)
    memory = make_memory(stt.float(), t, c, h, w).double()
    stt.double()
    with torch.no_grad():
        for fill in range(t + 1):
            valid = torch.tensor([k < fill for k in range(t)])
            ref = stt(feat, memory, list(range(fill)))
            for chunk in (1, 13, 1000):
                got = stt.forward_frames(feat, [memory[:, k] for k in range(t)], valid, query_chunk=chunk)
                torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_model_step_frames_equals_step() -> None:
    torch.manual_seed(0)
    cfg = STTConfig(model="stt_bise18", input_height=H, input_width=W, key_frames=3)
    model = build_model(cfg).eval()
    images = torch.randn(4, 1, 3, H, W)
    with torch.no_grad():
        kvs = [model.step(images[i], None, [])[1] for i in range(3)]
        memory = torch.stack(kvs, 1)  # slots 0..2 = frames 0..2
        ref, ref_kv = model.step(images[3], memory, [2, 1])
        frames = [kvs[2], kvs[1], torch.zeros_like(kvs[0])]
        got, kv = model.step_frames(images[3], frames, torch.tensor([True, True, False]), query_chunk=50)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(kv, ref_kv)


# ---------------------------------------------------------------------------- the exported graph
@pytest.fixture(scope="module", params=[("dot", "portable"), ("l2", "portable"), ("dot", "openvino"),
                                        ("l2", "openvino")], ids="-".join)
def small_export(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, STTConfig]:
    torch.manual_seed(0)
    affinity, layout = request.param
    cfg = STTConfig(model="stt_bise18", input_height=H, input_width=W, attn_affinity=affinity)
    path = tmp_path_factory.mktemp("export") / "stt64.onnx"
    export_step(build_model(cfg).eval(), cfg, path, with_logits=True, query_chunk=24, layout=layout)
    return path, cfg


def layout_of(path: Path) -> ExportLayout:
    return EXPORT_LAYOUTS[{p.key: p.value for p in onnx.load(str(path)).metadata_props}["stt_ros.layout"]]


def assert_tensorrt_compatible(proto: onnx.ModelProto) -> None:
    unsupported = sorted({n.op_type for n in proto.graph.node if n.op_type not in TENSORRT_ONNX_OPS})
    assert not unsupported, f"operators outside TensorRT's ONNX parser list: {unsupported}"
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    for node in proto.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Resize":
            assert attrs["mode"].s.decode() in RESIZE_MODES
            assert attrs["coordinate_transformation_mode"].s.decode() in RESIZE_TRANSFORMS
        if node.op_type in ("ScatterND", "ScatterElements") and "reduction" in attrs:
            assert attrs["reduction"].s.decode() == "none"
    # TopK: K must be an initializer / Constant and <= 3840
    ks = topk_ks(proto)
    assert ks and None not in ks and max(ks) <= TOPK_LIMIT, ks
    assert proto.opset_import[0].version <= 20  # TensorRT 10 parses opsets 9..20


def test_graph_passes_checker_and_tensorrt_rules(small_export: tuple[Path, STTConfig]) -> None:
    path, cfg = small_export
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert_tensorrt_compatible(proto)
    assert graph_problems(proto) == []
    names = [i.name for i in proto.graph.input]
    assert names == ["image"] + [f"memory_{k}" for k in range(cfg.key_frames)] + ["frame_valid"]
    assert [o.name for o in proto.graph.output] == ["class_map", "new_memory", "logits"]
    dims = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in proto.graph.input}
    assert dims["image"] == [1, H, W, 3] and dims["memory_3"] == [1, 2, (H // 8) * (W // 8), 32]
    assert dims["frame_valid"] == [cfg.key_frames]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert '"key_frames": 7' in meta["stt_ros.config"]
    assert f'"attn_affinity": "{cfg.attn_affinity}"' in meta["stt_ros.config"]
    assert meta["stt_ros.layout"] in EXPORT_LAYOUTS
    # one TopK per query tile with exactly that tile's share (here a single tile: the global top-k)
    assert topk_ks(proto) == [round(0.5 * (H // 8) * (W // 8))]


def test_exported_attention_is_the_tiled_matmul(small_export: tuple[Path, STTConfig]) -> None:
    """The graph computes the attention per query tile: MatMuls of (heads, tiles, t*t, K) logits with K the
    tile's key blocks over all T frames, and the key blocks come from Gathers of a static table (one for
    keys, one for values per chunk of tiles; one of whole key|value rows in the openvino layout), not one
    gathered window per selected query."""
    path, cfg = small_export
    layout = layout_of(path)
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    halves = tuple(key_half_widths(cfg.key_frames, cfg.key_window_start, cfg.key_window_end, cfg.key_window_step))
    fh, fw, t = H // 8, W // 8, layout.tile
    tab = tile_tables(fh, fw, halves, t)
    n_tiles, n_keys = tab.tiles_y * tab.tiles_x, tab.keys(cfg.key_frames)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in proto.graph.value_info}
    logits = [shapes.get(n.output[0]) for n in proto.graph.node if n.op_type == "MatMul"]
    tiled = [s for s in logits if s and s[-2:] == [t * t, n_keys]]
    step = max(1, 24 // (t * t))  # the fixture's query_chunk=24, in whole tiles
    assert len(tiled) == -(-n_tiles // step), logits
    assert all(s[0] == cfg.attn_heads for s in tiled)
    row = cfg.attn_dim // cfg.attn_heads * (2 if layout.joint_kv else 1)
    gathers = [n for n in proto.graph.node if n.op_type == "Gather"
               and shapes.get(n.output[0], [0])[-2:] == [step * n_keys, row]]
    # keys and values of each chunk (the l2 affinity gathers its key norms too)
    assert len(gathers) >= (1 if layout.joint_kv else 2) * -(-n_tiles // step)


def test_graph_problems_catches_broken_rules() -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5000])
    k_big = helper.make_tensor("k", TensorProto.INT64, [1], [4000])
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="big"),
             helper.make_node("TopK", ["x", "dyn"], ["v2", "i2"], name="dynamic"),
             helper.make_node("ScatterND", ["x", "idx", "upd"], ["s"], name="acc", reduction="add")]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("v", "v2", "s")]
    graph = helper.make_graph(nodes, "g", [x], outs, initializer=[k_big])
    problems = graph_problems(helper.make_model(graph))
    assert any("K=4000 > 3840" in p for p in problems)
    assert any("'dynamic': K is not a constant" in p for p in problems)
    assert any("reduction=add" in p for p in problems)
    assert any("shape is not static" in p for p in problems)


def test_baseline_graph_has_image_in_class_map_out(tmp_path: Path) -> None:
    cfg = STTConfig(model="bise18", input_height=H, input_width=W, num_classes=11)
    result = export_step(build_model(cfg).eval(), cfg, tmp_path / "b.onnx")
    assert [n for n, *_ in result.inputs] == ["image"] and [n for n, *_ in result.outputs] == ["class_map"]
    proto = onnx.load(str(tmp_path / "b.onnx"))
    assert not {n.op_type for n in proto.graph.node} - TENSORRT_ONNX_OPS


@pytest.mark.slow
def test_full_size_export_keeps_every_topk_within_tensorrt_limit(tmp_path: Path) -> None:
    """The real stt_bise18 at 1024x2048 (a 128x256 map: 16384 queries at TR=0.5) exports with five
    tiles of at most 3840 queries each; export only, nothing runs."""
    torch.manual_seed(0)
    cfg = STTConfig(model="stt_bise18", input_height=1024, input_width=2048)
    path = tmp_path / "stt_1024.onnx"
    result = export_step(build_model(cfg).eval(), cfg, path)
    proto = onnx.load(str(path), load_external_data=False)
    assert_tensorrt_compatible(proto)
    assert len(result.topk_ks) == 5 and sum(result.topk_ks) == 16384 and max(result.topk_ks) <= TOPK_LIMIT
    assert dict((n, s) for n, s, _ in result.inputs)["memory_0"] == (1, 2, 128 * 256, 32)


# ---------------------------------------------------------------------------- CLI
def test_cli_maps_yaml_and_flags_onto_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    yml = tmp_path / "cfg.yaml"
    yml.write_text(yaml.safe_dump({"model": "stt_bise18", "key_frames": 3, "input_height": 96, "num_classes": 11}))
    out = tmp_path / "nested" / "m.onnx"
    assert main(["--config", str(yml), "--input-height", str(H), "--input-width", str(W), "--output", str(out),
                 "--logits", "--query-chunk", "16"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "memory_2" in text and "TopK K per query tile: [64]" in text
    proto = onnx.load(str(out))
    inputs = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in proto.graph.input}
    assert inputs["image"] == [1, H, W, 3] and "memory_3" not in inputs  # flag beat the YAML, T=3 from YAML
    logits = next(o for o in proto.graph.output if o.name == "logits")
    assert logits.type.tensor_type.shape.dim[1].dim_value == 11
    assert [p.name for p in tmp_path.joinpath("nested").iterdir()] == ["m.onnx"]  # no temp file left
    assert {p.key: p.value for p in proto.metadata_props}["stt_ros.layout"] == "portable"  # the default
    ov_out = tmp_path / "ov.onnx"
    assert main(["--config", str(yml), "--input-height", str(H), "--input-width", str(W), "--output", str(ov_out),
                 "--layout", "openvino"]) == 0
    assert {p.key: p.value for p in onnx.load(str(ov_out)).metadata_props}["stt_ros.layout"] == "openvino"
    with pytest.raises(SystemExit):
        main(["--config", str(yml), "--output", str(ov_out), "--layout", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_cli_reads_the_ros_params_file(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "b.onnx"
    assert main(["--config", str(root / "config" / "stt.yaml"), "--model", "bise18", "--input-height", "32",
                 "--input-width", "64", "--output", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert '"model": "bise18"' in meta["stt_ros.config"] and '"num_classes": 19' in meta["stt_ros.config"]


def test_cli_writes_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    assert main(["--model", "bise18", "--input-height", "32", "--input-width", "64", "--opset", "9",
                 "--output", str(out)]) == 1
    assert "opset 9" in capsys.readouterr().err and not out.exists()
    # a graph that breaks a rule is refused and no file (nor temp file) remains
    monkeypatch.setattr(export_mod, "graph_problems", lambda proto: ["TopK 'x': K=4096 > 3840"])
    assert main(["--model", "bise18", "--input-height", "32", "--input-width", "64", "--output", str(out)]) == 1
    assert "K=4096" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        main(["--model", "nope", "--output", str(out)])
    with pytest.raises(ExportError, match=r"\.onnx"):
        export_step(build_model(STTConfig(model="bise18")), STTConfig(model="bise18"), tmp_path / "m.pt")


def test_cli_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "stt-export --config" in text and "--key-frames" in text


def test_exported_graph_runs_like_the_torch_wrapper(small_export: tuple[Path, STTConfig]) -> None:
    """Same inputs into onnxruntime and into the traced torch module (the portable layout): same outputs,
    whichever layout the graph was exported with."""
    import onnxruntime as ort

    path, cfg = small_export
    torch.manual_seed(0)
    graph = StreamingStepGraph(build_model(cfg).eval(), cfg.mean, cfg.std, with_logits=True).eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, H, W, 3), dtype=np.uint8)
    memory = [rng.standard_normal((1, 2, (H // 8) * (W // 8), 32)).astype(np.float32) for _ in range(7)]
    valid = np.array([True] * 4 + [False] * 3)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"image": image, "frame_valid": valid, **{f"memory_{k}": m for k, m in enumerate(memory)}}
    cm, kv, logits = sess.run(None, feeds)
    with torch.no_grad():
        t_cm, t_kv, t_logits = graph(torch.from_numpy(image), *map(torch.from_numpy, memory), torch.from_numpy(valid))
    np.testing.assert_allclose(logits, t_logits.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(kv, t_kv.numpy(), rtol=1e-4, atol=1e-4)
    assert cm.dtype == np.int32 and (cm == t_cm.numpy()).mean() > 0.999
