"""OCNet: object context (Yuan & Wang, "OCNet: Object Context Network for Scene Parsing", 2018).

Object context of position p (Eq. 1-2): c_p = sum_i w_pi * phi(x_i) with
w_pi = softmax_i(f_q(x_p) . f_k(x_i) / sqrt(d)); query and key share one transform (1x1 conv,
BN, activation), phi is a 1x1 conv, and the context passes a 1x1 output conv initialised to
zero (:class:`ObjectContext`).

Two head layouts (``oc_head``; docs/fidelity.md, "GPSNet, OCNet and DenseASPP" records the
evidence). The OCNet paper is the baselines' source and is not one of the five papers, so the
default is the layout of the released code (PkuRainBow/OCNet.pytorch), which is the one GPSNet's
Table 1 reproduces (78.70 against OCNet's 79.58):

- ``oc_head="official"`` (default), ``network/resnet101_asp_oc.py`` / ``resnet101_base_oc.py``:
  a 3x3 conv (with bias) c5 -> C/4 = 512 first.

  * ASP-OC (``oc_module/asp_oc_block.py``, ``ASP_OC_Module(512, 256)``): five 256-wide branches
    on the 512-channel map - [3x3 conv + object context + 1x1 conv, 1x1, 3x3 atrous x3] -
    concatenated (1280), 1x1 to 512, dropout 0.1, classifier. The object context has key 128 and
    value 256 and attends on the map max-pooled by 2 (kernel 2, stride 2, floor), its output
    upsampled back (bilinear, align_corners=True). Head 15.19 M parameters on ResNet-101.
  * Base-OC (``oc_module/base_oc_block.py``, ``BaseOC_Module``): object context with key 256
    and **value 256** (C/2) and a 256 -> 512 output conv, concatenation with its input, 1x1
    1024 -> 512, dropout 0.05 (the recipes' ``model.dropout``), classifier. Head 10.37 M.
  * The stage-3 auxiliary head is the release's ``dsn``: 3x3 conv (with bias) 1024 -> 512,
    BN, activation, dropout, 1x1 classifier.

- ``oc_head="wide"`` (gsbench's earlier reading): ASP-OC's branches read the 2048-channel map
  directly and are 512 wide ([3x3 + object context (key 256, value 512, no pooling), 1x1, 3x3
  atrous x3], concatenated, 1x1 to 512; a 40.8 M head); Base-OC has value width C; biases off;
  the shared auxiliary FCN head (:class:`~gsbench.models.common.AuxFCNHead`).

``activation``: every BN of the released heads is InPlace-ABN, whose default activation is a
leaky ReLU of slope 0.01 (``inplace_abn/bn.py`` of the release, mapillary/inplace_abn): the
default "leaky_relu"; "relu" is the plain ReLU. Atrous rates (12, 24, 36) at output stride 8,
(6, 12, 18) at 16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import SegmentationModel, classifier, make_model
from gsbench.models.deeplab import aspp_rates
from gsbench.models.registry import register_model

OC_CONTEXTS = ("base", "asp")
OC_HEADS = ("official", "wide")
ACTIVATIONS = ("leaky_relu", "relu")
#: Negative slope of InPlace-ABN's default leaky ReLU (the activation of the released heads).
LEAKY_SLOPE = 0.01


def check_choice(model: str, option: str, value: str, choices: tuple[str, ...]) -> None:
    """A one-line error naming the option when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise GsbenchError(f"{model} {option} must be one of {', '.join(choices)}, got {value!r}")


