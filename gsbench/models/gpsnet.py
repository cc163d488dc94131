"""GPSNet: Gated Path Selection Network (Geng et al., IEEE TIP 2021).

SuperNet (Sec. 3.1, Fig. 1a): one 1x1 *squeeze* of the backbone features, a grid of 3x3 atrous
convolutions - four branches b of two layers l with dilations r_bl - and one 1x1 *excitation* of
the concatenated branch exits. Dense connectivity: atrous layer (b, l) reads the previous layer of
its own branch (horizontal input X_h; the squeeze output for l = 1) and, for b > 1, the same
layer of the previous branch (vertical input X_v). The two inputs are merged by the gate
prediction module (Sec. 3.2):

    M_i = F(X_i) = ReLU(BN(conv1x1(X_i)))            i in {v, h}, one channel each   (Eq. 1)
    M'  = C_a([M_v, M_h]) = ReLU(BN(conv1x1(M_c)))  two channels                     (Eq. 2)
    O   = M'_v * X_v + M'_h * X_h                                                     (Eq. 3)

M' is used as the paper defines it, the output of the comparison's ReLU: no softmax or sigmoid
across the two channels, so the gates are non-negative and need not sum to one. Without the gate
(Table 1, "SuperNet" without "Gate Prediction Module") the inputs are summed, O = X_v + X_h.

Widths, where the paper gives none but Table 4 pins them down: squeeze to C/8 and excitation to
C/2 of the C backbone channels (2048 -> 256 -> 1024 on ResNet-101); with these the SuperNet's
convolution weights are exactly Table 4's 6.29 M. Figure 1a draws one squeeze and one excitation,
so every branch starts from the same squeeze output, and the exit is one 1x1 conv over the
concatenated branch outputs (the sum of per-branch excitations, as a single convolution). All
convolutions are followed by BN + activation (the paper's InPlace-ABN). Dilations are in
feature-map pixels as the paper's (output stride 8); they are not rescaled at output stride 16.

The GPS module replaces the parallel 3x3 atrous branches of an ASPP-like head (Sec. 4.1, Table 1):

- ``context="aspp"`` (GPS-ASPP): DeepLabV3's ASPP with [1x1, SuperNet, image pooling] at 256
  channels per branch, concatenated, 1x1 to 256, dropout, classifier.
- ``context="oc"`` (GPS-OC, the paper's GPSNet): OCNet's ASP-OC head
  (:mod:`gsbench.models.ocnet`) with the SuperNet in place of its three atrous branches:
  [object-context branch, 1x1, SuperNet], concatenated, 1x1 to 512. ``oc_head`` chooses the
  ASP-OC layout as in :func:`gsbench.models.ocnet.ocnet`: "official" (default; GPSNet's
  settings are those of the OCNet release, whose ASP-OC its Table 1 reproduces) puts the
  object-context and 1x1 branches, 256 wide, on the release's 3x3 2048 -> 512 conv; "wide"
  puts them, 512 wide, on c5. The SuperNet reads c5 in both: Table 4 counts it on 2048
  channels (6.29 M), the only figure the paper gives for its wiring (docs/fidelity.md,
  "GPSNet, OCNet and DenseASPP").

``activation``: the paper trains with InPlace-ABN (Sec. 4.1), whose default activation is a
leaky ReLU of slope 0.01: the default "leaky_relu" applies to every BN of the head except the
gate prediction module, whose Eq. 1-2 print ReLU; "relu" gives plain ReLUs throughout.

OHEM (threshold 0.7, at least 100,000 pixels) is the recipes' ``train.ohem_thresh`` /
``train.ohem_min_kept``; the losses are the standard ones (CE + 0.4 x aux CE).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model
from gsbench.models.deeplab import ASPP_CHANNELS
from gsbench.models.ocnet import (
    ACTIVATIONS, OC_HEADS, asp_oc_front, check_choice, conv_bn_act, oc_model,
)
from gsbench.models.registry import register_model

#: Table 4 "Untuned" grid: the ASPP rates {1, 12, 24, 36}, each used twice in its branch.
UNTUNED_DILATIONS: tuple[tuple[int, int], ...] = ((1, 1), (12, 12), (24, 24), (36, 36))
#: Table 4 "Tuned" grid: prime-like rates that avoid sampling the same positions twice (Sec. 3.1).
TUNED_DILATIONS: tuple[tuple[int, int], ...] = ((1, 3), (11, 13), (23, 29), (33, 37))
GPS_CONTEXTS = ("aspp", "oc")


def check_dilations(dilations: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """The dilation grid as a tuple of per-branch tuples of positive ints (one per layer).

    Every branch must have the same number of layers (the grid of Fig. 1a), since layer l of
    branch b reads layer l of branch b - 1.
    """
    branches = list(dilations) if isinstance(dilations, (list, tuple)) else []
    valid = bool(branches) and all(
        isinstance(b, (list, tuple)) and len(b) > 0 and len(b) == len(branches[0])
        and all(isinstance(r, numbers.Integral) and not isinstance(r, bool) and r >= 1 for r in b)
        for b in branches)
    if not valid:
        raise GsbenchError("gpsnet dilations must be a non-empty list of branches, each a list of "
                           f"the same number of positive integers, got {dilations!r}")
    return tuple(tuple(int(r) for r in b) for b in branches)


class GatePrediction(nn.Module):
    """Gate prediction module (Sec. 3.2, Fig. 1b): O = M'_v * X_v + M'_h * X_h (Eq. 1-3)."""

    def __init__(self, channels: int):
        super().__init__()
        self.project_vertical = ConvBNReLU(channels, 1, 1)  # F, Eq. 1
        self.project_horizontal = ConvBNReLU(channels, 1, 1)
        self.compare = ConvBNReLU(2, 2, 1)  # C_a, Eq. 2

    def masks(self, vertical: Tensor, horizontal: Tensor) -> Tensor:
        """M' (N x 2 x H x W): channel 0 weighs the vertical input, channel 1 the horizontal."""
        concatenated = torch.cat([self.project_vertical(vertical),
                                  self.project_horizontal(horizontal)], dim=1)
        return self.compare(concatenated)

    def forward(self, vertical: Tensor, horizontal: Tensor) -> Tensor:
        gates = self.masks(vertical, horizontal)
        return gates[:, 0:1] * vertical + gates[:, 1:2] * horizontal  # Eq. 3


