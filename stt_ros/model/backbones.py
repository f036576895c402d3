"""ResNet-18/34/50/101 backbones with torchvision's state-dict layout.

The modules are named exactly as in ``torchvision.models.resnet`` (``conv1``, ``bn1``,
``layer1``..``layer4``, blocks ``N.conv1/bn1/conv2/bn2[/conv3/bn3]``, ``N.downsample.0/1``, ``fc``),
so a torchvision ImageNet checkpoint loads key for key (see :func:`stt_ros.model.loading.load_state_dict_report`).
``dilated=True`` gives the output-stride-8 variant used by PSPNet, equivalent to torchvision's
``replace_stride_with_dilation=[False, True, True]`` (also for the BasicBlock networks, which
torchvision refuses to dilate); the key names and shapes do not change.
"""

from __future__ import annotations

from torch import Tensor, nn

RESNET_NAMES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101")


def init_conv_bn(module: nn.Module) -> None:
    """torchvision's init: kaiming normal (fan_out, relu) for convs (zero bias), BatchNorm weight 1 bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, ResNet v1.5 as torchvision) -> 1x1 with a residual (ResNet-50/101)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_SPECS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ImageNet ResNet with torchvision's module names.

    ``stage_channels``: channels of (c2, c3, c4, c5); ``stage_strides``: their output strides
    ((4, 8, 16, 32), or (4, 8, 8, 8) when ``dilated``). ``forward`` is the ImageNet classifier;
    segmentation networks use :meth:`forward_stages` and never touch ``fc``.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int],
                 dilated: bool = False, num_classes: int = 1000) -> None:
        super().__init__()
        self.dilated = dilated
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=dilated)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=dilated)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        e = block.expansion
        self.stage_channels: tuple[int, int, int, int] = (64 * e, 128 * e, 256 * e, 512 * e)
        self.stage_strides: tuple[int, int, int, int] = (4, 8, 8, 8) if dilated else (4, 8, 16, 32)

        init_conv_bn(self)  # fc keeps nn.Linear's default init, as in torchvision

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int = 1, dilate: bool = False) -> nn.Sequential:
        # Same rule as torchvision: when dilating, the first block keeps the previous dilation.
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_stages(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Image (B, 3, H, W) -> (c2, c3, c4, c5), the outputs of layer1..layer4."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c2, c3, c4, c5

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits (B, num_classes)."""
        c5 = self.forward_stages(x)[3]
        return self.fc(self.avgpool(c5).flatten(1))


def resnet(name: str, dilated: bool = False) -> ResNet:
    """``resnet18|resnet34|resnet50|resnet101``, randomly initialised (output stride 8 if ``dilated``)."""
    if name not in _SPECS:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(RESNET_NAMES)}")
    block, layers = _SPECS[name]
    return ResNet(block, layers, dilated=dilated)
