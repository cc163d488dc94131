"""FCN baseline on a dilated ResNet (Long et al., CVPR 2015; mmseg ``FCNHead`` with 2 convs).

``concat_input=True`` adds mmsegmentation's ``conv_cat`` (``mmseg/models/decode_heads/
fcn_head.py``, ``concat_input=True`` in ``configs/_base_/models/fcn_r50-d8.py``): a 3x3 conv on
the concatenation of the head's input (c5) and the two convs' output, back to c5/4 channels,
before the classifier. The released mmseg FCN checkpoints need it; the papers' dilated-FCN
baseline (PSANet Tables 1, 4, 5) is the head without it, the default.

Where the paper and the official code differ: docs/fidelity.md, "DANet, CCNet, ANN and the
other baselines".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model
from gsbench.models.registry import register_model


class FCNHead(nn.Module):
    """Two 3x3 ConvBNReLU (c5 -> c5/4 channels, 2048 -> 512), optionally ``conv_cat`` (3x3 on
    concat(c5, convs) -> c5/4), dropout, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1,
                 concat_input: bool = False):
        super().__init__()
        channels = in_channels // 4
        self.convs = nn.Sequential(ConvBNReLU(in_channels, channels, 3),
                                   ConvBNReLU(channels, channels, 3))
        self.conv_cat = ConvBNReLU(in_channels + channels, channels, 3) if concat_input else None
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = features[-1]
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls(out)


@register_model
def fcn(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
        pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
        concat_input: bool = False, align_corners: bool = False) -> nn.Module:
    """FCN: dilated ResNet + two-conv head (+ stage-3 aux FCN head). ``concat_input``: add
    mmseg's ``conv_cat`` (see the module). ``align_corners``: the model-level option of
    :class:`~gsbench.models.common.SegmentationModel` (true for mmseg's 769 x 769 models)."""
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = FCNHead(encoder.channels[-1], num_classes, dropout, concat_input)
    return make_model(encoder, head, num_classes, aux, dropout, align_corners)
