"""ANN: Asymmetric Non-local Neural Networks (Zhu et al., "Asymmetric Non-local Neural Networks
for Semantic Segmentation", ICCV 2019), laid out as mmsegmentation's ANNHead.

Asymmetric non-local attention (Sec. 3): the key and value are not taken at all N positions
but at S representative points sampled by *pyramid pooling* of the projected key and value
maps - adaptive average pooling to 1x1, 3x3, 6x6 and 8x8 cells, flattened and concatenated, so
S = 1 + 9 + 36 + 64 = 110 whatever the map size. With query Q (N x C'), sampled key K_P and
value V_P (S x C'):

    Y = softmax(Q K_P^T / sqrt(C')) V_P          (N x S attention instead of N x N)

then a 1x1 output conv. The 1/sqrt(C') scaling follows mmseg (``matmul_norm``); it only
rescales the logits.

- APNB (Asymmetric Pyramid Non-local Block): self-attention on one map; key and query share one
  1x1 conv + BN + ReLU to C' = 256, the value is a 1x1 conv to 256, the output conv goes back
  to C; the result is concatenated with the input and fused by a 1x1 conv + BN + ReLU.
- AFNB (Asymmetric Fusion Non-local Block): query from the high-level map (the paper's stage 5,
  c5, 2048 channels), key and value from the low-level one (its stage 4, c4, 1024 channels),
  each projection a 1x1 conv + BN + ReLU (value: plain 1x1 conv) to 256; the output conv goes
  to the high-level width (2048), the result is concatenated with the high-level map and fused
  by a 1x1 conv + BN (no ReLU, as mmseg).

Head: AFNB(c4, c5) -> dropout -> 3x3 conv 2048 -> 512 (BN, ReLU) -> APNB -> dropout 0.1 ->
1x1 classifier; the aux FCN head (weight 0.4) also reads c4, as in every gsbench model.

Where the paper and the official code differ: docs/fidelity.md, "DANet, CCNet, ANN and the
other baselines".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model
from gsbench.models.registry import register_model

#: Pyramid pooling sizes of the key / value sampling (paper Sec. 3.3 and mmseg): S = 110 points.
PYRAMID_SIZES = (1, 3, 6, 8)


def pyramid_sample(x: Tensor, sizes: tuple[int, ...] = PYRAMID_SIZES) -> Tensor:
    """N x C x H x W -> N x C x S: adaptive average pools to each size, flattened, concatenated."""
    return torch.cat([F.adaptive_avg_pool2d(x, size).flatten(2) for size in sizes], dim=2)


def asymmetric_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """softmax(Q K_P^T / sqrt(C')) V_P: ``query`` N x C' x H x W, ``key`` and
    ``value`` the sampled N x C' x S and N x Cv x S; returns N x Cv x H x W."""
    n, channels, h, w = query.shape
    energy = torch.bmm(query.flatten(2).transpose(1, 2), key) / math.sqrt(channels)  # N x HW x S
    attention = torch.softmax(energy, dim=-1)
    return torch.bmm(value, attention.transpose(1, 2)).reshape(n, value.shape[1], h, w)


class AsymmetricAttention(nn.Module):
    """Query from ``query_feats``, key and value from ``key_feats`` sampled at
    ``pyramid_sizes``; output conv to ``out_channels``. ``share_key_query`` (APNB) uses one
    projection for both, which needs the same input width."""

    def __init__(self, key_in_channels: int, query_in_channels: int, channels: int,
                 out_channels: int, share_key_query: bool,
                 pyramid_sizes: tuple[int, ...] = PYRAMID_SIZES):
        super().__init__()
        if not pyramid_sizes or min(pyramid_sizes) < 1:
            raise GsbenchError(f"annet pyramid_sizes must be positive ints, got {pyramid_sizes}")
        self.pyramid_sizes = tuple(int(s) for s in pyramid_sizes)
        self.key = ConvBNReLU(key_in_channels, channels, 1)
        self.query = self.key if share_key_query else ConvBNReLU(query_in_channels, channels, 1)
        self.value = nn.Conv2d(key_in_channels, channels, 1)
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, query_feats: Tensor, key_feats: Tensor) -> Tensor:
        key = pyramid_sample(self.key(key_feats), self.pyramid_sizes)
        value = pyramid_sample(self.value(key_feats), self.pyramid_sizes)
        return self.out(asymmetric_attention(self.query(query_feats), key, value))


class APNB(nn.Module):
    """Asymmetric Pyramid Non-local Block: fuse(concat(attention(x, x), x)), C -> ``out``."""

    def __init__(self, in_channels: int, out_channels: int, channels: int = 256,
                 pyramid_sizes: tuple[int, ...] = PYRAMID_SIZES):
        super().__init__()
        self.attention = AsymmetricAttention(in_channels, in_channels, channels, out_channels,
                                             share_key_query=True, pyramid_sizes=pyramid_sizes)
        self.fuse = ConvBNReLU(in_channels + out_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(torch.cat([self.attention(x, x), x], dim=1))


class AFNB(nn.Module):
    """Asymmetric Fusion Non-local Block: query from ``high``, key / value from ``low``;
    fuse(concat(context, high)) by a 1x1 conv + BN to ``out_channels``."""

    def __init__(self, low_in_channels: int, high_in_channels: int, out_channels: int,
                 channels: int = 256, pyramid_sizes: tuple[int, ...] = PYRAMID_SIZES):
        super().__init__()
        self.attention = AsymmetricAttention(low_in_channels, high_in_channels, channels,
                                             out_channels, share_key_query=False,
                                             pyramid_sizes=pyramid_sizes)
        self.fuse = nn.Sequential(
            nn.Conv2d(out_channels + high_in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        return self.fuse(torch.cat([self.attention(high, low), high], dim=1))


class ANNHead(nn.Module):
    """AFNB(c4, c5) -> dropout -> 3x3 conv to C5/4 -> APNB -> classifier."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int,
                 project_channels: int = 256, pyramid_sizes: tuple[int, ...] = PYRAMID_SIZES,
                 dropout: float = 0.1):
        super().__init__()
        channels = high_channels // 4
        self.fusion = AFNB(low_channels, high_channels, high_channels, project_channels,
                           pyramid_sizes)
        self.dropout = nn.Dropout2d(dropout)
        self.bottleneck = ConvBNReLU(high_channels, channels, 3)
        self.context = APNB(channels, channels, project_channels, pyramid_sizes)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        fused = self.dropout(self.fusion(features[2], features[3]))
        return self.cls(self.context(self.bottleneck(fused)))


@register_model
def annet(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
          pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
          project_channels: int = 256,
          pyramid_sizes: tuple[int, ...] = PYRAMID_SIZES,
          align_corners: bool = False) -> nn.Module:
    """ANN: dilated ResNet + AFNB / APNB head (+ stage-3 aux FCN head, weight 0.4).

    ``project_channels``: key / query / value width C' (256); ``pyramid_sizes``: the pooling
    sizes that sample the keys and values (1, 3, 6, 8 -> 110 points). ``align_corners``: the
    model-level option of :class:`~gsbench.models.common.SegmentationModel` (true for mmseg's
    769 x 769 models).
    """
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = ANNHead(encoder.channels[2], encoder.channels[3], num_classes, project_channels,
                   tuple(pyramid_sizes), dropout)
    return make_model(encoder, head, num_classes, aux, dropout, align_corners)