def activation_layer(activation: str) -> nn.Module:
    """The activation after a BN: leaky ReLU 0.01 (InPlace-ABN's default) or ReLU."""
    if activation == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    return nn.ReLU(inplace=True)


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1,
                bias: bool = False, activation: str = "relu") -> nn.Sequential:
    """Convolution ("same" padding), BatchNorm and activation: the released code's
    ``Conv2d`` + ``InPlaceABNSync`` pairs (the conv has a bias where theirs does)."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                  bias=bias),
        nn.BatchNorm2d(out_channels),
        activation_layer(activation),
    )


class ObjectContext(nn.Module):
    """Self-attention object context c_p (Eq. 1-2) of a feature map.

    ``key_channels`` d of the shared query/key transform, ``value_channels`` of phi (default:
    the input's), ``out_channels`` of the zero-initialised output conv (default: the input's).
    ``pool`` > 1 attends on the map max-pooled by ``pool`` and upsamples the context back
    (bilinear, align_corners=True), as ``SelfAttentionBlock2D(scale=2)`` in the release's
    ASP-OC. ``bias`` puts a bias on the query/key conv (the release's ``f_key``).
    """

    def __init__(self, channels: int, key_channels: int, value_channels: int | None = None,
                 out_channels: int | None = None, pool: int = 1, activation: str = "relu",
                 bias: bool = False):
        super().__init__()
        value_channels = value_channels or channels
        self.pool = pool
        self.query_key = conv_bn_act(channels, key_channels, 1, bias=bias, activation=activation)
        self.value = nn.Conv2d(channels, value_channels, 1)
        self.out = nn.Conv2d(value_channels, out_channels or channels, 1)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        if self.pool > 1:
            x = F.max_pool2d(x, self.pool)
        n, _, h, w = x.shape
        qk = self.query_key(x).flatten(2)  # N x d x HW
        value = self.value(x).flatten(2).transpose(1, 2)  # N x HW x V
        weights = torch.softmax(torch.bmm(qk.transpose(1, 2), qk) / math.sqrt(qk.shape[1]),
                                dim=-1)
        context = torch.bmm(weights, value).transpose(1, 2).reshape(n, -1, h, w)
        context = self.out(context)
        if self.pool > 1:
            context = F.interpolate(context, size=size, mode="bilinear", align_corners=True)
        return context


def official_object_branch(channels: int, activation: str) -> nn.Sequential:
    """ASP-OC's object-context branch of the release (``ASP_OC_Module.context``) on a map of
    ``channels`` (512) channels: 3x3 conv (bias) to ``channels // 2``, BN, activation; object
    context (key ``channels // 4``, value ``channels // 2``, max-pooled by 2); 1x1 conv (bias),
    BN, activation (``BaseOC_Context_Module.conv_bn_dropout``, dropout 0)."""
    width = channels // 2
    return nn.Sequential(
        conv_bn_act(channels, width, 3, bias=True, activation=activation),
        ObjectContext(width, width // 2, width, width, pool=2, activation=activation, bias=True),
        conv_bn_act(width, width, 1, bias=True, activation=activation),
    )


def asp_oc_front(in_channels: int, official: bool, activation: str
                 ) -> tuple[nn.Module | None, nn.Sequential, int, int]:
    """What ASP-OC puts before its 1x1 and atrous branches, in either layout: the release's 3x3
    conv c5 -> C/4 (None in the wide layout), the object-context branch, and the channels and
    width of the other branches (C/4 and C/8 official, C and C/4 wide)."""
    channels = in_channels // 4
    if official:
        pre = conv_bn_act(in_channels, channels, 3, bias=True, activation=activation)
        return pre, official_object_branch(channels, activation), channels, channels // 2
    branch = nn.Sequential(conv_bn_act(in_channels, channels, 3, activation=activation),
                           ObjectContext(channels, channels // 2, activation=activation))
    return None, branch, in_channels, channels


class OfficialDSN(nn.Module):
    """The release's stage-3 auxiliary head ``dsn``: 3x3 conv (bias) c4 -> 512, BN, activation,
    dropout, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float, activation: str):
        super().__init__()
        self.conv = conv_bn_act(in_channels, in_channels // 2, 3, bias=True, activation=activation)
        self.cls = classifier(in_channels // 2, num_classes, dropout)
        init_kaiming(self)

    def forward(self, c4: Tensor) -> Tensor:
        return self.cls(self.conv(c4))


def oc_model(encoder: nn.Module, head: nn.Module, num_classes: int, aux: bool, dropout: float,
             official: bool, activation: str) -> SegmentationModel:
    """The model around an OCNet-style head: the release's ``dsn`` as auxiliary head in the
    official layout, gsbench's shared auxiliary FCN head otherwise."""
    if not official:
        return make_model(encoder, head, num_classes, aux, dropout)
    dsn = OfficialDSN(encoder.channels[2], num_classes, dropout, activation) if aux else None
    return SegmentationModel(encoder, head, dsn)


class BaseOCHead(nn.Module):
    """Base-OC: 3x3 conv c5 -> C/4, object context, concatenation with its input, 1x1 conv to
    C/4, dropout, classifier. ``official``: value C/8, output conv back to C/4, biases as the
    release (``BaseOC_Module``); otherwise value C/4, no biases."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1,
                 official: bool = True, activation: str = "leaky_relu"):
        super().__init__()
        channels = in_channels // 4
        self.conv_in = conv_bn_act(in_channels, channels, 3, bias=official, activation=activation)
        value = channels // 2 if official else channels
        self.context = ObjectContext(channels, channels // 2, value, channels,
                                     activation=activation, bias=official)
        self.fuse = conv_bn_act(2 * channels, channels, 1, bias=official, activation=activation)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)
        self.context.reset_parameters()

    def forward(self, features: list[Tensor]) -> Tensor:
        x = self.conv_in(features[-1])
        return self.cls(self.fuse(torch.cat([self.context(x), x], dim=1)))


class ASPOCHead(nn.Module):
    """ASP-OC: [object-context branch, 1x1, 3x3 atrous per rate], concatenated, 1x1 to C/4,
    dropout, classifier. ``official``: all branches on a 3x3 conv's C/4-channel map, C/8 wide
    (:func:`official_object_branch`); otherwise on c5 itself, C/4 wide, the object context
    without pooling."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...],
                 dropout: float = 0.1, official: bool = True, activation: str = "leaky_relu"):
        super().__init__()
        channels = in_channels // 4
        self.context_pre, self.object_branch, branch_in, width = asp_oc_front(
            in_channels, official, activation)
        self.branches = nn.ModuleList([conv_bn_act(branch_in, width, 1, activation=activation)] + [
            conv_bn_act(branch_in, width, 3, dilation=r, activation=activation) for r in rates])
        self.fuse = conv_bn_act(width * (len(rates) + 2), channels, 1, activation=activation)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self)
        self.object_branch[1].reset_parameters()

    def forward(self, features: list[Tensor]) -> Tensor:
        x = features[-1]
        if self.context_pre is not None:
            x = self.context_pre(x)
        # As in the official code the object branch is the context alone (no residual); the
        # concatenation with the ASPP branches keeps the local features.
        outs = [self.object_branch(x)] + [branch(x) for branch in self.branches]
        return self.cls(self.fuse(torch.cat(outs, dim=1)))


@register_model
def ocnet(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
          pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
          context: str = "base", rates: tuple[int, ...] | None = None,
          oc_head: str = "official", activation: str = "leaky_relu") -> nn.Module:
    """OCNet. ``context``: "base" (Base-OC) or "asp" (ASP-OC); ``oc_head``: "official" (the
    release's layout) or "wide"; ``activation``: "leaky_relu" (InPlace-ABN's) or "relu"."""
    check_choice("ocnet", "context", context, OC_CONTEXTS)
    check_choice("ocnet", "oc_head", oc_head, OC_HEADS)
    check_choice("ocnet", "activation", activation, ACTIVATIONS)
    official = oc_head == "official"
    encoder = build_backbone(backbone, output_stride, pretrained)
    if context == "base":
        head = BaseOCHead(encoder.channels[-1], num_classes, dropout, official, activation)
    else:
        rates = tuple(rates) if rates is not None else aspp_rates(output_stride)
        head = ASPOCHead(encoder.channels[-1], num_classes, rates, dropout, official, activation)
    return oc_model(encoder, head, num_classes, aux, dropout, official, activation)
