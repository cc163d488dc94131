"""Non-local network baseline (Wang et al., "Non-local Neural Networks", CVPR 2018), laid out as
mmsegmentation's NLNet head.

Head: 3x3 conv c5 -> 512, a non-local block, 3x3 conv 512 -> 512, concatenation with c5, 3x3
conv to 512, dropout, 1x1 classifier. The block (Eq. 1, 6) computes

    y_i = 1/C(x) * sum_j f(x_i, x_j) g(x_j),   z_i = W_z y_i + x_i

with theta, phi, g 1x1 convs to half the channels. ``mode="embedded_gaussian"`` (default, Eq. 3,
mmseg's default with ``use_scale``): f = exp(theta_i . phi_j / sqrt(d)), C = sum_j f, i.e. a
softmax. ``mode="dot_product"`` (Eq. 4): f = theta_i . phi_j, C = number of positions.
W_z is a 1x1 conv + BN whose scale starts at zero, so the block starts as the identity.

Where the paper and the official code differ: docs/fidelity.md, "DANet, CCNet, ANN and the
other baselines".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model
from gsbench.models.registry import register_model

NONLOCAL_MODES = ("embedded_gaussian", "dot_product")


class NonLocalBlock(nn.Module):
    def __init__(self, channels: int, mode: str = "embedded_gaussian", reduction: int = 2):
        super().__init__()
        if mode not in NONLOCAL_MODES:
            raise GsbenchError(f"nonlocal mode must be one of {', '.join(NONLOCAL_MODES)}, "
                               f"got {mode!r}")
        self.mode = mode
        inter = channels // reduction
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.out = nn.Sequential(nn.Conv2d(inter, channels, 1, bias=False),
                                 nn.BatchNorm2d(channels))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.out[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # N x HW x C'
        phi = self.phi(x).flatten(2)  # N x C' x HW
        g = self.g(x).flatten(2).transpose(1, 2)  # N x HW x C'
        pairwise = torch.bmm(theta, phi)  # N x HW x HW, f before normalisation
        if self.mode == "embedded_gaussian":
            weights = torch.softmax(pairwise / math.sqrt(theta.shape[-1]), dim=-1)
        else:
            weights = pairwise / pairwise.shape[-1]
        y = torch.bmm(weights, g).transpose(1, 2).reshape(n, -1, h, w)
        return x + self.out(y)


class NonLocalHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, mode: str = "embedded_gaussian",
                 dropout: float = 0.1):
        super().__init__()
        channels = in_channels // 4
        self.conv_in = ConvBNReLU(in_channels, channels, 3)
        self.nonlocal_block = NonLocalBlock(channels, mode)
        self.conv_out = ConvBNReLU(channels, channels, 3)
        self.bottleneck = ConvBNReLU(in_channels + channels, channels, 3)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)
        self.nonlocal_block.reset_parameters()

    def forward(self, features: list[Tensor]) -> Tensor:
        c5 = features[-1]
        context = self.conv_out(self.nonlocal_block(self.conv_in(c5)))
        return self.cls(self.bottleneck(torch.cat([c5, context], dim=1)))


@register_model(name="nonlocal")
def nonlocal_net(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
                 pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
                 mode: str = "embedded_gaussian", align_corners: bool = False) -> nn.Module:
    """Non-local baseline: dilated ResNet + non-local head (+ stage-3 aux FCN head).
    ``mode``: the pairwise function (module docstring). ``align_corners``: the model-level option of
    :class:`~gsbench.models.common.SegmentationModel` (true for mmseg's 769 x 769 models)."""
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = NonLocalHead(encoder.channels[-1], num_classes, mode, dropout)
    return make_model(encoder, head, num_classes, aux, dropout, align_corners)
