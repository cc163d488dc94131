"""FCN baseline on a dilated ResNet (Long et al., CVPR 2015; mmseg ``FCNHead`` with 2 convs)."""

from __future__ import annotations

from torch import Tensor, nn

from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model
from gsbench.models.registry import register_model


class FCNHead(nn.Module):
    """Two 3x3 ConvBNReLU (c5 -> c5/4 channels, 2048 -> 512), dropout, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        channels = in_channels // 4
        self.convs = nn.Sequential(ConvBNReLU(in_channels, channels, 3),
                                   ConvBNReLU(channels, channels, 3))
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.cls(self.convs(features[-1]))


@register_model
def fcn(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
        pretrained: str | None = None, aux: bool = True, dropout: float = 0.1) -> nn.Module:
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = FCNHead(encoder.channels[-1], num_classes, dropout)
    return make_model(encoder, head, num_classes, aux, dropout)
