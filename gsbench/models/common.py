"""Building blocks shared by the segmentation heads, and the model wrapper they all use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsbench.models.backbones.resnet import init_kaiming


class ConvBNReLU(nn.Sequential):
    """Convolution (no bias) + BatchNorm + ReLU, "same" padding for odd kernels and dilation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 dilation: int = 1, stride: int = 1):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def classifier(in_channels: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Dropout then the 1x1 convolution to class logits (the last layer of every head)."""
    return nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(in_channels, num_classes, 1))


def resize(x: Tensor, size: tuple[int, int] | list[int], align_corners: bool = False) -> Tensor:
    """Bilinear resize; ``align_corners=False`` is the project's convention, ``True`` the
    model-level ``align_corners`` option of the builders that offer it (see
    :class:`SegmentationModel`)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def upsample_logits(x: Tensor, size: tuple[int, int] | list[int],
                    align_corners: bool = False) -> Tensor:
    """:func:`resize` of class logits to the input size, returned in channels-last layout.

    The values are those of :func:`resize`; the layout keeps each pixel's class vector
    contiguous, which makes the upsampling and the loss on it (forward and backward) take
    0.67-0.78x the CPU time, and the argmax of a prediction a third, on a CPU where these
    full-resolution maps cost as much as the convolutions of a small model
    (benchmarks/RESULTS.md, "Training step: the full-resolution loss path").
    """
    return resize(x.contiguous(memory_format=torch.channels_last), size, align_corners)


class AuxFCNHead(nn.Module):
    """Auxiliary FCN head on stage-3 features c4 (PSPNet Sec. 3.4 deep supervision).

    3x3 conv in -> in/4 (1024 -> 256 on ResNet-50/101), BN, ReLU, dropout, 1x1 conv to classes;
    trained with weight 0.4 and dropped at inference (the papers' parameter counts exclude it).
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, in_channels // 4, 3)
        self.cls = classifier(in_channels // 4, num_classes, dropout)
        init_kaiming(self)

    def forward(self, c4: Tensor) -> Tensor:
        return self.cls(self.conv(c4))


class SegmentationModel(nn.Module):
    """Backbone + decode head (+ auxiliary head): the model contract of gsbench.

    ``forward(images)`` takes N x 3 x H x W ImageNet-normalised images and returns a dict:
    ``"out"``: logits N x C x H x W at the input resolution (bilinear); in training mode with an
    aux head also ``"aux"`` (aux logits, input resolution).

    ``align_corners`` is the model-level option of the same name (``model.align_corners`` in a
    recipe, a keyword of the builders that offer it): the resizes inside the head and the
    upsampling of the logits to the input use ``F.interpolate(align_corners=...)``. False is the
    project's default (the papers do not say); True is what hszhao/semseg's PSPNet and PSANet
    (``model/pspnet.py``, ``model/psanet.py``: PPM and the final x8 upsampling) and
    mmsegmentation's 769 x 769 Cityscapes configs use, so released weights of those need it.

    ``decode_head`` takes the backbone's list [c2, c3, c4, c5] and returns logits at any
    resolution; heads initialise their own weights (``init_kaiming`` plus any special init).
    ``.backbone`` gets the base learning rate; everything else is "head".

    ``extra_outputs`` names further class-logit maps (N x C x H x W, input resolution) that a
    subclass returns in eval mode too when called as ``model(images, outputs=names)``, so that
    ``gsbench eval --output NAME`` can score them instead of ``"out"`` (RANet: ``"coarse"``).
    A subclass whose head returns more than the main logits overrides :meth:`decode` only.
    """

    extra_outputs: tuple[str, ...] = ()

    def __init__(self, backbone: nn.Module, decode_head: nn.Module,
                 aux_head: nn.Module | None = None, align_corners: bool = False):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.aux_head = aux_head
        self.align_corners = align_corners

    def decode(self, features: list[Tensor], outputs: tuple[str, ...] = ()) -> dict[str, Tensor]:
        """The head's logits by name, at the head's resolution: ``"out"``, plus the maps the
        training loss needs (training mode) or ``outputs`` asks for (names of
        ``extra_outputs``)."""
        return {"out": self.decode_head(features)}

    def forward(self, images: Tensor, outputs: tuple[str, ...] = ()) -> dict[str, Tensor]:
        size = images.shape[-2:]
        features = self.backbone(images)
        result = {key: upsample_logits(value, size, self.align_corners)
                  for key, value in self.decode(features, outputs).items()}
        if self.training and self.aux_head is not None:
            result["aux"] = upsample_logits(self.aux_head(features[2]), size, self.align_corners)
        return result


def make_model(backbone: nn.Module, decode_head: nn.Module, num_classes: int, aux: bool,
               dropout: float, align_corners: bool = False) -> SegmentationModel:
    """Wrap a backbone and a decode head, adding the stage-3 aux FCN head when ``aux``;
    ``align_corners`` is the model-level option (:class:`SegmentationModel`)."""
    aux_head = AuxFCNHead(backbone.channels[2], num_classes, dropout) if aux else None
    return SegmentationModel(backbone, decode_head, aux_head, align_corners)
