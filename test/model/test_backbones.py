"""ResNet backbones: torchvision key layout, dilation, and reported state-dict loading."""

from __future__ import annotations

import pytest
import torch

from stt_ros.model.backbones import RESNET_NAMES, ResNet, resnet
from stt_ros.model.loading import LoadReport, load_state_dict_report

# Figures of torchvision.models.resnetXX(): state_dict length (num_batches_tracked included) and
# parameter count (as published in torchvision's model table).
TORCHVISION_KEYS = {"resnet18": 122, "resnet34": 218, "resnet50": 320, "resnet101": 626}
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "resnet101": 44_549_160}
LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def torchvision_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's resnet ``name``, written out from its architecture."""
    bottleneck = name in ("resnet50", "resnet101")
    e = 4 if bottleneck else 1
    shapes = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), LAYERS[name], strict=True), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            if bottleneck:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                shapes[f"{p}.conv3.weight"] = (planes * e, planes, 1, 1)
                shapes.update(_bn(f"{p}.bn1", planes) | _bn(f"{p}.bn2", planes) | _bn(f"{p}.bn3", planes * e))
            else:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                shapes.update(_bn(f"{p}.bn1", planes) | _bn(f"{p}.bn2", planes))
            if b == 0 and (li > 1 or inplanes != planes * e):
                shapes[f"{p}.downsample.0.weight"] = (planes * e, inplanes, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", planes * e))
            inplanes = planes * e
    shapes["fc.weight"] = (1000, 512 * e)
    shapes["fc.bias"] = (1000,)
    return shapes


@pytest.mark.parametrize("name", RESNET_NAMES)
def test_state_dict_matches_torchvision_layout(name: str) -> None:
    model = resnet(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(got) == TORCHVISION_KEYS[name]
    assert got == torchvision_shapes(name)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]
    e = 4 if name in ("resnet50", "resnet101") else 1
    assert model.stage_channels == (64 * e, 128 * e, 256 * e, 512 * e)
    assert got["conv1.weight"] == (64, 3, 7, 7)
    assert got["fc.weight"] == (1000, 512 * e)


def test_specific_torchvision_keys() -> None:
    sd18 = resnet("resnet18").state_dict()
    assert "layer4.1.bn2.running_var" in sd18
    assert "layer1.0.downsample.0.weight" not in sd18  # basic blocks: no downsample in layer1
    assert tuple(sd18["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert "layer1.0.conv3.weight" not in sd18
    sd101 = resnet("resnet101").state_dict()
    assert tuple(sd101["layer3.22.conv3.weight"].shape) == (1024, 256, 1, 1)
    assert "layer3.23.conv1.weight" not in sd101
    assert tuple(sd101["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert tuple(sd101["fc.weight"].shape) == (1000, 2048)
    # ResNet v1.5 as torchvision: the stride sits on the bottleneck's 3x3 conv.
    r50 = resnet("resnet50")
    assert r50.layer2[0].conv1.stride == (1, 1) and r50.layer2[0].conv2.stride == (2, 2)
    assert r50.layer2[0].downsample[0].stride == (2, 2)


def test_init_like_torchvision() -> None:
    model = resnet("resnet18")
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    w = model.layer1[0].conv1.weight
    expected_std = (2.0 / (64 * 9)) ** 0.5  # kaiming normal, fan_out = 64 * 3 * 3
    assert abs(w.std().item() - expected_std) < 0.15 * expected_std


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="resnet18.*resnet101"):
        resnet("resnet152")


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_stages_and_dilation(name: str) -> None:
    plain, dilated = resnet(name).eval(), resnet(name, dilated=True).eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        out_plain = plain.forward_stages(x)
        out_dil = dilated.forward_stages(x)
        logits = plain(x)
    assert logits.shape == (1, 1000)
    assert plain.stage_strides == (4, 8, 16, 32)
    assert dilated.stage_strides == (4, 8, 8, 8)
    for model, outs in ((plain, out_plain), (dilated, out_dil)):
        for c, s, t in zip(model.stage_channels, model.stage_strides, outs, strict=True):
            assert t.shape == (1, c, 64 // s, 128 // s)
    # Same keys and shapes: a torchvision checkpoint loads into either.
    sd_plain, sd_dil = plain.state_dict(), dilated.state_dict()
    assert {k: v.shape for k, v in sd_plain.items()} == {k: v.shape for k, v in sd_dil.items()}
    # torchvision's replace_stride_with_dilation=[False, True, True] rule.
    assert dilated.layer3[0].conv2.dilation == (1, 1) and dilated.layer3[0].conv2.stride == (1, 1)
    assert dilated.layer3[1].conv2.dilation == (2, 2)
    assert dilated.layer4[0].conv2.dilation == (2, 2)
    assert dilated.layer4[-1].conv2.dilation == (4, 4)
    assert dilated.layer3[0].downsample[0].stride == (1, 1)
    # With identical weights the dilated network's c2/c3 equal the plain one's (only layer3/4 change).
    dilated.load_state_dict(sd_plain)
    with torch.no_grad():
        out_dil = dilated.forward_stages(x)
    torch.testing.assert_close(out_dil[1], out_plain[1])


def test_load_report_clean_and_torchvision_style_checkpoint() -> None:
    src = resnet("resnet18")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    sd = {k: v.clone() for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    dst = resnet("resnet18")
    report = load_state_dict_report(dst, sd)
    assert report.complete
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert "fc.weight" in report.loaded and len(report.loaded) == 102
    report.raise_if_incomplete()
    for k, v in dst.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, sd[k]), k
    # num_batches_tracked is only optional by default: asking for it reports it.
    strict = load_state_dict_report(resnet("resnet18"), sd, optional_suffixes=())
    assert "bn1.num_batches_tracked" in strict.missing and len(strict.missing) == 20


def test_load_report_lists_each_problem() -> None:
    src = resnet("resnet18")
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    del sd["layer1.0.conv1.weight"]
    sd["head.extra.weight"] = torch.ones(3)
    sd["fc.weight"] = torch.zeros(10, 512)
    dst = resnet("resnet18")
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = load_state_dict_report(dst, sd)

    assert isinstance(report, LoadReport)
    assert report.missing == ["layer1.0.conv1.weight"]
    assert report.unexpected == ["head.extra.weight"]
    assert report.mismatched == [("fc.weight", (1000, 512), (10, 512))]
    assert not report.complete
    after = dst.state_dict()
    assert set(report.loaded) == set(sd) - {"head.extra.weight", "fc.weight"}
    for k in report.loaded:
        assert torch.equal(after[k], sd[k]), k
    assert not torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])
    assert torch.equal(after["layer1.0.conv1.weight"], before["layer1.0.conv1.weight"])
    assert torch.equal(after["fc.weight"], before["fc.weight"])

    with pytest.raises(ValueError) as exc:
        report.raise_if_incomplete()
    msg = str(exc.value)
    for name in ("layer1.0.conv1.weight", "head.extra.weight", "fc.weight", "(1000, 512)", "(10, 512)"):
        assert name in msg
    with pytest.raises(ValueError) as exc:
        report.raise_if_incomplete(allow_unexpected=True)
    assert "head.extra.weight" not in str(exc.value)

    ignored = load_state_dict_report(resnet("resnet18"), sd, ignore_prefixes=("fc.", "head."))
    assert ignored.mismatched == [] and ignored.unexpected == []
    assert ignored.missing == ["layer1.0.conv1.weight"]
    assert not any(k.startswith("fc.") for k in ignored.loaded)


def test_load_report_truncates_long_lists() -> None:
    model: ResNet = resnet("resnet18")
    report = load_state_dict_report(model, {f"junk.{i}": torch.zeros(1) for i in range(30)})
    assert len(report.unexpected) == 30 and len(report.missing) == 102 and report.loaded == []
    with pytest.raises(ValueError) as exc:
        report.raise_if_incomplete(limit=5)
    msg = str(exc.value)
    assert "junk.4" in msg and "junk.5," not in msg and "and 25 more" in msg
    assert "and 97 more" in msg
