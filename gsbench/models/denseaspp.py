"""DenseASPP (Yang et al., "DenseASPP for Semantic Segmentation in Street Scenes", CVPR 2018).

Eq. (3)-(4): atrous layers with dilations 3, 6, 12, 18, 24 are densely connected, layer l
seeing ``concat(x, y_1, ..., y_{l-1})``. Each layer is a 1x1 conv to ``reduce`` channels (c5/4,
512) followed by a 3x3 atrous conv to ``growth`` channels (c5/8, 256), both with BN + ReLU
(the paper's 1x1 "reduce to half" keeps the dense input affordable). The concatenation of the
input and all layer outputs goes to dropout and the 1x1 classifier.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model
from gsbench.models.registry import register_model


class DenseASPPBlock(nn.Module):
    def __init__(self, in_channels: int, dilations: tuple[int, ...], reduce: int, growth: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(ConvBNReLU(in_channels + i * growth, reduce, 1),
                          ConvBNReLU(reduce, growth, 3, dilation=d))
            for i, d in enumerate(dilations)
        )
        self.out_channels = in_channels + len(dilations) * growth

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class DenseASPPHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dilations: tuple[int, ...],
                 dropout: float = 0.1):
        super().__init__()
        self.dense_aspp = DenseASPPBlock(in_channels, dilations, in_channels // 4,
                                         in_channels // 8)
        self.cls = classifier(self.dense_aspp.out_channels, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.cls(self.dense_aspp(features[-1]))


@register_model
def denseaspp(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
              pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
              dilations: tuple[int, ...] = (3, 6, 12, 18, 24)) -> nn.Module:
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = DenseASPPHead(encoder.channels[-1], num_classes, tuple(dilations), dropout)
    return make_model(encoder, head, num_classes, aux, dropout)
