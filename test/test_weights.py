"""Weights: safetensors round trip, clear refusals, nothing half-loaded, no unpickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from stt_ros.config import STTConfig
from stt_ros.model.backbones import resnet
from stt_ros.model.zoo import build_model
from stt_ros.weights import WeightsError, load_backbone, load_weights, read_state_dict, save_weights

CFG = STTConfig(model="stt_bise18", input_height=64, input_width=128, key_frames=2)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_roundtrip_restores_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a = build_model(CFG).eval()
    path = tmp_path / "m.safetensors"
    save_weights(a, path, config=CFG.to_dict())
    torch.manual_seed(1)
    b = build_model(CFG).eval()
    report = load_weights(b, path, config=CFG.to_dict())
    assert report.complete and len(report.loaded) == len(a.state_dict())
    clip = torch.randn(1, 3, 3, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(a.forward_clip(clip, all_frames=True), b.forward_clip(clip, all_frames=True))
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_shape_mismatch_is_named_and_nothing_loads(tmp_path: Path) -> None:
    a = build_model(CFG.replace(num_classes=11))
    path = tmp_path / "m.safetensors"
    save_weights(a, path)  # no config stored: the shape check must catch it
    b = build_model(CFG)
    before = snapshot(b)
    with pytest.raises(WeightsError, match=r"segnet\.conv_out\.conv_out\.weight.*expected") as exc:
        load_weights(b, path)
    assert "nothing was loaded" in str(exc.value)
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())
    report = load_weights(b, path, strict=False)  # opt-in partial load reports the rest
    assert report.mismatched and report.loaded


def test_wrong_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "psp.safetensors"
    cfg = CFG.replace(model="stt_psp18")
    save_weights(build_model(cfg), path, config=cfg.to_dict())
    with pytest.raises(WeightsError, match="different model.*stt_psp18.*stt_bise18"):
        load_weights(build_model(CFG), path, config=CFG.to_dict())
    l2 = CFG.replace(attn_affinity="l2")  # shared query/key projection: other parameters, same shapes elsewhere
    save_weights(build_model(l2), path, config=l2.to_dict())
    with pytest.raises(WeightsError, match="attn_affinity: checkpoint 'l2', config 'dot'"):
        load_weights(build_model(CFG), path, config=CFG.to_dict())


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_files_give_clear_errors(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "m.safetensors"
    save_weights(build_model(CFG), path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00\xff" * 100, "empty": b""}[damage])
    model = build_model(CFG)
    before = snapshot(model)
    with pytest.raises(WeightsError, match="safetensors"):
        load_weights(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "nope.safetensors")
    other = tmp_path / "m.onnx"
    other.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unsupported"):
        read_state_dict(other)


class Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/stt_ros_pickle_ran"),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_pickle_with_code_is_not_executed(tmp_path: Path) -> None:
    marker = Path("/tmp/stt_ros_pickle_ran")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        pickle.dump({"conv1.weight": Evil()}, fh)
    with pytest.raises(WeightsError, match="weights_only"):
        read_state_dict(path)
    assert not marker.exists()


def test_backbone_checkpoint_with_torchvision_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = resnet("resnet18")
    pth, st = tmp_path / "resnet18.pth", tmp_path / "resnet18.safetensors"
    torch.save(src.state_dict(), pth)  # what torchvision's ImageNet files hold
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, st)
    for path in (pth, st):
        model = build_model(CFG)
        report = load_backbone(model.segnet.backbone, path)
        assert report.complete
        assert torch.equal(model.segnet.backbone.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    with pytest.raises(WeightsError, match="not a checkpoint of this backbone"):
        load_backbone(resnet("resnet50"), pth)
