"""BiSeNet and PSPNet: shapes at stride 8, train/eval forward, gradients."""

from __future__ import annotations

import pytest
import torch

from stt_ros.model.backbones import ResNet
from stt_ros.model.base import SegNet, SegOutput
from stt_ros.model.bisenet import BiSeNet
from stt_ros.model.loading import load_state_dict_report
from stt_ros.model.pspnet import PSPNet

NUM_CLASSES = 5
H, W = 64, 128


def _expected_aux(model: SegNet) -> list[tuple[int, ...]]:
    if isinstance(model, BiSeNet):  # context path at 1/8 and at 1/16
        return [(2, NUM_CLASSES, H // 8, W // 8), (2, NUM_CLASSES, H // 16, W // 16)]
    return [(2, NUM_CLASSES, H // 8, W // 8)]  # PSPNet: dilated layer3 at 1/8


@pytest.fixture(scope="module", params=[(BiSeNet, "resnet18"), (PSPNet, "resnet18"), (BiSeNet, "resnet50"),
                                        (PSPNet, "resnet34")],
                ids=lambda p: f"{p[0].__name__}-{p[1]}")
def model(request: pytest.FixtureRequest) -> SegNet:
    torch.manual_seed(0)
    cls, backbone = request.param
    return cls(num_classes=NUM_CLASSES, backbone=backbone)


def test_attributes(model: SegNet) -> None:
    assert isinstance(model.backbone, ResNet)
    assert model.num_classes == NUM_CLASSES
    assert model.stride == 8
    assert model.feat_channels == (256 if isinstance(model, BiSeNet) else 512)
    # A torchvision-layout checkpoint for the backbone loads without any complaint.
    report = load_state_dict_report(model.backbone, {k: v.clone() for k, v in model.backbone.state_dict().items()})
    assert report.complete and "fc.weight" in report.loaded


def test_shapes_eval(model: SegNet) -> None:
    model.eval()
    x = torch.randn(2, 3, H, W)
    with torch.no_grad():
        feat, aux = model.features(x)
        assert feat.shape == (2, model.feat_channels, H // 8, W // 8)
        logits8 = model.head(feat)
        assert logits8.shape == (2, NUM_CLASSES, H // 8, W // 8)
        aux_logits = model.aux_logits(aux)
        assert [tuple(a.shape) for a in aux_logits] == _expected_aux(model)
        out = model(x)
    assert isinstance(out, SegOutput)
    assert out.logits.shape == (2, NUM_CLASSES, H, W)
    assert out.aux == []
    assert torch.isfinite(out.logits).all()
    # The forward pass is features -> head -> upsample, so the STT can sit between the two.
    expected = torch.nn.functional.interpolate(logits8, size=(H, W), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.logits, expected)


def test_train_forward_backward(model: SegNet) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    x = torch.randn(2, 3, H, W)
    out = model(x)
    assert out.logits.shape == (2, NUM_CLASSES, H, W)
    assert len(out.aux) == len(_expected_aux(model))
    for a in out.aux:
        assert a.shape == (2, NUM_CLASSES, H, W)
        assert torch.isfinite(a).all()
    assert torch.isfinite(out.logits).all()
    target = torch.randint(0, NUM_CLASSES, (2, H, W))
    loss = torch.nn.functional.cross_entropy(out.logits, target)
    loss = loss + 0.4 * sum(torch.nn.functional.cross_entropy(a, target) for a in out.aux)
    loss.backward()
    head_params = list((model.conv_out if isinstance(model, BiSeNet) else model.cls).parameters())
    aux_params = list((model.conv_out32 if isinstance(model, BiSeNet) else model.aux).parameters())
    for name, params in (("backbone.conv1", [model.backbone.conv1.weight]),
                         ("backbone.layer4", list(model.backbone.layer4.parameters())),
                         ("head", head_params), ("aux", aux_params)):
        for p in params:
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
        assert any(p.grad.abs().sum() > 0 for p in params), name
    # fc is not part of the segmentation graph.
    assert model.backbone.fc.weight.grad is None
    model.eval()


@pytest.mark.parametrize("cls", [BiSeNet, PSPNet])
def test_odd_input_size(cls: type[SegNet]) -> None:
    """Sizes that are not multiples of 32: the stride-8 maps are ceil(size / 8)."""
    torch.manual_seed(0)
    net = cls(num_classes=3).eval()
    with torch.no_grad():
        feat, _ = net.features(torch.randn(1, 3, 72, 100))
        out = net(torch.randn(1, 3, 72, 100))
    assert feat.shape[-2:] == (9, 13)
    assert out.logits.shape == (1, 3, 72, 100)


def test_constructor_defaults_and_errors() -> None:
    assert BiSeNet().num_classes == 19 and PSPNet().num_classes == 19
    assert PSPNet().backbone.stage_strides == (4, 8, 8, 8)
    assert BiSeNet().backbone.stage_strides == (4, 8, 16, 32)
    with pytest.raises(ValueError, match="valid names"):
        BiSeNet(backbone="vgg16")
    with pytest.raises(ValueError, match="valid names"):
        PSPNet(backbone="resnet152")


def test_pspnet_ppm_channels() -> None:
    net = PSPNet(num_classes=3, backbone="resnet50")
    assert net.backbone.stage_channels[-1] == 2048
    assert net.ppm.out_channels == 4096
    assert [f[1][0].out_channels for f in net.ppm.features] == [512] * 4
    assert net.aux[0][0].in_channels == 1024
    net18 = PSPNet(num_classes=3)
    assert net18.ppm.out_channels == 1024 and net18.aux[0][0].in_channels == 256
