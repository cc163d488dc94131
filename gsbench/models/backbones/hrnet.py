"""HRNetV2 (Wang et al., "Deep High-Resolution Representation Learning for Visual Recognition",
TPAMI 2020; Sun et al., "High-Resolution Representations for Labeling Pixels and Regions",
arXiv 1904.04514): the "stronger baseline model [35]" of RANet Table 5 ("HRNetV2-W48+ASPP").

Layout of HRNetV2-W48 (the official HRNet-Semantic-Segmentation config ``seg_hrnet_w48``)::

    stem     two 3x3 convs 3 -> 64 -> 64, stride 2 each (BN + ReLU)          stride 4
    stage 1  4 Bottleneck blocks of width 64 (output 256 channels)
    stage 2  1 module,  2 branches (48, 96)
    stage 3  4 modules, 3 branches (48, 96, 192)
    stage 4  3 modules, 4 branches (48, 96, 192, 384)              strides 4, 8, 16, 32

Every branch of a module is 4 BasicBlocks at its own width; the module then fuses the branches:
output i = ReLU(sum over j of path j -> i), where a lower-resolution input (j > i) goes through a
1x1 conv + BN to branch i's width and bilinear upsampling, and a higher-resolution one (j < i)
through i - j strided 3x3 convs (BN + ReLU, the last to branch i's width and without ReLU). The
transition before stages 2-4 keeps the existing branches (a 3x3 conv + BN + ReLU where the width
changes, i.e. 256 -> 48 after stage 1) and opens the new one with a strided 3x3 conv of the
previous lowest-resolution branch. The HRNetV2 representation is the four branches upsampled to
the highest resolution and concatenated: 48 + 96 + 192 + 384 = 720 channels.

The gsbench backbone contract (``[c2, c3, c4, c5]`` and ``.channels``): c2, c3, c4 are branches
1-3 (strides 4, 8, 16) and c5 is the HRNetV2 representation, so every head that reads c5 reads
the 720-channel concatenation. ``output_stride`` is the stride at which the four branches are
concatenated:

- 4, as in the HRNetV2 papers (branches 2-4 upsampled to branch 1);
- 8 (the default, and gsbench's choice for RANet): all branches resized to branch 2's grid,
  i.e. branch 1 downsampled by 2 (bilinear with ``align_corners=False``, which for an even size
  is exactly 2x2 average pooling), branches 3 and 4 upsampled. RANet's region attention
  (Sec. 3) is pairwise over the map: its cost and memory grow with (hw)^2. At the 769 x 769
  training crop the stride-8 map is 97 x 97 (the map of RANet's Table 3) while stride 4 would
  be 193 x 193: about 16x as many pixel pairs and a 5.5 GB score matrix per image. So RANet on
  HRNetV2 reads the representation at stride 8, the resolution of its ResNet-101 setting.

Table 5's "+ASPP" is not part of the backbone: ``ranet(aspp=True)`` computes RANet's map A with
DeepLabV3's ASPP on c5 (:class:`gsbench.models.deeplab.ASPP`, 512 outputs, rates 12/24/36).

Resizing uses bilinear interpolation with ``align_corners=False`` (the project's convention; the
official seg code upsamples with ``align_corners=True``). Parameter names follow the official
code (``conv1, bn1, conv2, bn2, layer1, transition1, stage2 ... stage4``; inside a stage
``stage3.2.branches.1.0.conv1``, ``stage3.2.fuse_layers.2.0.1.0``), so the ImageNet checkpoint
``hrnetv2_w48_imagenet_pretrained.pth`` loads directly (:mod:`gsbench.models.backbones.pretrained`
drops its classification-only ``incre_modules``, ``downsamp_modules``, ``final_layer`` and
``classifier``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones.resnet import BasicBlock, Bottleneck, conv3x3, init_kaiming

#: Strides at which the branches may be concatenated into the c5 representation.
OUTPUT_STRIDES = (4, 8)


def _resize(x: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             relu: bool = True) -> nn.Sequential:
    """Conv (no bias) + BN (+ ReLU): indices 0 and 1, the official names."""
    conv = (conv3x3(in_channels, out_channels, stride) if kernel_size == 3 else
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False))
    layers = [conv, nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


def _fuse_path(widths: tuple[int, ...], source: int, target: int) -> nn.Module:
    """The path from branch ``source`` to branch ``target`` inside a module's fusion."""
    if source == target:
        return nn.Identity()
    if source > target:  # lower resolution: 1x1 to the target width (upsampled in forward)
        return _conv_bn(widths[source], widths[target], 1, relu=False)
    steps = target - source  # higher resolution: strided 3x3 convs, the last one to the width
    return nn.Sequential(*[
        _conv_bn(widths[source], widths[target] if k == steps - 1 else widths[source], 3,
                 stride=2, relu=k < steps - 1)
        for k in range(steps)])


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by the all-to-all multi-resolution fusion."""

    def __init__(self, widths: tuple[int, ...], blocks: int):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(width, width) for _ in range(blocks)]) for width in widths)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(widths, j, i) for j in range(len(widths)))
            for i in range(len(widths)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for i, paths in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            fused.append(self.relu(sum(_resize(path(x), size) for path, x in zip(paths, xs))))
        return fused


def _transition(previous: tuple[int, ...], widths: tuple[int, ...]) -> nn.ModuleList:
    """Before a stage: adapt the kept branches' widths, open the new branches (strided 3x3s)."""
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        if i < len(previous):
            layers.append(nn.Identity() if previous[i] == width else
                          _conv_bn(previous[i], width, 3))
        else:
            steps = i + 1 - len(previous)
            layers.append(nn.Sequential(*[
                _conv_bn(previous[-1], width if k == steps - 1 else previous[-1], 3, stride=2)
                for k in range(steps)]))
    return nn.ModuleList(layers)


