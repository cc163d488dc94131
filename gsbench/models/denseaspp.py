"""DenseASPP (Yang et al., "DenseASPP for Semantic Segmentation in Street Scenes", CVPR 2018).

Eq. (3)-(4): atrous layers with dilations 3, 6, 12, 18, 24 are densely connected, layer l
seeing the input and every earlier layer's output. Each layer is a 1x1 conv to ``reduce``
channels followed by a 3x3 atrous conv to ``growth`` channels (the paper's 1x1 keeps the dense
input affordable). The concatenation of the input and all layer outputs goes to dropout and the
1x1 classifier. docs/fidelity.md ("GPSNet, OCNet and DenseASPP") records the evidence below.

The DenseASPP paper is a baseline's source, not one of the five papers; the defaults follow
the released code (DeepMotionAIResearch/DenseASPP, ``models/DenseASPP.py``,
``cfgs/DenseASPP161.py``), the only statement of the widths:

- ``reduce=512``, ``growth=128``: ``d_feature0`` / ``d_feature1`` of the DenseNet-161 model (the
  release has no ResNet configuration; gsbench's earlier widths were C/4 = 512 and C/8 = 256);
- ``form="official"`` (``_DenseAsppBlock``): pre-activation layers - BN, ReLU, 1x1 conv (with
  bias), BN, ReLU, 3x3 atrous conv (with bias), dropout 0.1 - whose first layer has no leading
  BN (the backbone's output is normalised already); each new map is concatenated *in front* of
  the previous ones, so the classifier reads [y_L, ..., y_1, x]. ``form="post_activation"``:
  gsbench's earlier conv-BN-ReLU layers without biases or dropout, concatenated [x, y_1 ...].

GPSNet's Table 4 prints 25.6 M parameters for DenseASPP {1, 12, 24, 36}; counted as that table
counts its other rows (convolution weights on 2048 channels), the official widths give 6.95 M
and the earlier ones 9.70 M: tests/test_denseaspp.py shows the only reading that reaches 25.6 M.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model
from gsbench.models.registry import register_model

DENSEASPP_FORMS = ("official", "post_activation")
#: The release's widths for DenseNet-161 (``cfgs/DenseASPP161.py``: d_feature0, d_feature1).
OFFICIAL_REDUCE, OFFICIAL_GROWTH = 512, 128


def official_layer(in_channels: int, reduce: int, growth: int, dilation: int,
                   leading_bn: bool) -> nn.Sequential:
    """``_DenseAsppBlock`` of the release: [BN], ReLU, 1x1 conv, BN, ReLU, 3x3 atrous conv
    (both convs with bias). Its dropout is applied by :class:`DenseASPPBlock`."""
    layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)] if leading_bn else []
    layers += [nn.ReLU(inplace=False), nn.Conv2d(in_channels, reduce, 1),
               nn.BatchNorm2d(reduce), nn.ReLU(inplace=True),
               nn.Conv2d(reduce, growth, 3, padding=dilation, dilation=dilation)]
    return nn.Sequential(*layers)


class DenseASPPBlock(nn.Module):
    """The densely connected atrous layers; ``forward`` returns the concatenation of the input
    and every layer's output (``out_channels`` channels) in the order of ``form``."""

    def __init__(self, in_channels: int, dilations: tuple[int, ...], reduce: int = OFFICIAL_REDUCE,
                 growth: int = OFFICIAL_GROWTH, form: str = "official", dropout: float = 0.1):
        super().__init__()
        self.official = form == "official"
        if self.official:
            self.layers = nn.ModuleList(
                official_layer(in_channels + i * growth, reduce, growth, d, leading_bn=i > 0)
                for i, d in enumerate(dilations))
            self.dropout = nn.Dropout2d(dropout)
        else:
            self.layers = nn.ModuleList(
                nn.Sequential(ConvBNReLU(in_channels + i * growth, reduce, 1),
                              ConvBNReLU(reduce, growth, 3, dilation=d))
                for i, d in enumerate(dilations))
        self.out_channels = in_channels + len(dilations) * growth

    def forward(self, x: Tensor) -> Tensor:
        if self.official:
            for layer in self.layers:
                x = torch.cat([self.dropout(layer(x)), x], dim=1)  # the new map in front
            return x
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class DenseASPPHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dilations: tuple[int, ...],
                 dropout: float = 0.1, reduce: int = OFFICIAL_REDUCE,
                 growth: int = OFFICIAL_GROWTH, form: str = "official"):
        super().__init__()
        self.dense_aspp = DenseASPPBlock(in_channels, dilations, reduce, growth, form, dropout)
        self.cls = classifier(self.dense_aspp.out_channels, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.cls(self.dense_aspp(features[-1]))


@register_model
def denseaspp(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
              pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
              dilations: tuple[int, ...] = (3, 6, 12, 18, 24), reduce: int = OFFICIAL_REDUCE,
              growth: int = OFFICIAL_GROWTH, form: str = "official") -> nn.Module:
    """DenseASPP on a dilated backbone. ``reduce`` / ``growth``: the 1x1 and 3x3 widths of each
    layer (the release's 512 / 128 by default); ``form``: "official" (pre-activation layers
    with dropout) or "post_activation"."""
    if form not in DENSEASPP_FORMS:
        raise GsbenchError(f"denseaspp form must be one of {', '.join(DENSEASPP_FORMS)}, "
                           f"got {form!r}")
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = DenseASPPHead(encoder.channels[-1], num_classes, tuple(dilations), dropout, reduce,
                         growth, form)
    return make_model(encoder, head, num_classes, aux, dropout)
