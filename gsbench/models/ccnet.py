"""CCNet: Criss-Cross Network (Huang et al., "CCNet: Criss-Cross Attention for Semantic
Segmentation", ICCV 2019), laid out as the official code and mmsegmentation's CCHead.

Criss-cross attention (Sec. 3.2, Eq. 1-2) on a map H of C channels: Q and K are 1x1 convs to
C/8 channels, V a 1x1 conv to C. For position u, Omega_u is the set of the H + W - 1 positions
in u's row and column, u itself counted once; the affinity d_{i,u} = Q_u . Omega_{i,u}
(no scaling) goes through a softmax over those H + W - 1 positions jointly and

    H'_u = gamma * sum_i A_{i,u} Phi_{i,u} + H_u

with Phi = V. The paper's Eq. 2 has no gamma; as the official code and mmseg, gamma is a
learnable scalar initialised to 0, so the block starts as the identity (gamma = 1 is the
paper's formula). The official code gets "self counted once" by putting -inf on the self
entry of the column affinities; gsbench does the same.

Recurrent criss-cross attention (RCCA, Sec. 3.3): the *same* module (shared weights) applied
R = 2 times, which connects every pair of positions.

Head (Fig. 2, official code / mmseg CCHead): 3x3 conv c5 -> 512 (BN, ReLU), RCCA, 3x3 conv
512 -> 512, concatenation with c5, 3x3 conv to 512 (BN, ReLU), dropout 0.1, 1x1 classifier;
aux FCN head on stage 3 with weight 0.4 (mmseg; the official code uses the same deep
supervision).

Where the paper and the official code differ: docs/fidelity.md, "DANet, CCNet, ANN and the
other baselines".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model
from gsbench.models.registry import register_model


def criss_cross_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """sum_i A_{i,u} Phi_{i,u} of Eq. 2 for every position u (N x C x H x W), no residual.

    ``query``, ``key``: N x C' x H x W; ``value``: N x C x H x W. The column affinities
    (N x H x W x H) and the row affinities (N x H x W x W) are softmaxed jointly; the self
    entry appears in both and is masked out of the column part so it counts once.
    """
    height = query.shape[2]
    column = torch.einsum("nchw,ncgw->nhwg", query, key)  # g: row index of the column partner
    row = torch.einsum("nchw,nchv->nhwv", query, key)  # v: column index of the row partner
    self_entry = torch.eye(height, dtype=torch.bool, device=query.device).view(1, height, 1, height)
    column = column.masked_fill(self_entry, float("-inf"))
    attention = torch.softmax(torch.cat([column, row], dim=3), dim=3)
    att_column, att_row = attention[..., :height], attention[..., height:]
    out = torch.einsum("nhwg,ncgw->nchw", att_column, value)
    return out + torch.einsum("nhwv,nchv->nchw", att_row, value)


class CrissCrossAttention(nn.Module):
    """One criss-cross attention module (Eq. 1-2), same channels in and out."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        if channels < reduction:
            raise GsbenchError(f"criss-cross attention needs at least {reduction} channels, "
                               f"got {channels}")
        self.query = nn.Conv2d(channels, channels // reduction, 1)
        self.key = nn.Conv2d(channels, channels // reduction, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        context = criss_cross_attention(self.query(x), self.key(x), self.value(x))
        return self.gamma * context + x


class RecurrentCrissCrossAttention(nn.Module):
    """RCCA (Sec. 3.3): one :class:`CrissCrossAttention` applied ``recurrence`` times."""

    def __init__(self, channels: int, recurrence: int = 2):
        super().__init__()
        if recurrence < 1:
            raise GsbenchError(f"ccnet recurrence must be >= 1, got {recurrence}")
        self.recurrence = recurrence
        self.attention = CrissCrossAttention(channels)

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.recurrence):
            x = self.attention(x)
        return x


class CCHead(nn.Module):
    """CCNet decode head: conv in, RCCA, conv out, concat with c5, 3x3 bottleneck, classifier."""

    def __init__(self, in_channels: int, num_classes: int, recurrence: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        channels = in_channels // 4
        self.conv_in = ConvBNReLU(in_channels, channels, 3)
        self.rcca = RecurrentCrissCrossAttention(channels, recurrence)
        self.conv_out = ConvBNReLU(channels, channels, 3)
        self.bottleneck = ConvBNReLU(in_channels + channels, channels, 3)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)  # leaves gamma at 0

    def forward(self, features: list[Tensor]) -> Tensor:
        c5 = features[-1]
        context = self.conv_out(self.rcca(self.conv_in(c5)))
        return self.cls(self.bottleneck(torch.cat([c5, context], dim=1)))


@register_model
def ccnet(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
          pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
          recurrence: int = 2, align_corners: bool = False) -> nn.Module:
    """CCNet: dilated ResNet + criss-cross head (R = ``recurrence``) + stage-3 aux FCN head.
    ``align_corners``: the model-level option of
    :class:`~gsbench.models.common.SegmentationModel` (true for mmseg's 769 x 769 models)."""
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = CCHead(encoder.channels[-1], num_classes, recurrence, dropout)
    return make_model(encoder, head, num_classes, aux, dropout, align_corners)