class HRNetV2(nn.Module):
    """HRNetV2 returning ``[c2, c3, c4, c5]``: branches 1-3 and the concatenated representation.

    ``widths``: the four branch widths (48, 96, 192, 384 for W48); ``modules``: modules of
    stages 2, 3, 4; ``blocks``: BasicBlocks per branch; ``stage1_blocks`` / ``stage1_width``:
    the Bottleneck blocks of stage 1; ``stem_channels``: the two stem convs.
    ``channels`` = (widths[0], widths[1], widths[2], sum(widths)).
    """

    def __init__(self, widths: tuple[int, int, int, int] = (48, 96, 192, 384),
                 modules: tuple[int, int, int] = (1, 4, 3), blocks: int = 4,
                 stage1_blocks: int = 4, stage1_width: int = 64, stem_channels: int = 64,
                 output_stride: int = 8):
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise GsbenchError(f"HRNetV2 output_stride (the stride of the concatenated branches) "
                               f"must be one of {list(OUTPUT_STRIDES)}, got {output_stride}")
        self.output_stride = output_stride
        self.widths = tuple(widths)
        self.conv1 = conv3x3(3, stem_channels, stride=2)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.conv2 = conv3x3(stem_channels, stem_channels, stride=2)
        self.bn2 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)

        stage1_out = stage1_width * Bottleneck.expansion
        downsample = None
        if stem_channels != stage1_out:
            downsample = _conv_bn(stem_channels, stage1_out, 1, relu=False)
        self.layer1 = nn.Sequential(
            Bottleneck(stem_channels, stage1_width, downsample=downsample),
            *[Bottleneck(stage1_out, stage1_width) for _ in range(1, stage1_blocks)])

        previous: tuple[int, ...] = (stage1_out,)
        for stage, count in enumerate(modules, start=2):
            current = self.widths[:stage]
            setattr(self, f"transition{stage - 1}", _transition(previous, current))
            setattr(self, f"stage{stage}", nn.Sequential(
                *[HighResolutionModule(current, blocks) for _ in range(count)]))
            previous = current
        self.num_stages = len(modules) + 1
        self.channels = (*self.widths[:3], sum(self.widths))
        init_kaiming(self)

    def branches(self, x: Tensor) -> list[Tensor]:
        """The four branch outputs of the last stage (strides 4, 8, 16, 32)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in range(2, self.num_stages + 1):
            transition = getattr(self, f"transition{stage - 1}")
            # kept branches take their own input, new ones the lowest-resolution branch
            xs = [layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]
            xs = getattr(self, f"stage{stage}")(xs)
        return xs

    def forward(self, x: Tensor) -> list[Tensor]:
        xs = self.branches(x)
        size = xs[0 if self.output_stride == 4 else 1].shape[-2:]
        representation = torch.cat([_resize(b, size) for b in xs], dim=1)
        return [xs[0], xs[1], xs[2], representation]


def hrnetv2_w48(output_stride: int = 8) -> HRNetV2:
    """HRNetV2-W48: widths 48/96/192/384, 1/4/3 modules, 4 blocks per branch (720-channel c5)."""
    return HRNetV2((48, 96, 192, 384), (1, 4, 3), 4, 4, 64, 64, output_stride)


def hrnetv2_tiny(output_stride: int = 8) -> HRNetV2:
    """HRNetV2 at toy size for CPU smoke runs: widths 8/16/32/64, 1/2/1 modules, 2 blocks per
    branch, 1 Bottleneck of width 8 in stage 1, a 16-channel stem (120-channel c5)."""
    return HRNetV2((8, 16, 32, 64), (1, 2, 1), 2, 1, 8, 16, output_stride)