class SuperNet(nn.Module):
    """Squeeze, the densely connected grid of atrous layers, excitation (Sec. 3.1, Fig. 1a).

    ``gate=False`` merges the vertical and horizontal inputs by summation (Table 1's SuperNet
    without the gate prediction module). ``dilations[b][l]`` is the rate of layer l of branch b.
    ``activation`` follows the squeeze, atrous and excitation convolutions' BNs (the gates keep
    Eq. 1-2's ReLU).
    """

    def __init__(self, in_channels: int, dilations: Sequence[Sequence[int]], gate: bool = True,
                 squeeze_channels: int | None = None, out_channels: int | None = None,
                 activation: str = "relu"):
        super().__init__()
        self.dilations = check_dilations(dilations)
        squeeze_channels = squeeze_channels or max(in_channels // 8, 1)
        self.out_channels = out_channels or max(in_channels // 2, 1)
        self.gated = gate
        self.squeeze = conv_bn_act(in_channels, squeeze_channels, 1, activation=activation)
        self.atrous = nn.ModuleList(
            nn.ModuleList(conv_bn_act(squeeze_channels, squeeze_channels, 3, dilation=r,
                                      activation=activation)
                          for r in branch)
            for branch in self.dilations)
        # One gate per layer that has a vertical input: every layer of branches 2, 3, ...
        self.gates = nn.ModuleList(
            nn.ModuleList(GatePrediction(squeeze_channels) for _ in branch)
            for branch in self.dilations[1:]) if gate else None
        self.excitation = conv_bn_act(len(self.dilations) * squeeze_channels, self.out_channels,
                                      1, activation=activation)

    def merge(self, branch: int, layer: int, vertical: Tensor, horizontal: Tensor) -> Tensor:
        if self.gates is None:
            return vertical + horizontal
        return self.gates[branch - 1][layer](vertical, horizontal)

    def forward(self, x: Tensor) -> Tensor:
        squeezed = self.squeeze(x)
        previous_branch: list[Tensor] = []
        exits = []
        for b, layers in enumerate(self.atrous):
            horizontal = squeezed
            current: list[Tensor] = []
            for layer_index, conv in enumerate(layers):
                if b == 0:
                    merged = horizontal  # the first branch has no vertical input
                else:
                    merged = self.merge(b, layer_index, previous_branch[layer_index], horizontal)
                horizontal = conv(merged)
                current.append(horizontal)
            exits.append(horizontal)
            previous_branch = current
        return self.excitation(torch.cat(exits, dim=1))


class GPSASPPHead(nn.Module):
    """ASPP with its atrous branches replaced by the SuperNet: [1x1, SuperNet, image pooling]."""

    def __init__(self, in_channels: int, num_classes: int, dilations, gate: bool,
                 dropout: float = 0.1, activation: str = "leaky_relu"):
        super().__init__()
        channels = ASPP_CHANNELS
        self.pointwise = conv_bn_act(in_channels, channels, 1, activation=activation)
        self.supernet = SuperNet(in_channels, dilations, gate, activation=activation)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                        conv_bn_act(in_channels, channels, 1,
                                                    activation=activation))
        self.project = conv_bn_act(2 * channels + self.supernet.out_channels, channels, 1,
                                   activation=activation)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)

    def forward(self, features: list[Tensor]) -> Tensor:
        c5 = features[-1]
        pooled = self.image_pool(c5).expand(-1, -1, *c5.shape[-2:])
        fused = self.project(torch.cat([self.pointwise(c5), self.supernet(c5), pooled], dim=1))
        return self.cls(fused)


