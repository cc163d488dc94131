"""DANet: Dual Attention Network (Fu et al., "Dual Attention Network for Scene Segmentation",
CVPR 2019), laid out as the official code and mmsegmentation's DAHead.

Position attention module (PAM, Sec. 3.2, Eq. 1-2) on a map A of C channels: B and C are 1x1
convs to C/8 channels, D a 1x1 conv to C;

    s_ji = exp(B_i . C_j) / sum_i exp(B_i . C_j)        E_j = alpha * sum_i s_ji D_i + A_j

(softmax over the N = HW positions i, no scaling). Channel attention module (CAM, Sec. 3.3,
Eq. 3-4) directly on A (no convs):

    x_ji = exp(A_i . A_j) / sum_i exp(A_i . A_j)        E_j = beta * sum_i x_ji A_i + A_j

over the C channels i. alpha and beta are learnable scalars initialised to 0 (the paper).
The official code (and mmseg) softmaxes ``max_i(A_i . A_j) - A_i . A_j`` instead, i.e. the
softmax of the *negated* energy, which favours dissimilar channels; ``channel_energy``
chooses "paper" (default, Eq. 3) or "official".

Head (Fig. 2): per branch a 3x3 conv c5 -> 512 (BN, ReLU), the attention module, a 3x3 conv
512 -> 512 (BN, ReLU); the sum of the two branches goes through dropout 0.1 and a 1x1
classifier. As the official code and mmseg, each branch also has its own classifier whose
logits are returned in training mode as ``"pam"`` and ``"cam"`` and trained with weight 1
(:class:`gsbench.losses.danet.DANetLoss`), plus mmseg's stage-3 aux FCN head (weight 0.4).

Where the paper and the official code differ: docs/fidelity.md, "DANet, CCNet, ANN and the
other baselines".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import AuxFCNHead, ConvBNReLU, SegmentationModel, classifier
from gsbench.models.registry import register_model

CHANNEL_ENERGIES = ("paper", "official")


def position_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """sum_i s_ji D_i of Eq. 2 for every position j: N x C x H x W, no residual.

    ``query`` = C, taken at the receiving position j, and ``key`` = B, at the source positions i
    (N x C' x H x W); ``value`` = D (N x C x H x W). The official code names the two 1x1 convs
    the other way round, which is the same function of two symmetric learned projections.
    """
    n, c, h, w = value.shape
    energy = torch.bmm(query.flatten(2).transpose(1, 2), key.flatten(2))  # [j, i] = C_j . B_i
    attention = torch.softmax(energy, dim=-1)  # s_ji, normalised over the sources i
    return torch.bmm(value.flatten(2), attention.transpose(1, 2)).reshape(n, c, h, w)


def channel_attention(x: Tensor, channel_energy: str = "paper") -> Tensor:
    """sum_i x_ji A_i of Eq. 4 for every channel j: N x C x H x W, no residual."""
    n, c, h, w = x.shape
    flat = x.flatten(2)
    energy = torch.bmm(flat, flat.transpose(1, 2))  # symmetric C x C: A_j . A_i
    if channel_energy == "official":
        energy = energy.amax(dim=-1, keepdim=True) - energy
    elif channel_energy != "paper":
        raise GsbenchError(f"danet channel_energy must be one of {', '.join(CHANNEL_ENERGIES)}, "
                           f"got {channel_energy!r}")
    attention = torch.softmax(energy, dim=-1)  # [j, i], softmax over i
    return torch.bmm(attention, flat).reshape(n, c, h, w)


class PositionAttention(nn.Module):
    """PAM (Eq. 1-2), same channels in and out."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        if channels < reduction:
            raise GsbenchError(f"position attention needs at least {reduction} channels, "
                               f"got {channels}")
        self.query = nn.Conv2d(channels, channels // reduction, 1)
        self.key = nn.Conv2d(channels, channels // reduction, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.alpha * position_attention(self.query(x), self.key(x), self.value(x)) + x


class ChannelAttention(nn.Module):
    """CAM (Eq. 3-4), same channels in and out."""

    def __init__(self, channel_energy: str = "paper"):
        super().__init__()
        if channel_energy not in CHANNEL_ENERGIES:
            raise GsbenchError(f"danet channel_energy must be one of "
                               f"{', '.join(CHANNEL_ENERGIES)}, got {channel_energy!r}")
        self.channel_energy = channel_energy
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.beta * channel_attention(x, self.channel_energy) + x


class DualAttention(nn.Module):
    """PAM and CAM side by side on the same map, summed (the attention part of Fig. 2)."""

    def __init__(self, channels: int, channel_energy: str = "paper"):
        super().__init__()
        self.pam = PositionAttention(channels)
        self.cam = ChannelAttention(channel_energy)

    def forward(self, x: Tensor) -> Tensor:
        return self.pam(x) + self.cam(x)


class DAHead(nn.Module):
    """DANet decode head; returns the fused, PAM-only and CAM-only logits."""

    def __init__(self, in_channels: int, num_classes: int, channel_energy: str = "paper",
                 dropout: float = 0.1):
        super().__init__()
        channels = in_channels // 4
        self.pam_in = ConvBNReLU(in_channels, channels, 3)
        self.pam = PositionAttention(channels)
        self.pam_out = ConvBNReLU(channels, channels, 3)
        self.cam_in = ConvBNReLU(in_channels, channels, 3)
        self.cam = ChannelAttention(channel_energy)
        self.cam_out = ConvBNReLU(channels, channels, 3)
        self.cls = classifier(channels, num_classes, dropout)
        self.pam_cls = classifier(channels, num_classes, dropout)
        self.cam_cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)  # leaves alpha and beta at 0

    def forward(self, features: list[Tensor], branch_logits: bool = False) -> dict[str, Tensor]:
        c5 = features[-1]
        pam = self.pam_out(self.pam(self.pam_in(c5)))
        cam = self.cam_out(self.cam(self.cam_in(c5)))
        logits = {"out": self.cls(pam + cam)}
        if branch_logits:
            logits.update(pam=self.pam_cls(pam), cam=self.cam_cls(cam))
        return logits


class DANet(SegmentationModel):
    """Backbone + :class:`DAHead` (+ aux FCN head); the gsbench model contract with the extra
    training outputs ``"pam"`` and ``"cam"`` (logits at the input resolution)."""

    def decode(self, features: list[Tensor], outputs: tuple[str, ...] = ()) -> dict[str, Tensor]:
        # The branch classifiers only serve the training loss.
        return self.decode_head(features, branch_logits=self.training)


@register_model
def danet(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
          pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
          channel_energy: str = "paper", align_corners: bool = False) -> nn.Module:
    """DANet: dilated ResNet + dual attention head (+ stage-3 aux FCN head, weight 0.4).

    ``channel_energy``: "paper" (CAM's softmax of Eq. 3) or "official" (the softmax of
    ``max - energy`` of the official code and mmseg). ``align_corners``: the model-level option of
    :class:`~gsbench.models.common.SegmentationModel` (true for mmseg's 769 x 769 models)."""
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = DAHead(encoder.channels[-1], num_classes, channel_energy, dropout)
    aux_head = AuxFCNHead(encoder.channels[2], num_classes, dropout) if aux else None
    return DANet(encoder, head, aux_head, align_corners)
