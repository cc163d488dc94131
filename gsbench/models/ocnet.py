"""OCNet: object context (Yuan & Wang, "OCNet: Object Context Network for Scene Parsing", 2018).

Object context of position p (Eq. 1-2): c_p = sum_i w_pi * phi(x_i) with
w_pi = softmax_i(f_q(x_p) . f_k(x_i) / sqrt(d)); query and key share one transform (1x1 conv,
BN, ReLU to 256 channels, as the official code), phi is a 1x1 conv, and the context passes a
1x1 output conv initialised to zero.

- ``context="base"`` (Base-OC): 3x3 conv c5 -> 512, object context, concatenation with its
  input, 1x1 conv to 512, dropout, classifier.
- ``context="asp"`` (ASP-OC): ASPP whose image-pooling branch is replaced by a 3x3 conv + object
  context branch: [3x3 + OC, 1x1, 3x3 atrous x3] at 512 channels, concatenated, 1x1 to 512.
  Atrous rates (12, 24, 36) at output stride 8, (6, 12, 18) at 16. The official code
  max-pools the object-context input by 2 in ASP-OC to save memory; gsbench attends at full
  feature resolution, as the paper describes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model
from gsbench.models.deeplab import aspp_rates
from gsbench.models.registry import register_model

OC_CONTEXTS = ("base", "asp")


class ObjectContext(nn.Module):
    """Self-attention object context c_p (Eq. 1-2) of a feature map; same channels out."""

    def __init__(self, channels: int, key_channels: int):
        super().__init__()
        self.query_key = ConvBNReLU(channels, key_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        qk = self.query_key(x).flatten(2)  # N x d x HW
        value = self.value(x).flatten(2).transpose(1, 2)  # N x HW x C
        weights = torch.softmax(torch.bmm(qk.transpose(1, 2), qk) / math.sqrt(qk.shape[1]),
                                dim=-1)
        context = torch.bmm(weights, value).transpose(1, 2).reshape(n, c, h, w)
        return self.out(context)


class BaseOCHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        channels = in_channels // 4
        self.conv_in = ConvBNReLU(in_channels, channels, 3)
        self.context = ObjectContext(channels, channels // 2)
        self.fuse = ConvBNReLU(2 * channels, channels, 1)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)
        self.context.reset_parameters()

    def forward(self, features: list[Tensor]) -> Tensor:
        x = self.conv_in(features[-1])
        return self.cls(self.fuse(torch.cat([self.context(x), x], dim=1)))


class ASPOCHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...],
                 dropout: float = 0.1):
        super().__init__()
        channels = in_channels // 4
        self.context_conv = ConvBNReLU(in_channels, channels, 3)
        self.context = ObjectContext(channels, channels // 2)
        self.branches = nn.ModuleList([ConvBNReLU(in_channels, channels, 1)] + [
            ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates])
        self.fuse = ConvBNReLU(channels * (len(rates) + 2), channels, 1)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)
        self.context.reset_parameters()

    def forward(self, features: list[Tensor]) -> Tensor:
        c5 = features[-1]
        x = self.context_conv(c5)
        # As in the official code the branch is the context alone (no residual); the
        # concatenation with the ASPP branches keeps the local features.
        object_branch = self.context(x)
        outs = [object_branch] + [branch(c5) for branch in self.branches]
        return self.cls(self.fuse(torch.cat(outs, dim=1)))


@register_model
def ocnet(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
          pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
          context: str = "base", rates: tuple[int, ...] | None = None) -> nn.Module:
    if context not in OC_CONTEXTS:
        raise GsbenchError(f"ocnet context must be one of {', '.join(OC_CONTEXTS)}, "
                           f"got {context!r}")
    encoder = build_backbone(backbone, output_stride, pretrained)
    if context == "base":
        head = BaseOCHead(encoder.channels[-1], num_classes, dropout)
    else:
        rates = tuple(rates) if rates is not None else aspp_rates(output_stride)
        head = ASPOCHead(encoder.channels[-1], num_classes, rates, dropout)
    return make_model(encoder, head, num_classes, aux, dropout)
