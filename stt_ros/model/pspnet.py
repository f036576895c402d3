"""PSPNet (Zhao et al., CVPR 2017), laid out as hszhao/semseg's ``PSPNet``.

Dilated ResNet (output stride 8) -> pyramid pooling module (bins 1, 2, 3, 6) -> 3x3 ConvBNReLU to
512 channels: that map is what :meth:`PSPNet.features` returns. The head is dropout + 1x1 conv; the
auxiliary head (training only) sits on the layer3 output.

The pyramid's 1x1 branch holds BatchNorm, so training needs batch size > 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import init_conv_bn, resnet
from .base import ConvBNReLU, SegNet


class PPM(nn.Module):
    """Pyramid pooling: per bin AdaptiveAvgPool -> 1x1 ConvBNReLU (``in/len(bins)`` ch) -> bilinear
    upsample, concatenated with the input (``out_channels = 2 * in_channels`` for 4 bins)."""

    def __init__(self, in_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.bins = tuple(bins)
        reduction = in_channels // len(self.bins)
        self.features = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNReLU(in_channels, reduction, 1)) for b in self.bins
        )
        self.out_channels = in_channels + reduction * len(self.bins)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        out = [x]
        for f in self.features:
            out.append(F.interpolate(f(x), size=size, mode="bilinear", align_corners=True))
        return torch.cat(out, dim=1)


class PSPNet(SegNet):
    """PSPNet on a dilated ResNet (``backbone``: resnet18|34|50|101).

    ``features`` returns the 512-channel 1/8 map after the pyramid and its 3x3 ConvBNReLU, plus the
    layer3 output for the auxiliary head. ``self.backbone`` is the torchvision-layout ResNet, into
    which ImageNet weights can be loaded.
    """

    feat_channels = 512

    def __init__(self, num_classes: int = 19, backbone: str = "resnet18", bins: tuple[int, ...] = (1, 2, 3, 6),
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.backbone = resnet(backbone, dilated=True)
        _, _, c4, c5 = self.backbone.stage_channels
        self.ppm = PPM(c5, bins)
        self.bottleneck = ConvBNReLU(self.ppm.out_channels, self.feat_channels, 3)
        self.cls = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(self.feat_channels, num_classes, 1))
        self.aux = nn.Sequential(ConvBNReLU(c4, 256, 3), nn.Dropout2d(dropout), nn.Conv2d(256, num_classes, 1))
        for child in (self.ppm, self.bottleneck, self.cls, self.aux):
            init_conv_bn(child)

    def features(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        _, _, c4, c5 = self.backbone.forward_stages(x)
        return self.bottleneck(self.ppm(c5)), (c4,)

    def head(self, feat: Tensor) -> Tensor:
        return self.cls(feat)

    def aux_logits(self, aux: tuple[Tensor, ...]) -> list[Tensor]:
        return [self.aux(aux[0])]
