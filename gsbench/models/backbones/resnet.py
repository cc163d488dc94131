"""Dilated ResNet with the deep stem (``deep_base`` in semseg, "ResNetV1c" in mmsegmentation).

He et al., "Deep Residual Learning", CVPR 2016, with the changes every paper reproduced here
uses (PSANet Sec. 4.1, PSPNet): the 7x7 stem is replaced by three 3x3 convolutions with 64, 64
and 128 filters, and the last stages trade stride for dilation so the features keep output
stride 8 (stage 4 dilation 2, stage 5 dilation 4) or 16 (stage 5 dilation 2), as in DeepLab.

mmsegmentation's ResNetV1c-D8 (``mmseg/models/backbones/resnet.py``, ``ResNetV1c`` with
``contract_dilation=True`` in every ``configs/_base_/models/*_r50-d8.py``) differs in two
points, both available here (``resnet50_v1c``, ``resnet101_v1c``): a narrower stem of 32, 32 and
64 filters (so ``layer1`` takes 64 channels), and the first block of each dilated stage uses
half the stage's dilation (``mmseg/models/utils/res_layer.py``: ``dilation // 2`` when
``contract_dilation``), i.e. dilations 1, 2, 2, ... in stage 4 and 2, 4, 4 in stage 5.

Parameter names follow the semseg / torchvision layout (``conv1, bn1, conv2, bn2, conv3, bn3``
for the stem, then ``layer1..layer4``) so ImageNet checkpoints load directly
(:mod:`gsbench.models.backbones.pretrained`).
"""

from __future__ import annotations

from torch import Tensor, nn

from gsbench.errors import GsbenchError


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution whose padding keeps the size (before the stride) for any dilation."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation,
                     dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, width, stride, dilation)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, 1, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided / dilated, "pytorch style"), 1x1 expand x4, residual."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# (stride, dilation) of stages 4 and 5 (layer3, layer4) for each output stride.
_STAGE_STRIDES = {8: ((1, 2), (1, 4)), 16: ((2, 1), (1, 2)), 32: ((2, 1), (2, 1))}


class ResNet(nn.Module):
    """Deep-stem dilated ResNet returning the four stage features [c2, c3, c4, c5].

    ``channels`` holds their channel counts, e.g. (256, 512, 1024, 2048) for ResNet-50/101.
    Strides: c2 4, c3 8, c4 ``min(output_stride, 16)``, c5 ``output_stride``.
    ``contract_dilation``: the first block of a dilated stage uses half the stage's dilation
    (mmseg's ResNetV1c-D8); by default every block uses the full dilation (semseg).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, ...],
                 output_stride: int = 8, stem_channels: tuple[int, int, int] = (64, 64, 128),
                 widths: tuple[int, int, int, int] = (64, 128, 256, 512),
                 contract_dilation: bool = False):
        super().__init__()
        self.contract_dilation = contract_dilation
        if output_stride not in _STAGE_STRIDES:
            raise GsbenchError(f"output_stride must be one of {sorted(_STAGE_STRIDES)}, "
                               f"got {output_stride}")
        self.output_stride = output_stride
        s1, s2, s3 = stem_channels
        self.conv1 = conv3x3(3, s1, stride=2)
        self.bn1 = nn.BatchNorm2d(s1)
        self.conv2 = conv3x3(s1, s2)
        self.bn2 = nn.BatchNorm2d(s2)
        self.conv3 = conv3x3(s2, s3)
        self.bn3 = nn.BatchNorm2d(s3)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        (stride4, dilation4), (stride5, dilation5) = _STAGE_STRIDES[output_stride]
        self._in_channels = s3
        self.layer1 = self._make_stage(block, widths[0], layers[0], 1, 1)
        self.layer2 = self._make_stage(block, widths[1], layers[1], 2, 1)
        self.layer3 = self._make_stage(block, widths[2], layers[2], stride4, dilation4)
        self.layer4 = self._make_stage(block, widths[3], layers[3], stride5, dilation5)
        self.channels = tuple(w * block.expansion for w in widths)
        init_kaiming(self)

    def _make_stage(self, block, width: int, blocks: int, stride: int, dilation: int):
        out_channels = width * block.expansion
        downsample = None
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        # Every block of a dilated stage uses the full dilation (semseg, mmseg's class default)
        # unless contract_dilation halves it in the first block (mmseg's -D8 configs).
        first = dilation // 2 if self.contract_dilation and dilation > 1 else dilation
        stage = [block(self._in_channels, width, stride, first, downsample)]
        self._in_channels = out_channels
        stage += [block(out_channels, width, 1, dilation) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


def init_kaiming(module: nn.Module) -> None:
    """He (Kaiming) normal init for convolutions, BN as identity: the random-init fallback."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet18(output_stride: int = 8) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), output_stride)


def resnet50(output_stride: int = 8) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), output_stride)


def resnet101(output_stride: int = 8) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), output_stride)


def resnet50_v1c(output_stride: int = 8) -> ResNet:
    """mmsegmentation's ResNetV1c-50: stem 32-32-64, contracted first dilation."""
    return ResNet(Bottleneck, (3, 4, 6, 3), output_stride, stem_channels=(32, 32, 64),
                  contract_dilation=True)


def resnet101_v1c(output_stride: int = 8) -> ResNet:
    """mmsegmentation's ResNetV1c-101: stem 32-32-64, contracted first dilation."""
    return ResNet(Bottleneck, (3, 4, 23, 3), output_stride, stem_channels=(32, 32, 64),
                  contract_dilation=True)


def resnet_tiny(output_stride: int = 8) -> ResNet:
    """A few-channel ResNet (one basic block per stage, channels 16-128) for CPU smoke runs."""
    return ResNet(BasicBlock, (1, 1, 1, 1), output_stride, stem_channels=(8, 8, 16),
                  widths=(16, 32, 64, 128))