class GPSOCHead(nn.Module):
    """ASP-OC with its atrous branches replaced by the SuperNet: [object context, 1x1, SuperNet].

    ``official``: the object-context and 1x1 branches (C/8 wide) read the release's 3x3 conv
    c5 -> C/4; otherwise they read c5 (C/4 wide, the object context without pooling), see
    :func:`gsbench.models.ocnet.asp_oc_front`. The SuperNet reads c5 in both.
    """

    def __init__(self, in_channels: int, num_classes: int, dilations, gate: bool,
                 dropout: float = 0.1, official: bool = True, activation: str = "leaky_relu"):
        super().__init__()
        channels = in_channels // 4
        self.context_pre, self.object_branch, branch_in, width = asp_oc_front(
            in_channels, official, activation)
        self.pointwise = conv_bn_act(branch_in, width, 1, activation=activation)
        self.supernet = SuperNet(in_channels, dilations, gate, activation=activation)
        self.fuse = conv_bn_act(2 * width + self.supernet.out_channels, channels, 1,
                                activation=activation)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)
        self.object_branch[1].reset_parameters()

    def forward(self, features: list[Tensor]) -> Tensor:
        c5 = features[-1]
        x = c5 if self.context_pre is None else self.context_pre(c5)
        object_branch = self.object_branch(x)  # as ASP-OC: the context alone
        fused = self.fuse(torch.cat([object_branch, self.pointwise(x), self.supernet(c5)], dim=1))
        return self.cls(fused)


@register_model
def gpsnet(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
           pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
           context: str = "aspp", dilations: Sequence[Sequence[int]] | None = None,
           gate: bool = True, oc_head: str = "official",
           activation: str = "leaky_relu") -> nn.Module:
    """GPSNet: dilated ResNet + GPS head (+ stage-3 aux head, loss weight 0.4).

    ``context``: "aspp" (GPS-ASPP) or "oc" (GPS in OCNet's ASP-OC head, the paper's GPSNet).
    ``dilations``: the grid [[r_11, r_12], ...]; None is the tuned grid
    {(1, 3), (11, 13), (23, 29), (33, 37)}, :data:`UNTUNED_DILATIONS` is Table 1's untuned one.
    ``gate``: the gate prediction module (True) or plain summation (False), Table 1.
    ``oc_head`` (GPS-OC only): "official" (the OCNet release's ASP-OC layout and its stage-3
    ``dsn`` head) or "wide"; ``activation``: "leaky_relu" (InPlace-ABN's) or "relu".
    """
    check_choice("gpsnet", "context", context, GPS_CONTEXTS)
    check_choice("gpsnet", "oc_head", oc_head, OC_HEADS)
    check_choice("gpsnet", "activation", activation, ACTIVATIONS)
    grid = check_dilations(TUNED_DILATIONS if dilations is None else dilations)
    encoder = build_backbone(backbone, output_stride, pretrained)
    if context == "aspp":
        head = GPSASPPHead(encoder.channels[-1], num_classes, grid, gate, dropout, activation)
        return make_model(encoder, head, num_classes, aux, dropout)
    official = oc_head == "official"
    head = GPSOCHead(encoder.channels[-1], num_classes, grid, gate, dropout, official, activation)
    return oc_model(encoder, head, num_classes, aux, dropout, official, activation)
