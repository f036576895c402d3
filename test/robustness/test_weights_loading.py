"""Hostile weight and model files: corrupt, truncated, wrong-architecture, pickle-based.

Each one gives a WeightsError or ConfigError whose message names the file and the problem, and
loads nothing; and a scan of the source finds no path that unpickles a file."""

from __future__ import annotations

import ast
import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from stt_ros.config import ConfigError, STTConfig
from stt_ros.model.zoo import build_model
from stt_ros.runtime import create_backend
from stt_ros.weights import WeightsError, load_backbone, load_weights, read_state_dict, save_weights
from stt_testing.fuzz_util import examples

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"input_height": 64, "input_width": 128}


class Tiny(nn.Module):
    """A real (small) module with every kind of state: conv, BatchNorm buffers, an int counter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "t.safetensors"
    save_weights(Tiny(), path, config={"model": "tiny"})
    return path.read_bytes()


# ---------------------------------------------------------------------------- byte-level damage
@st.composite
def damaged_safetensors(draw: st.DrawFn, good: bytes) -> bytes:
    header_len = struct.unpack("<Q", good[:8])[0]
    kind = draw(st.sampled_from(["truncate", "flip_header", "flip_data", "header_len", "header_json"]))
    data = bytearray(good)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind in ("flip_header", "flip_data"):
        lo, hi = (0, 8 + header_len) if kind == "flip_header" else (8 + header_len, len(data))
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(lo, hi - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "header_len":
        data[:8] = struct.pack("<Q", draw(st.sampled_from([0, 1, 7, header_len - 1, header_len + 1, 2**31, 2**63,
                                                           2**64 - 1, len(good)])))
        return bytes(data)
    header = json.loads(good[8:8 + header_len])
    name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    entry = draw(st.sampled_from(["dtype", "shape", "data_offsets", "__metadata__"]))
    value = draw(st.sampled_from([[2**40, 2**40], [-1], "F64", "BOOL", "I8", "XX", [0, 10**12], [3, 1], [1] * 20,
                                  [], None, 5, {"config": "[1]"}, {"config": "not json"}, {"config": '"model"'},
                                  {"config": json.dumps({"model": "other"})}]))
    if entry == "__metadata__":
        header["__metadata__"] = value
    else:
        header[name][entry] = value
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + good[8 + header_len:]


@settings(max_examples=examples(200))
@given(data=st.data())
def test_damaged_checkpoint_loads_fully_or_not_at_all(tmp_path_factory: pytest.TempPathFactory, tiny_file: bytes,
                                                      data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("dmg") / "damaged.safetensors"
    path.write_bytes(data.draw(damaged_safetensors(tiny_file)))
    model = Tiny()
    before = snapshot(model)
    try:
        report = load_weights(model, path, config={"model": "tiny"})
    except WeightsError as exc:
        event("refused")
        assert str(path) in str(exc), str(exc)
        assert unchanged(model, before), "a refused checkpoint changed the model"
        return
    # accepted: only when the damage left a complete, finite checkpoint, and then all of it loaded
    event("loaded")
    tensors, _ = read_state_dict(path)
    assert report.complete and set(report.loaded) == set(tensors)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, tensors[name].to(value.dtype), rtol=0, atol=0)


@pytest.mark.parametrize("damage", ["nan", "inf", "int_for_float", "empty", "header_only", "json_list_config"])
def test_unusable_values_are_named(tmp_path: Path, damage: str) -> None:
    model = Tiny()
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    meta = {}
    if damage == "nan":
        sd["conv.weight"][0, 0, 0, 0] = float("nan")
    elif damage == "inf":
        sd["bn.running_var"][1] = float("inf")
    elif damage == "int_for_float":
        sd["head.weight"] = torch.ones(2, 4, dtype=torch.int32)
    elif damage == "json_list_config":
        meta = {"config": '"model"'}
    path = tmp_path / f"{damage}.safetensors"
    save_file(sd, path, metadata=meta)
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "header_only":
        path.write_bytes(path.read_bytes()[:-4])
    message = {"nan": "NaN or infinite values in 1 tensor.*conv.weight", "inf": "NaN or infinite.*bn.running_var",
               "int_for_float": "integer/float kind.*head.weight", "empty": "not a readable safetensors",
               "header_only": "not a readable safetensors", "json_list_config": "must be a JSON object"}[damage]
    target = Tiny()
    before = snapshot(target)
    with pytest.raises(WeightsError, match=message) as exc:
        load_weights(target, path, config={"model": "tiny"})
    assert str(path) in str(exc.value)
    assert unchanged(target, before)


# ---------------------------------------------------------------------------- wrong architecture
@pytest.mark.parametrize(("saved", "loaded"), [
    ({"model": "psp18"}, {"model": "bise18"}),
    ({"model": "bise18"}, {"model": "stt_bise18", "key_frames": 2}),  # baseline weights, STT model
    ({"model": "stt_bise18", "key_frames": 2}, {"model": "bise18"}),
    ({"model": "bise18", "num_classes": 11}, {"model": "bise18"}),
    ({"model": "stt_bise18", "attn_dim": 16, "key_frames": 2}, {"model": "stt_bise18", "key_frames": 2}),
])
@pytest.mark.parametrize("with_config", [True, False])
def test_wrong_architecture_is_refused_and_loads_nothing(tmp_path: Path, saved: dict, loaded: dict,
                                                         with_config: bool) -> None:
    src_cfg, dst_cfg = STTConfig(**SMALL, **saved), STTConfig(**SMALL, **loaded)
    path = tmp_path / "other.safetensors"
    save_weights(build_model(src_cfg), path, config=src_cfg.to_dict() if with_config else None)
    model = build_model(dst_cfg)
    before = snapshot(model)
    expected = "different model" if with_config else "does not fit the model; nothing was loaded"
    with pytest.raises(WeightsError, match=expected) as exc:
        load_weights(model, path, config=dst_cfg.to_dict())
    assert str(path) in str(exc.value)
    assert unchanged(model, before)
    if with_config:  # and through the backend factory, as the node loads it
        with pytest.raises(WeightsError, match=expected):
            create_backend(dst_cfg.replace(weights=str(path)))


def test_backbone_of_another_depth_is_refused(tmp_path: Path) -> None:
    from stt_ros.model.backbones import resnet

    path = tmp_path / "resnet34.pth"
    torch.save(resnet("resnet34").state_dict(), path)
    backbone = resnet("resnet18")
    before = snapshot(backbone)
    with pytest.raises(WeightsError, match="not a checkpoint of this backbone") as exc:
        load_backbone(backbone, path)
    assert str(path) in str(exc.value) and unchanged(backbone, before)


# ---------------------------------------------------------------------------- pickles
MARKER = Path("/tmp/stt_ros_robustness_pickle_ran")


class Payload:
    """Unpickling this creates MARKER: the proof that a loader executed code from a file."""

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (MARKER,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("kind", ["raw_pickle", "torch_save_code", "whole_module", "pickle_named_safetensors",
                                  "zip_with_code", "non_tensor_values"])
def test_pickle_based_files_are_refused_without_running_code(tmp_path: Path, kind: str) -> None:
    MARKER.unlink(missing_ok=True)
    path = tmp_path / ("w.safetensors" if kind == "pickle_named_safetensors" else "w.pth")
    if kind == "raw_pickle":
        path.write_bytes(pickle.dumps({"conv.weight": Payload()}))
    elif kind == "torch_save_code":  # torch's zip format with a code-running object inside
        torch.save({"conv.weight": Payload()}, path)
    elif kind == "whole_module":  # a module object, not a state dict: needs arbitrary classes
        torch.save(Tiny(), path)
    elif kind == "pickle_named_safetensors":
        path.write_bytes(pickle.dumps({"conv.weight": Payload()}))
    elif kind == "zip_with_code":
        torch.save({"state_dict": {"conv.weight": torch.zeros(1)}, "hook": Payload()}, path)
    else:
        torch.save({"conv.weight": torch.zeros(4, 3, 3, 3), "epoch": "ten"}, path)
    model = Tiny()
    before = snapshot(model)
    message = {"pickle_named_safetensors": "not a readable safetensors",
               "non_tensor_values": "does not hold a state dict of tensors"}.get(kind, "weights_only")
    with pytest.raises(WeightsError, match=message) as exc:
        load_weights(model, path)
    assert str(path) in str(exc.value)
    assert not MARKER.exists(), "loading the file ran code from it"
    assert unchanged(model, before)


# Loaders that unpickle (run code from) their input, by dotted call name; "torch.load" is allowed
# with weights_only=True and "numpy.load" without allow_pickle=True.
UNPICKLING = {"pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads", "dill.load",
              "dill.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load", "marshal.load", "marshal.loads",
              "shelve.open", "pandas.read_pickle", "torch.hub.load", "torch.jit.load", "torch.package.PackageImporter",
              "yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
              "yaml.full_load_all", "torch.load", "numpy.load", "numpy.lib.format.read_array"}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader", "yaml.CBaseLoader"}
UNPICKLING_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
# Reviewed exceptions: (file, call) -> why it is safe.
ALLOWED = {("stt_train/train.py", "torch.distributed.all_gather_object"):
           "pickles RNG states between the processes of one torchrun job (trusted peers), never a file"}


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _kwarg(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expression>"
    return None


def unpickling_calls(path: Path) -> list[str]:
    """'line: call' for every call in ``path`` that may unpickle its input."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = {"np": "numpy"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                if a.name.split(".")[0] in UNPICKLING_MODULES:
                    found.append(f"{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            if node.module.split(".")[0] in UNPICKLING_MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        if name.startswith("torch.distributed") and "_object" in name:  # collectives that pickle objects
            found.append(f"{node.lineno}: {name}")
        if name not in UNPICKLING:
            continue
        if name == "torch.load" and _kwarg(node, "weights_only") is True:
            continue
        if name == "numpy.load" and _kwarg(node, "allow_pickle") in (None, False):
            continue
        loader = next((kw.value for kw in node.keywords if kw.arg == "Loader"), None)
        if name == "yaml.load" and loader is not None and _dotted(loader, aliases) in SAFE_YAML_LOADERS:
            continue
        found.append(f"{node.lineno}: {name}")
    return sorted(found, key=lambda hit: int(hit.split(":")[0]))


def test_scanner_finds_every_unpickling_form(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nimport numpy as np\nimport torch\nfrom torch import load\nimport yaml\n"
                   "pickle.loads(b'')\nnp.load('x.npy', allow_pickle=True)\ntorch.load('a.pth')\n"
                   "torch.load('a.pth', weights_only=False)\nload('b.pth')\nyaml.load('x')\n"
                   "torch.distributed.broadcast_object_list([])\n"
                   "torch.load('ok.pth', weights_only=True)\nnp.load('ok.npy')\n"
                   "yaml.load('ok', Loader=yaml.SafeLoader)\n")
    hits = unpickling_calls(bad)
    assert [h.split(":")[0] for h in hits] == ["1", "6", "7", "8", "9", "10", "11", "12"], hits


def test_no_code_path_unpickles_a_file() -> None:
    files = [p for d in ("stt_ros", "stt_train", "bench") for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 20
    offences = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for hit in unpickling_calls(path):
            if (rel, hit.split(": ", 1)[1]) not in ALLOWED:
                offences.append(f"{rel}:{hit}")
    assert not offences, "calls that may unpickle untrusted data:\n" + "\n".join(offences)


# ---------------------------------------------------------------------------- exported graphs (onnxruntime)
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[STTConfig, Path]:
    from stt_train.export import export_step

    torch.manual_seed(0)
    cfg = STTConfig(model="bise18", backend="onnxruntime", **SMALL)
    path = tmp_path_factory.mktemp("onnx") / "bise18.onnx"
    export_step(build_model(cfg).eval(), cfg, path)
    return cfg, path


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "safetensors_as_onnx", "flipped",
                                    "other_size", "other_model", "checkpoint_without_graph"])
