"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution", Sec. 3.3) and DeepLabV3+
(Chen et al., ECCV 2018, Sec. 3.1 decoder).

ASPP: a 1x1 conv, three 3x3 atrous convs and image-level pooling, 256 channels each, BN +
ReLU, concatenated and fused by a 1x1 conv to 256. Rates (6, 12, 18) at output stride 16 are
doubled to (12, 24, 36) at output stride 8, the setting Gated-SCNN and GPSNet use.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model, resize
from gsbench.models.registry import register_model

ASPP_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """(6, 12, 18) at output stride 16, scaled with the feature resolution: (12, 24, 36) at 8."""
    return tuple(r * 16 // output_stride for r in (6, 12, 18))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with image pooling; returns ``channels`` feature maps."""

    def __init__(self, in_channels: int, rates: tuple[int, ...], channels: int = ASPP_CHANNELS):
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(in_channels, channels, 1)] + [
            ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates])
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                        ConvBNReLU(in_channels, channels, 1))
        self.project = ConvBNReLU(channels * (len(rates) + 2), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Head(nn.Module):
    """ASPP on c5, dropout, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...],
                 dropout: float = 0.1):
        super().__init__()
        self.aspp = ASPP(in_channels, rates)
        self.cls = classifier(ASPP_CHANNELS, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.cls(self.aspp(features[-1]))


class DeepLabV3PlusHead(nn.Module):
    """ASPP on c5, upsampled to c2 (stride 4) and concatenated with c2 projected to 48
    channels; two 3x3 convs (256), dropout, 1x1 classifier."""

    def __init__(self, low_channels: int, in_channels: int, num_classes: int,
                 rates: tuple[int, ...], dropout: float = 0.1):
        super().__init__()
        self.aspp = ASPP(in_channels, rates)
        self.low_level = ConvBNReLU(low_channels, LOW_LEVEL_CHANNELS, 1)
        self.fuse = nn.Sequential(
            ConvBNReLU(ASPP_CHANNELS + LOW_LEVEL_CHANNELS, ASPP_CHANNELS, 3),
            ConvBNReLU(ASPP_CHANNELS, ASPP_CHANNELS, 3),
        )
        self.cls = classifier(ASPP_CHANNELS, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        c2, c5 = features[0], features[-1]
        low = self.low_level(c2)
        high = resize(self.aspp(c5), low.shape[-2:])
        return self.cls(self.fuse(torch.cat([high, low], dim=1)))


@register_model
def deeplabv3(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
              pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
              rates: tuple[int, ...] | None = None) -> nn.Module:
    encoder = build_backbone(backbone, output_stride, pretrained)
    rates = tuple(rates) if rates is not None else aspp_rates(output_stride)
    head = DeepLabV3Head(encoder.channels[-1], num_classes, rates, dropout)
    return make_model(encoder, head, num_classes, aux, dropout)


@register_model
def deeplabv3plus(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
                  pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
                  rates: tuple[int, ...] | None = None) -> nn.Module:
    encoder = build_backbone(backbone, output_stride, pretrained)
    rates = tuple(rates) if rates is not None else aspp_rates(output_stride)
    head = DeepLabV3PlusHead(encoder.channels[0], encoder.channels[-1], num_classes, rates,
                             dropout)
    return make_model(encoder, head, num_classes, aux, dropout)
