"""PSPNet: pyramid pooling module (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017).

Sec. 3.3: the c5 map is average-pooled to 1x1, 2x2, 3x3 and 6x6 bins, each level reduced by a
1x1 conv to 1/N of the channels (2048 -> 4 x 512), upsampled bilinearly and concatenated with
c5 (4096 channels); a 3x3 conv to 512, dropout 0.1 and a 1x1 classifier follow. On ResNet-101
without the aux head this is the 65.6 M-parameter baseline of GFF Table 3.

The paper does not say how the pyramid levels and the logits are upsampled; ``align_corners``
(default False, the project's convention) switches both to ``align_corners=True``, the form of
hszhao/semseg's ``model/pspnet.py`` (``PPM.forward`` and the final x8 upsampling), which its
released weights need.

Where the paper and the official code differ: docs/fidelity.md, "PSANet and PSPNet".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model, resize
from gsbench.models.registry import register_model


class PyramidPooling(nn.Module):
    """Concatenate x with its adaptively average-pooled, reduced and upsampled pyramid levels."""

    def __init__(self, in_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6),
                 align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners
        reduced = in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNReLU(in_channels, reduced, 1))
            for b in bins
        )
        self.out_channels = in_channels + reduced * len(bins)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        return torch.cat([x] + [resize(stage(x), size, self.align_corners)
                                for stage in self.stages], dim=1)


class PSPHead(nn.Module):
    """Pyramid pooling, 3x3 bottleneck (4096 -> 512), dropout, classifier."""

    def __init__(self, in_channels: int, num_classes: int, bins: tuple[int, ...] = (1, 2, 3, 6),
                 dropout: float = 0.1, align_corners: bool = False):
        super().__init__()
        self.ppm = PyramidPooling(in_channels, bins, align_corners)
        self.bottleneck = ConvBNReLU(self.ppm.out_channels, in_channels // 4, 3)
        self.cls = classifier(in_channels // 4, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.cls(self.bottleneck(self.ppm(features[-1])))


@register_model
def pspnet(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
           pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
           bins: tuple[int, ...] = (1, 2, 3, 6), align_corners: bool = False) -> nn.Module:
    """PSPNet: dilated ResNet + pyramid pooling head (+ stage-3 aux FCN head, weight 0.4).

    ``align_corners``: upsample the pyramid levels and the logits with align_corners=True
    (hszhao/semseg), see the module docstring.
    """
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = PSPHead(encoder.channels[-1], num_classes, tuple(bins), dropout, align_corners)
    return make_model(encoder, head, num_classes, aux, dropout, align_corners)