def test_bad_graphs_are_refused_by_create_backend(tmp_path: Path, exported: tuple, damage: str) -> None:
    cfg, good = exported
    data = good.read_bytes()
    path = tmp_path / "model.onnx"
    message = "onnxruntime cannot load|not a readable ONNX"
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        path.write_bytes(b"\x08\x07" + bytes(range(256)) * 8)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "safetensors_as_onnx":
        save_weights(Tiny(), path)
    elif damage == "flipped":
        buf = bytearray(data)
        buf[10:40] = b"\xff" * 30
        path.write_bytes(bytes(buf))
    elif damage == "other_size":
        path.write_bytes(data)
        cfg = cfg.replace(input_height=128, input_width=256)
        message = "(?s)does not match the config.*input_height: graph 64, config 128"
    elif damage == "other_model":
        path.write_bytes(data)
        cfg = cfg.replace(model="stt_bise18", key_frames=2)
        message = "(?s)does not match the config.*model: graph 'bise18', config 'stt_bise18'"
    else:
        path = tmp_path / "model.safetensors"
        save_weights(build_model(cfg), path, config=cfg.to_dict())
        message = "is a checkpoint and .*model.onnx does not exist"
    with pytest.raises(ConfigError, match=message) as exc:
        create_backend(cfg.replace(weights=str(path)))
    assert str(path.with_suffix(".onnx")) in str(exc.value)
