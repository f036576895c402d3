"""BiSeNet V1 (Yu et al., ECCV 2018), laid out as CoinCheung/BiSeNet's ``bisenetv1``.

Spatial path (1/8, 128 ch) + context path on a ResNet (attention refinement on the 1/16 and 1/32
stages, global context added to the 1/32 branch, 128 ch) fused by the feature fusion module into
the 256-channel 1/8 map that :meth:`BiSeNet.features` returns.

Like the original, the 1x1 pooled branches hold BatchNorm layers, so training needs batch size > 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import init_conv_bn, resnet
from .base import ConvBNReLU, SegNet


class BiSeNetOutput(nn.Module):
    """ConvBNReLU 3x3 -> 1x1 conv to classes (no upsampling: logits at the input's stride)."""

    def __init__(self, cin: int, mid: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid, 3)
        self.conv_out = nn.Conv2d(mid, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv(x))


class AttentionRefinementModule(nn.Module):
    """ConvBNReLU 3x3, then channel attention from global average pooling (1x1 conv, BN, sigmoid)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 3)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * atten


class SpatialPath(nn.Module):
    """Three stride-2 ConvBNReLU (7x7, 3x3, 3x3; 64 ch) and a 1x1 ConvBNReLU to 128 ch: 1/8 map."""

    def __init__(self, out_channels: int = 128) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(3, 64, 7, stride=2)
        self.conv2 = ConvBNReLU(64, 64, 3, stride=2)
        self.conv3 = ConvBNReLU(64, 64, 3, stride=2)
        self.conv_out = ConvBNReLU(64, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv3(self.conv2(self.conv1(x))))


class FeatureFusionModule(nn.Module):
    """concat -> 1x1 ConvBNReLU -> channel attention -> ``feat * atten + feat``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, 1)
        self.conv = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, fsp: Tensor, fcp: Tensor) -> Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.bn(self.conv(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * atten + feat


class BiSeNet(SegNet):
    """BiSeNet V1 on a ResNet context path (``backbone``: resnet18|34|50|101).

    ``features`` returns the fused 1/8 map (256 ch) and the context-path maps at 1/8 and 1/16
    (128 ch each) that feed the two auxiliary heads. ``self.backbone`` is the torchvision-layout
    ResNet, into which ImageNet weights can be loaded.
    """

    feat_channels = 256

    def __init__(self, num_classes: int = 19, backbone: str = "resnet18") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.backbone = resnet(backbone)
        _, _, c16, c32 = self.backbone.stage_channels
        cp = 128
        # Context path.
        self.arm16 = AttentionRefinementModule(c16, cp)
        self.arm32 = AttentionRefinementModule(c32, cp)
        self.conv_head32 = ConvBNReLU(cp, cp, 3)
        self.conv_head16 = ConvBNReLU(cp, cp, 3)
        self.conv_avg = ConvBNReLU(c32, cp, 1)
        # Spatial path, fusion and heads.
        self.sp = SpatialPath(cp)
        self.ffm = FeatureFusionModule(2 * cp, self.feat_channels)
        self.conv_out = BiSeNetOutput(self.feat_channels, 256, num_classes)
        self.conv_out16 = BiSeNetOutput(cp, 64, num_classes)
        self.conv_out32 = BiSeNetOutput(cp, 64, num_classes)
        for name, child in self.named_children():
            if name != "backbone":
                init_conv_bn(child)

    def context_path(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Image -> (context map at 1/8, context map at 1/16), 128 ch each."""
        _, feat8, feat16, feat32 = self.backbone.forward_stages(x)
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + avg
        # Upsample to the previous stage's size (not a fixed x2) so odd input sizes work too.
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, size=feat16.shape[-2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, size=feat8.shape[-2:], mode="nearest"))
        return feat16_up, feat32_up

    def features(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        feat_cp8, feat_cp16 = self.context_path(x)
        # The spatial path halves the size three times like conv1/maxpool/layer2, so the maps align.
        return self.ffm(self.sp(x), feat_cp8), (feat_cp8, feat_cp16)

    def head(self, feat: Tensor) -> Tensor:
        return self.conv_out(feat)

    def aux_logits(self, aux: tuple[Tensor, ...]) -> list[Tensor]:
        feat_cp8, feat_cp16 = aux
        return [self.conv_out16(feat_cp8), self.conv_out32(feat_cp16)]
