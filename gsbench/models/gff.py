"""GFFNet: Gated Fully Fusion + Dense Feature Pyramid (Li et al., AAAI 2020).

Architecture (paper Sec. "Network Architecture", Fig. 3):

* **Base**: a dilated ResNet (output stride 8) with PSPNet's pyramid pooling on top; the PPM
  output after PSPNet's 3x3 bottleneck (c5/4 = 512 channels), reduced by a 1x1 conv to the
  pyramid's 256 channels like every backbone level, is the context map ``y_0``. Table 4's
  DenseASPP base replaces PPM + bottleneck by the DenseASPP block and a 1x1 conv to c5/4.
* **Levels**: the last feature map of ResNet stages 2-5 (c2 at 1/4, c3-c5 at 1/8), each reduced
  to ``fusion_channels`` (256) by a 1x1 conv; ``X_1 .. X_L`` with L = 4, low to high.
* **GFF** (Eq. 5), at the resolution of each level l::

      X~_l = (1 + G_l) * X_l + (1 - G_l) * sum_{i != l} resize(G_i * X_i),
      G_l  = sigmoid(w_l * X_l)

  with ``w_l`` a 1x1 conv to one channel (the paper's w_l in R^{1x1xC}) broadcast over channels;
  ``gate_channels = fusion_channels`` gives the per-channel gates of the authors' public
  re-implementation (lxtGH/DecoupleSegNets ``network/gffnets.py``, WRN-38 + DeepLabV3+; no code
  of the paper's PSPNet-based GFF is released). docs/fidelity.md ("GFF") records the evidence of
  the two switches that follow.

  ``gate_input="reduced"`` (default): gates read the 256-channel maps ("all feature maps are
  reduced to 256 channels with 1x1 convolutional layers" as the input of the GFF module);
  "unreduced": gates read each level's backbone map before its reduction, as the
  re-implementation does (and as the paper's C_i, a width per level, may mean).

  ``update="simultaneous"`` (default): every level is fused from the *unfused* maps at once
  (Eq. 5, one formula for all levels); "sequential": the re-implementation's in-place update,
  levels low to high, each level receiving the already fused maps of the levels below it
  (the gates are computed once, from the unfused maps).
* Each fused level is refined by two 3x3 conv + BN + ReLU layers.
* **DFP** (Eq. 6): densely connected top-down from the context map. With the refined levels
  ordered from the top (T_1 = stage 5, ..., T_L = stage 2)::

      y_i = H_i([y_0, T_1, ..., T_i]),  i = 1..L

  at the resolution of T_i, where ``H_i`` is "a single convolution layer": a 1x1 conv + BN + ReLU
  to ``fusion_channels`` (the paper does not give the kernel; 1x1 keeps DFP at the paper's
  +0.8 M parameters, a 3x3 kernel would add 8 M). Eq. 6 as printed lists only the maps *before*
  level i, which would never use the stage-2 level; we read "the feature maps of all preceding
  pyramids" as DenseNet's concatenation that includes the level being produced.
* **Prediction**: ``y_0`` and all level outputs (``y_1..y_L`` with DFP, the refined levels
  without) are resized to the stride-4 grid and concatenated, then dropout and a 1x1 classifier
  (computed without building the concatenation, see :func:`conv1x1_of_resized_concat`).
  Aux FCN head on stage 3 (c4) with weight 0.4, as PSPNet.

Table 1 fusion variants (``fusion=``), all followed by the same two 3x3 convs per level:

* ``concat`` (Eq. 2): X~_l = conv1x1(concat_i resize(X_i)) (L * 256 -> 256 channels);
* ``add`` (Eq. 3): X~_l = sum_i resize(X_i);
* ``fpn`` (Eq. 4): X~_l = resize(X~_{l+1}) + X_l top-down over 5 maps, the top one being the
  context map reduced to 256 channels ("FPN based on PSPNet fuses 5 feature maps");
* ``gated_fpn``: the FPN pathway with Eq. 5's duplex gates on the single top-down term,
  X~_l = (1 + G_l) * X_l + (1 - G_l) * resize(G_{l+1} * X~_{l+1});
* ``gff``: Eq. 5.

Cost (ResNet-101, 19 classes, 512 x 512, no aux head, counted on the meta device by
tests/test_gff.py; GFLOPs with a multiply-add = 2 FLOPs, the convention under which our PSPNet
gives 523.5 against Table 3's 580.1):

    =================  ==========  ============  ==================  =========================
    model              params (M)  GFLOPs        increase over ours  Table 3 (increase)
    =================  ==========  ============  ==================  =========================
    PSPNet             65.71       523.5         -                   65.6 M / 580.1 G
    PSPNet + GFF       71.56       602.1         +5.85 M / +78.6 G   69.7 M / 600.1 G (+4.1/+20.0)
    PSPNet + GFF + DFP 72.48       611.2         +6.77 M / +87.8 G   70.5 M / 625.5 G (+4.9/+45.4)
    =================  ==========  ============  ==================  =========================

Parameters are within 3 % of the table (+2.7 %, +2.8 %); the increases are not. The paper's
+4.1 M / +20.0 G for GFF cannot hold the layers its text describes: the four 1x1 reductions
(0.98 M) and the eight 3x3 256 -> 256 convs (4.72 M) are already 5.7 M, and the two 3x3 convs
on the stride-4 level alone cost 38.7 GFLOPs at 512 x 512. The DFP step is close in parameters
(+0.92 M against +0.8 M) and cheaper in FLOPs (+9.1 G against +25.4 G): the paper may run every
H_i at stride 4, and we apply each 1x1 conv over a concatenation of resized maps part by part at
the parts' own resolutions (:func:`conv1x1_of_resized_concat`; the same function, fewer FLOPs).
We build what the text says and report the difference rather than drop layers to match the
table.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model, resize
from gsbench.models.denseaspp import DenseASPPBlock
from gsbench.models.pspnet import PyramidPooling
from gsbench.models.registry import register_model

FUSIONS = ("concat", "add", "fpn", "gated_fpn", "gff")
BASES = ("pspnet", "denseaspp")
GATE_INPUTS = ("reduced", "unreduced")
UPDATES = ("simultaneous", "sequential")


# --- the fusion equations, as plain functions of tensors ------------------------------------------


def gated_fully_fusion(features: list[Tensor], gates: list[Tensor],
                       sequential: bool = False) -> list[Tensor]:
    """Eq. 5 for every level: ``(1 + G_l) X_l + (1 - G_l) sum_{i != l} resize(G_i X_i)``.

    ``features[l]`` is N x C x H_l x W_l, ``gates[l]`` N x 1 (or C) x H_l x W_l in [0, 1]. The
    sum over i != l is taken as the sum over all i minus the own term, so each sender's gated map
    is resized once per receiving resolution instead of once per pair of levels.

    ``sequential``: the in-place update of the authors' re-implementation (``GFF.forward`` in
    lxtGH/DecoupleSegNets ``network/gffnets.py``): levels in order, level l receiving
    ``G_i X~_i`` for the levels i < l fused already and ``G_i X_i`` for the others.
    """
    if sequential:
        fused = list(features)
        for level, (x, g) in enumerate(zip(features, gates)):
            size = x.shape[-2:]
            received = sum(resize(gates[i] * fused[i], size)
                           for i in range(len(features)) if i != level)
            fused[level] = (1 + g) * x + (1 - g) * received
        return fused
    sent = [g * x for g, x in zip(gates, features)]
    fused = []
    by_size: dict[tuple[int, int], Tensor] = {}
    for x, g, own in zip(features, gates, sent):
        size = tuple(x.shape[-2:])
        if size not in by_size:
            by_size[size] = sum(resize(s, size) for s in sent)
        fused.append((1 + g) * x + (1 - g) * (by_size[size] - own))
    return fused


def addition_fusion(features: list[Tensor]) -> list[Tensor]:
    """Eq. 3: every level receives the sum of all levels resized to its resolution."""
    by_size: dict[tuple[int, int], Tensor] = {}
    for x in features:
        size = tuple(x.shape[-2:])
        if size not in by_size:
            by_size[size] = sum(resize(f, size) for f in features)
    return [by_size[tuple(x.shape[-2:])] for x in features]


def fpn_fusion(features: list[Tensor], gates: list[Tensor] | None = None) -> list[Tensor]:
    """Eq. 4 top-down, ``X~_L = X_L``, ``X~_l = resize(X~_{l+1}) + X_l`` (levels low to high).

    With ``gates`` (gated FPN) the one top-down term goes through Eq. 5's duplex gates:
    ``X~_l = (1 + G_l) X_l + (1 - G_l) resize(G_{l+1} X~_{l+1})``.
    """
    fused = [features[-1]]
    for level in range(len(features) - 2, -1, -1):
        x, above = features[level], fused[0]
        size = x.shape[-2:]
        if gates is None:
            fused.insert(0, x + resize(above, size))
        else:
            g = gates[level]
            fused.insert(0, (1 + g) * x + (1 - g) * resize(gates[level + 1] * above, size))
    return fused


def conv1x1_of_resized_concat(conv: nn.Conv2d, parts: list[Tensor], size) -> Tensor:
    """``conv(concat([resize(p, size) for p in parts]))`` for a 1x1 ``conv``, computed as
    ``sum_i resize(conv_i(p_i), size) + bias`` with ``conv_i`` the weight columns of part i.

    A 1x1 convolution and bilinear resizing are both linear and act on different axes, so they
    commute (and resizing keeps a constant bias). Projecting each part at its own resolution
    never builds the wide concatenation at the output size: at 512 x 512 the classifier's
    1280-channel stride-4 input alone is 80 MiB, kept again by dropout for the backward pass.
    """
    weights = conv.weight.split([p.shape[1] for p in parts], dim=1)
    out = sum(resize(F.conv2d(p, w), size) for p, w in zip(parts, weights))
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)


# --- modules --------------------------------------------------------------------------------------


class Gate(nn.Sequential):
    """``G = sigmoid(w * X)``: a 1x1 conv (with bias) to ``channels`` gate maps in [0, 1]."""

    def __init__(self, in_channels: int, channels: int = 1):
        super().__init__(nn.Conv2d(in_channels, channels, 1), nn.Sigmoid())


class MultiLevelFusion(nn.Module):
    """Reduce the backbone levels to ``channels``, fuse them (Table 1 method), refine each level.

    ``forward(levels, context)`` takes the backbone maps and the reduced context map y_0 and
    returns the refined fused levels, low to high (stage 2 first).
    """

    def __init__(self, in_channels: tuple[int, ...], channels: int = 256, fusion: str = "gff",
                 gate_channels: int = 1, gate_input: str = "reduced",
                 update: str = "simultaneous"):
        super().__init__()
        for name, value, choices in (("fusion", fusion, FUSIONS),
                                     ("gate_input", gate_input, GATE_INPUTS),
                                     ("update", update, UPDATES)):
            if value not in choices:
                raise GsbenchError(f"gff: {name} must be one of {', '.join(choices)}, "
                                   f"got {value!r}")
        if gate_channels not in (1, channels):
            raise GsbenchError(f"gff: gate_channels must be 1 or fusion_channels ({channels}), "
                               f"got {gate_channels}")
        if fusion != "gff" and (gate_input, update) != ("reduced", "simultaneous"):
            raise GsbenchError(f"gff: gate_input {gate_input!r} and update {update!r} are forms "
                               f"of the gff fusion (Eq. 5), not of fusion {fusion!r}")
        self.fusion = fusion
        self.unreduced_gates = gate_input == "unreduced"
        self.sequential = update == "sequential"
        self.reduce = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels)
        # the context map is the top of the FPN pathway ("FPN based on PSPNet fuses 5 maps")
        num_maps = len(in_channels) + (fusion in ("fpn", "gated_fpn"))
        if fusion in ("gff", "gated_fpn"):
            gate_in = in_channels if self.unreduced_gates else (channels,) * num_maps
            self.gates = nn.ModuleList(Gate(c, gate_channels) for c in gate_in)
        if fusion == "concat":
            self.squeeze = nn.ModuleList(ConvBNReLU(num_maps * channels, channels, 1)
                                         for _ in range(num_maps))
        self.refine = nn.ModuleList(
            nn.Sequential(ConvBNReLU(channels, channels, 3), ConvBNReLU(channels, channels, 3))
            for _ in in_channels
        )

    def forward(self, levels: list[Tensor], context: Tensor) -> list[Tensor]:
        x = [reduce(f) for reduce, f in zip(self.reduce, levels)]
        if self.fusion == "gff":
            read = levels if self.unreduced_gates else x
            fused = gated_fully_fusion(x, [gate(f) for gate, f in zip(self.gates, read)],
                                       self.sequential)
        elif self.fusion == "add":
            fused = addition_fusion(x)
        elif self.fusion == "concat":
            fused = []
            for (conv, bn, relu), level in zip(self.squeeze, x):
                fused.append(relu(bn(conv1x1_of_resized_concat(conv, x, level.shape[-2:]))))
        else:
            x = x + [resize(context, x[-1].shape[-2:])]
            gated = self.fusion == "gated_fpn"
            gates = [gate(f) for gate, f in zip(self.gates, x)] if gated else None
            fused = fpn_fusion(x, gates)[:-1]  # the context level itself is not output
        return [refine(f) for refine, f in zip(self.refine, fused)]


class DenseFeaturePyramid(nn.Module):
    """Eq. 6: ``y_i = H_i([y_0, T_1, ..., T_i])`` top-down, H_i a 1x1 conv + BN + ReLU.

    ``forward(context, levels)`` takes y_0 and the fused levels low to high (as
    :class:`MultiLevelFusion` returns them) and returns ``[y_1, ..., y_L]`` top-down, each at the
    resolution of its own level.
    """

    def __init__(self, channels: int, num_levels: int):
        super().__init__()
        self.layers = nn.ModuleList(
            ConvBNReLU((i + 2) * channels, channels, 1) for i in range(num_levels)
        )

    def forward(self, context: Tensor, levels: list[Tensor]) -> list[Tensor]:
        top_down = levels[::-1]
        outputs = []
        for i, layer in enumerate(self.layers):
            size = top_down[i].shape[-2:]
            inputs = [context] + top_down[: i + 1]
            conv, bn, relu = layer
            outputs.append(relu(bn(conv1x1_of_resized_concat(conv, inputs, size))))
        return outputs


class GFFHead(nn.Module):
    """Context (PPM or DenseASPP) + multi-level fusion (+ DFP) + concatenation classifier.

    The context layers are the head's own children, named as in the base model's head
    (``ppm``, ``bottleneck`` as :class:`~gsbench.models.pspnet.PSPHead`; ``dense_aspp`` as
    :class:`~gsbench.models.denseaspp.DenseASPPHead`, then ``project``), so that a trained base
    model initialises them (``train.init_from``, GFF Table 1); the classifier, which reads the
    concatenated pyramid, is ``fused_cls``, a layer the base model does not have.
    """

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, fusion: str = "gff",
                 dfp: bool = True, base: str = "pspnet", fusion_channels: int = 256,
                 gate_channels: int = 1, dropout: float = 0.1, gate_input: str = "reduced",
                 update: str = "simultaneous"):
        super().__init__()
        if base not in BASES:
            raise GsbenchError(f"gff: base must be one of {', '.join(BASES)}, got {base!r}")
        self.base = base
        c5 = in_channels[-1]
        # the context map y_0 (c5 / 4 channels): PSPNet's pyramid pooling and 3x3 bottleneck, or
        # DenseASPP (dilations 3-24, the block of gsbench.models.denseaspp with its defaults)
        # and a 1x1 projection (Table 4's other base)
        if base == "pspnet":
            self.ppm = PyramidPooling(c5)
            self.bottleneck = ConvBNReLU(self.ppm.out_channels, c5 // 4, 3)
        else:
            self.dense_aspp = DenseASPPBlock(c5, (3, 6, 12, 18, 24))
            self.project = ConvBNReLU(self.dense_aspp.out_channels, c5 // 4, 1)
        # y_0 joins the pyramid at the pyramid's width, like every backbone level
        self.reduce_context = ConvBNReLU(c5 // 4, fusion_channels, 1)
        self.fusion = MultiLevelFusion(in_channels, fusion_channels, fusion, gate_channels,
                                       gate_input, update)
        self.dfp = DenseFeaturePyramid(fusion_channels, len(in_channels)) if dfp else None
        self.fused_cls = classifier((len(in_channels) + 1) * fusion_channels, num_classes, dropout)
        init_kaiming(self)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before the context layers were the head's own children (``context.``)
        # and before the classifier was ``fused_cls`` (``cls.``) load as they did
        for old, new in (("context.", ""), ("cls.", "fused_cls.")):
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def context(self, c5: Tensor) -> Tensor:
        """The context map y_0 from the backbone's last map."""
        if self.base == "pspnet":
            return self.bottleneck(self.ppm(c5))
        return self.project(self.dense_aspp(c5))

    def forward(self, features: list[Tensor]) -> Tensor:
        context = self.reduce_context(self.context(features[-1]))
        levels = self.fusion(features, context)
        outputs = self.dfp(context, levels) if self.dfp is not None else levels
        size = features[0].shape[-2:]  # the stride-4 grid of stage 2
        # Dropout2d drops whole channels independently, so it may act on each part separately
        dropout, conv = self.fused_cls
        parts = [dropout(t) for t in [context] + outputs]
        return conv1x1_of_resized_concat(conv, parts, size)


@register_model
def gff(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
        pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
        fusion: str = "gff", dfp: bool = True, base: str = "pspnet", fusion_channels: int = 256,
        gate_channels: int = 1, gate_input: str = "reduced",
        update: str = "simultaneous") -> nn.Module:
    """GFFNet. ``fusion``: concat | add | fpn | gated_fpn | gff (Table 1); ``dfp``: add the dense
    feature pyramid (Table 2); ``base``: pspnet | denseaspp (Table 4); ``gate_channels``: 1 (paper)
    or ``fusion_channels`` (per-channel gates of the public re-implementation); ``gate_input``:
    reduced (default) | unreduced; ``update``: simultaneous (Eq. 5, default) | sequential (the
    re-implementation's in-place order)."""
    encoder = build_backbone(backbone, output_stride, pretrained)
    head = GFFHead(encoder.channels, num_classes, fusion, dfp, base, fusion_channels,
                   gate_channels, dropout, gate_input, update)
    return make_model(encoder, head, num_classes, aux, dropout)
