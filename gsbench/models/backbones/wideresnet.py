"""WideResNet-38 ("ResNet-38", model A2 of Wu, Shen and van den Hengel, "Wider or Deeper:
Revisiting the ResNet Model for Visual Recognition", Pattern Recognition 2019), the dilated
regular stream of Gated-SCNN (Takikawa et al., ICCV 2019, Tables 3-5) and of the GFF
re-implementation.

A pre-activation network (every block starts with BN + ReLU on its input) of seven modules:

    mod1  3x3 conv 3 -> 64, stride 1 (the "first convolutional layer" Gated-SCNN's shape stream
          reads, Sec. 3)
    mod2  max-pool /2, 3 blocks (128, 128)                      stride 2
    mod3  max-pool /2, 3 blocks (256, 256)                      stride 4   -> c2 (256 channels)
    mod4  6 blocks (512, 512), the first strided                stride 8   -> c3 (512)
    mod5  3 blocks (512, 1024)                                              -> c4 (1024)
    mod6  1 bottleneck block (512, 1024, 2048), dropout 0.3
    mod7  1 bottleneck block (1024, 2048, 4096), dropout 0.5               -> c5 (4096)

Two-value entries are blocks of two 3x3 convs, three-value entries bottlenecks 1x1-3x3-1x1; a
block whose stride or width changes has a 1x1 projection shortcut fed by its pre-activation.
At output stride 8 (the DeepLab-era setting of Gated-SCNN) mod5 uses dilation 2 and mod6 / mod7
dilation 4, every block of a module with the same dilation; output stride 16 strides mod5 and
halves those dilations, 32 strides mod5 and mod6 (the undilated ImageNet network).

The final BN + ReLU of the classification network (``bn_out``) is not part of the backbone:
Gated-SCNN's ASPP reads mod7's raw output, like its official code. Module names follow that code
(``mod1.conv1``, ``mod2.block1.bn1.0``, ``convs.conv1``, ``proj_conv``) so its ImageNet
checkpoint keys line up.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones.resnet import init_kaiming

#: (stride, dilation) of the first block of mod4..mod7 for each output stride.
_MODULE_STRIDES = {
    8: ((2, 1), (1, 2), (1, 4), (1, 4)),
    16: ((2, 1), (2, 1), (1, 2), (1, 2)),
    32: ((2, 1), (2, 1), (2, 1), (1, 1)),
}


def bn_relu(channels: int) -> nn.Sequential:
    """The pre-activation: BatchNorm then ReLU."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class IdentityResidualBlock(nn.Module):
    """Pre-activation residual block; ``channels`` (a, b) = two 3x3 convs, (a, b, c) = bottleneck.

    ``out = convs(bn_relu(x)) + shortcut`` where the shortcut is ``x`` itself, or a strided 1x1
    projection of ``bn_relu(x)`` when the stride or the width changes. ``dropout`` (a rate) sits
    before the last convolution, as in Wu et al.'s mod6 / mod7.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], stride: int = 1,
                 dilation: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = bn_relu(in_channels)
        if len(channels) == 2:
            layers = [
                ("conv1", nn.Conv2d(in_channels, channels[0], 3, stride, padding=dilation,
                                    dilation=dilation, bias=False)),
                ("bn2", bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, padding=dilation,
                                    dilation=dilation, bias=False)),
            ]
        elif len(channels) == 3:
            layers = [
                ("conv1", nn.Conv2d(in_channels, channels[0], 1, stride, bias=False)),
                ("bn2", bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, padding=dilation,
                                    dilation=dilation, bias=False)),
                ("bn3", bn_relu(channels[1])),
                ("conv3", nn.Conv2d(channels[1], channels[2], 1, bias=False)),
            ]
        else:
            raise GsbenchError(f"a residual block has 2 or 3 widths, got {channels}")
        if dropout > 0:
            layers.insert(len(layers) - 1, ("dropout", nn.Dropout2d(dropout)))
        self.convs = nn.Sequential(OrderedDict(layers))
        self.proj_conv = None
        if stride != 1 or in_channels != channels[-1]:
            self.proj_conv = nn.Conv2d(in_channels, channels[-1], 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.bn1(x)
        shortcut = x if self.proj_conv is None else self.proj_conv(activated)
        return self.convs(activated) + shortcut


class WideResNet38(nn.Module):
    """Dilated WideResNet-38 returning [c2, c3, c4, c5] = [mod3, mod4, mod5, mod7] outputs.

    ``channels`` = (256, 512, 1024, 4096) at full width; ``width_divisor`` shrinks every width
    (and ``blocks`` the block counts) for the CPU smoke variant ``wideresnet_tiny``.
    Strides: c2 4, c3 8, c4 ``min(output_stride, 16)``, c5 ``output_stride``.
    """

    def __init__(self, output_stride: int = 8, blocks: tuple[int, ...] = (3, 3, 6, 3, 1, 1),
                 width_divisor: int = 1):
        super().__init__()
        if output_stride not in _MODULE_STRIDES:
            raise GsbenchError(f"output_stride must be one of {sorted(_MODULE_STRIDES)}, "
                               f"got {output_stride}")
        self.output_stride = output_stride
        widths = [(128, 128), (256, 256), (512, 512), (512, 1024), (512, 1024, 2048),
                  (1024, 2048, 4096)]
        widths = [tuple(w // width_divisor for w in ws) for ws in widths]
        dropouts = (0.0, 0.0, 0.0, 0.0, 0.3, 0.5)
        schedule = ((1, 1), (1, 1)) + _MODULE_STRIDES[output_stride]
        stem = 64 // width_divisor
        self.mod1 = nn.Sequential(OrderedDict(
            [("conv1", nn.Conv2d(3, stem, 3, padding=1, bias=False))]))
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.pool3 = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = stem
        for index, (count, channels, dropout, (stride, dilation)) in enumerate(
                zip(blocks, widths, dropouts, schedule)):
            stage = []
            for b in range(count):
                stage.append((f"block{b + 1}", IdentityResidualBlock(
                    in_channels, channels, stride if b == 0 else 1, dilation, dropout)))
                in_channels = channels[-1]
            self.add_module(f"mod{index + 2}", nn.Sequential(OrderedDict(stage)))
        self.channels = (widths[1][-1], widths[2][-1], widths[3][-1], widths[5][-1])
        init_kaiming(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.mod1(x)
        x = self.mod2(self.pool2(x))
        c2 = self.mod3(self.pool3(x))
        c3 = self.mod4(c2)
        c4 = self.mod5(c3)
        c5 = self.mod7(self.mod6(c4))
        return [c2, c3, c4, c5]


def wideresnet38(output_stride: int = 8) -> WideResNet38:
    return WideResNet38(output_stride)


def wideresnet_tiny(output_stride: int = 8) -> WideResNet38:
    """One block per module and 1/8 of the widths (8-512 channels) for CPU smoke runs."""
    return WideResNet38(output_stride, blocks=(1, 1, 1, 1, 1, 1), width_divisor=8)
