"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution", Sec. 3.3) and DeepLabV3+
(Chen et al., ECCV 2018, Sec. 3.1 decoder).

ASPP: a 1x1 conv, three 3x3 atrous convs and image-level pooling, 256 channels each, BN +
ReLU, concatenated and fused by a 1x1 conv to 256. Rates (6, 12, 18) at output stride 16 are
doubled to (12, 24, 36) at output stride 8, the setting Gated-SCNN and GPSNet use.

``head="mmseg"`` builds the heads as mmsegmentation does (``ASPPHead`` in
``mmseg/models/decode_heads/aspp_head.py``, ``DepthwiseSeparableASPPHead`` in
``sep_aspp_head.py``), the form its released DeepLabV3 / V3+ checkpoints need: 512 channels,
the image-pooling branch first in the concatenation, a 3x3 (not 1x1) bottleneck after it, and
the classifier on 512 channels. DeepLabV3+ then also uses depthwise-separable convolutions
(depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU, mmcv's ``DepthwiseSeparableConvModule``)
for the three atrous branches and for the two decoder convs (Sec. 3.2 "atrous separable
convolution"), which take the 48-channel c2 projection concatenated after the upsampled ASPP.

Where the paper and the official code differ: docs/fidelity.md, "DANet, CCNet, ANN and the
other baselines".
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from gsbench.errors import GsbenchError

from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model, resize
from gsbench.models.registry import register_model

ASPP_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48
#: ``head`` option of both builders: the papers' head, or mmsegmentation's
HEAD_FORMS = ("paper", "mmseg")
#: channels of mmsegmentation's ASPP heads (``channels=512`` in ``configs/_base_/models/``)
MMSEG_CHANNELS = 512


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """(6, 12, 18) at output stride 16, scaled with the feature resolution: (12, 24, 36) at 8."""
    return tuple(r * 16 // output_stride for r in (6, 12, 18))


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 conv (BN, ReLU) then pointwise 1x1 conv (BN, ReLU): mmcv's
    ``DepthwiseSeparableConvModule`` with its default norm and activation on both convs."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1):
        depthwise = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation,
                      groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
        )
        super().__init__(OrderedDict(depthwise=depthwise,
                                     pointwise=ConvBNReLU(in_channels, out_channels, 1)))


def conv3x3_bn_relu(in_channels: int, out_channels: int, dilation: int = 1,
                    separable: bool = False) -> nn.Module:
    """A 3x3 (atrous) ConvBNReLU, or its depthwise-separable form."""
    if separable:
        return SeparableConvBNReLU(in_channels, out_channels, dilation)
    return ConvBNReLU(in_channels, out_channels, 3, dilation=dilation)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with image pooling; returns ``channels`` feature maps.

    Branches: a 1x1 conv, one 3x3 atrous conv per rate (``separable``: depthwise-separable) and
    the image pooling; concatenated (pooling last, or first with ``pool_first``) and fused by a
    ``project_kernel`` x ``project_kernel`` conv. The defaults are the paper's form, the mmseg
    form is ``pool_first=True, project_kernel=3``.
    """

    def __init__(self, in_channels: int, rates: tuple[int, ...], channels: int = ASPP_CHANNELS,
                 pool_first: bool = False, project_kernel: int = 1, separable: bool = False):
        super().__init__()
        self.channels = channels
        self.pool_first = pool_first
        self.branches = nn.ModuleList([ConvBNReLU(in_channels, channels, 1)] + [
            conv3x3_bn_relu(in_channels, channels, r, separable) for r in rates])
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                        ConvBNReLU(in_channels, channels, 1))
        self.project = ConvBNReLU(channels * (len(rates) + 2), channels, project_kernel)

    def forward(self, x: Tensor) -> Tensor:
        pooled = [self.image_pool(x).expand(-1, -1, *x.shape[-2:])]
        branches = [b(x) for b in self.branches]
        return self.project(torch.cat(pooled + branches if self.pool_first else branches + pooled,
                                      dim=1))


def head_aspp(in_channels: int, rates: tuple[int, ...], head: str,
              separable: bool = False) -> ASPP:
    """The ASPP of a DeepLab head: the paper's (256 channels, 1x1 projection, pooling last) or
    mmseg's (512 channels, 3x3 bottleneck, pooling first; ``separable`` atrous branches for
    DeepLabV3+)."""
    if head not in HEAD_FORMS:
        raise GsbenchError(f"deeplab head must be one of {', '.join(HEAD_FORMS)}, got {head!r}")
    if head == "mmseg":
        return ASPP(in_channels, rates, MMSEG_CHANNELS, pool_first=True, project_kernel=3,
                    separable=separable)
    return ASPP(in_channels, rates)


class DeepLabV3Head(nn.Module):
    """ASPP on c5, dropout, 1x1 classifier (``head="mmseg"``: mmseg's ASPPHead)."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...],
                 dropout: float = 0.1, head: str = "paper"):
        super().__init__()
        self.aspp = head_aspp(in_channels, rates, head)
        self.cls = classifier(self.aspp.channels, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.cls(self.aspp(features[-1]))


class DeepLabV3PlusHead(nn.Module):
    """ASPP on c5, upsampled to c2 (stride 4) and concatenated with c2 projected to 48
    channels; two 3x3 convs (256), dropout, 1x1 classifier. ``head="mmseg"``: mmseg's
    DepthwiseSeparableASPPHead (512 channels, separable atrous branches and decoder convs)."""

    def __init__(self, low_channels: int, in_channels: int, num_classes: int,
                 rates: tuple[int, ...], dropout: float = 0.1, head: str = "paper",
                 align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners
        mmseg = head == "mmseg"
        self.aspp = head_aspp(in_channels, rates, head, separable=mmseg)
        channels = self.aspp.channels
        self.low_level = ConvBNReLU(low_channels, LOW_LEVEL_CHANNELS, 1)
        self.fuse = nn.Sequential(
            conv3x3_bn_relu(channels + LOW_LEVEL_CHANNELS, channels, separable=mmseg),
            conv3x3_bn_relu(channels, channels, separable=mmseg),
        )
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        c2, c5 = features[0], features[-1]
        low = self.low_level(c2)
        high = resize(self.aspp(c5), low.shape[-2:], self.align_corners)
        return self.cls(self.fuse(torch.cat([high, low], dim=1)))


@register_model
def deeplabv3(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
              pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
              rates: tuple[int, ...] | None = None, head: str = "paper",
              align_corners: bool = False) -> nn.Module:
    """DeepLabV3: dilated ResNet + ASPP head (+ stage-3 aux FCN head). ``head``: "paper"
    (256 channels, 1x1 projection) or "mmseg" (mmsegmentation's ASPPHead, see the module).
    ``align_corners``: the model-level option of
    :class:`~gsbench.models.common.SegmentationModel` (true for mmseg's 769 x 769 models)."""
    encoder = build_backbone(backbone, output_stride, pretrained)
    rates = tuple(rates) if rates is not None else aspp_rates(output_stride)
    decode_head = DeepLabV3Head(encoder.channels[-1], num_classes, rates, dropout, head)
    return make_model(encoder, decode_head, num_classes, aux, dropout, align_corners)


@register_model
def deeplabv3plus(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
                  pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
                  rates: tuple[int, ...] | None = None, head: str = "paper",
                  align_corners: bool = False) -> nn.Module:
    """DeepLabV3+: DeepLabV3's ASPP + the stride-4 decoder (+ stage-3 aux FCN head).
    ``head``: "paper" (plain 3x3 convs, 256 channels) or "mmseg" (mmsegmentation's
    DepthwiseSeparableASPPHead, see the module). ``align_corners``: the model-level option of
    :class:`~gsbench.models.common.SegmentationModel` (true for mmseg's 769 x 769 models), also
    for the decoder's upsampling of the ASPP output."""
    encoder = build_backbone(backbone, output_stride, pretrained)
    rates = tuple(rates) if rates is not None else aspp_rates(output_stride)
    decode_head = DeepLabV3PlusHead(encoder.channels[0], encoder.channels[-1], num_classes,
                                    rates, dropout, head, align_corners)
    return make_model(encoder, decode_head, num_classes, aux, dropout, align_corners)
