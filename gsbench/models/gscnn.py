"""Gated-SCNN: Gated Shape CNNs for semantic segmentation (Takikawa et al., ICCV 2019).

Two streams (paper Sec. 3, Fig. 2):

- **Regular stream**: a dilated backbone (ResNet-50/101 or WideResNet-38, output stride 8) with
  the DeepLabV3+ head (ASPP rates 12/24/36, decoder on the stride-4 features c2).
- **Shape stream** at the full input resolution: the output of the backbone's first
  convolution (upsampled), three residual blocks, each followed by a 1x1 reduction (64 -> 32 ->
  16 -> 8 channels) and a gated convolutional layer (GCL, Eq. 1-2) whose gate reads one regular
  stream stage (1x1 conv to one channel, bilinearly upsampled), then a 1x1 conv to one channel:
  the boundary logits ``s``.
- **Fusion**: the boundary probability ``sigmoid(s)``, optionally concatenated with the Canny
  edges of the input image and mixed by a 1x1 conv + sigmoid (the "+ Gradients" row of
  Table 3), is resized to the ASPP's resolution and enters the ASPP as one more branch (1x1 conv
  1 -> 256, BN, ReLU) beside the image-level pooling; the projection then takes 6 x 256
  channels instead of 5 x 256.

Which stages gate the shape stream: the paper connects the GCLs to "the third, fourth and last
layer of the regular stream" (Sec. 3.1). Counted in each backbone's own module numbering that is
conv3_x / conv4_x / conv5_x (c3, c4, c5) of a ResNet (conv1 being the first) and mod3 / mod4 /
mod7 (c2, c3, c5) of WideResNet-38 (as the official code). The shape stream's input is the
output of the first convolution of the backbone (stride 2 for the deep-stem ResNet, stride 1 for
WideResNet-38), read with a forward hook so the backbone keeps its [c2..c5] contract.

Choices where the paper is silent (documented for the reproduction):

- GCL: ``alpha = sigmoid(conv1x1(BN(s || r)))`` (Eq. 1, the "normalized 1x1 convolution", one
  conv with bias), ``s_hat = conv1x1_w((s * alpha) + s)`` (Eq. 2, ``w_t`` without bias).
- Residual blocks: two 3x3 convs with BN and ReLU (ResNet BasicBlock), as the official code.
- Canny: ``cv2.Canny(uint8 RGB image, 10, 100)`` on the de-normalised input (ImageNet mean /
  std), scaled to 0/1 and never differentiated.
- Without Canny the boundary probability enters the ASPP directly (no 1x1 mixing conv).
- Initialisation: Kaiming for the residual blocks, variance-preserving fan-in for the shape
  stream's 1x1 convs (:func:`init_linear_1x1`); with Kaiming's fan-out rule there the boundary
  logits start in the hundreds and training from scratch diverges at lr 0.01.
- Resizing follows the project (bilinear, align_corners=False); the boundary map is resized
  down to the ASPP's resolution bilinearly, as the official code does.
- The auxiliary FCN head on c4 is available (``aux=True``) but Gated-SCNN trains without one;
  its recipes set ``aux: false``.

Official forms (nv-tlabs/GSCNN at edd16c5, ``network/gscnn.py`` and
``my_functionals/GatedSpatialConv.py``; docs/fidelity.md, Gated-SCNN section): each is a model
option whose default ``"paper"`` is the form above, ``"official"`` the released code's. With all
of them (and ``align_corners: true``) the model computes what the official ``GSCNN.forward``
computes, so the released Cityscapes checkpoint can be imported (``gsbench import-weights
--from gscnn``):

- ``gate``: BN(C+1), 1x1 C+1 -> C+1 (bias), ReLU, 1x1 C+1 -> 1 (bias), BN(1), sigmoid
  (``GatedSpatialConv2d._gate_conv``), about 1.5 k parameters more than Eq. 1's gate;
- ``decoder``: the low-level features are WideResNet-38's mod2 output (128 channels, stride 2,
  not mod3 at stride 4) through a plain 1x1 conv to 48 (no BN, no ReLU: ``bot_fine``), so the
  two 3x3 convs of the decoder run at stride 2; only WideResNet-38 has this form;
- ``aspp_projection``: the 1x1 projection of the ASPP branches is a plain conv (no BN, no ReLU:
  ``bot_aspp``);
- ``classifier``: the last 1x1 conv has no bias and no dropout precedes it (``final_seg.6``);
- ``canny``: Canny of the *normalised* input cast to uint8 as numpy's ``astype(np.uint8)`` does
  on x86 (truncation toward zero, then modulo 256), edges 0/255 (``GSCNN.forward``);
- ``align_corners`` (a flag): every resize inside the model uses ``align_corners=True`` (the
  gating maps and the first conv's output to full resolution, the boundary map down to the
  ASPP's resolution, the ASPP output up to the decoder's), as the official code; the logits'
  final upsampling keeps ``align_corners=False`` in both forms (``seg_out`` there is upsampled
  with the default).

The official code concatenates the ASPP branches as [image pooling, boundary, 1x1, rates] and
the decoder input as [low-level, ASPP]; gsbench as [1x1, rates, image pooling, boundary] and
[ASPP, low-level]. The same function up to the order of weight columns, which the importer
permutes (:mod:`gsbench.weights.gscnn`).

Outputs of ``forward(images)``: ``"out"`` class logits N x K x H x W; ``"edge"`` boundary
**logits** N x 1 x H x W (apply a sigmoid for probabilities) when the shape stream is on;
``"aux"`` in training mode when ``aux``. The loss is :class:`gsbench.losses.gscnn.GatedSCNNLoss`.

Variants (method options): ``shape_stream=False`` is the paper's baseline, the regular stream
alone (identical to :func:`~gsbench.models.deeplab.deeplabv3plus`); ``use_canny=False`` is
"+ GCL" of Table 3; the default (shape stream + Canny) is "+ Gradients" and the full model.

Parameter share of the shape stream (Table 5): every parameter that exists only because of the
shape stream - the three gate 1x1 convs on the backbone stages, the residual blocks, reductions
and GCLs, the final 1x1, the Canny mixing conv, the ASPP edge branch and the extra 256 input
channels of the ASPP projection. ``shape_stream_parameter_share`` computes it; the test compares
it with the paper's +0.43 % (ResNet-50), +0.29 % (ResNet-101), +0.13 % (WideResNet-38).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from gsbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import BasicBlock, init_kaiming
from gsbench.models.backbones.wideresnet import WideResNet38
from gsbench.models.common import AuxFCNHead, ConvBNReLU, classifier, resize
from gsbench.models.deeplab import ASPP, ASPP_CHANNELS, LOW_LEVEL_CHANNELS, aspp_rates
from gsbench.models.registry import register_model

#: Widths of the shape stream after each residual block's 1x1 reduction (official code).
SHAPE_STREAM_WIDTHS = (32, 16, 8)
#: Canny hysteresis thresholds of Gated-SCNN (REFERENCE, official code).
CANNY_THRESHOLDS = (10, 100)
#: The values of the architecture-form options (module docstring, "Official forms").
FORMS = ("paper", "official")


def canny_edges(images: Tensor, thresholds: tuple[int, int] = CANNY_THRESHOLDS) -> Tensor:
    """Canny edges (0/1, N x 1 x H x W, no gradient) of ImageNet-normalised images N x 3 x H x W.

    The images are de-normalised to uint8 RGB first; ``cv2.Canny`` on a 3-channel image uses the
    channel with the strongest gradient at each pixel. One OpenCV call per image of the batch.
    Canny is no torch operation: FLOP counts leave it out.
    """
    if images.device.type == "meta":  # shape-only runs (parameter / FLOP counts)
        return images.new_empty(images.shape[0], 1, *images.shape[2:])
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    with torch.no_grad():
        pixels = (images.detach().float().cpu() * std + mean) * 255.0
        rgb = pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    edges = np.stack([cv2.Canny(np.ascontiguousarray(image), *thresholds) for image in rgb])
    return torch.from_numpy(edges > 0).to(images.device, images.dtype).unsqueeze(1)


def canny_edges_official(images: Tensor, thresholds: tuple[int, int] = CANNY_THRESHOLDS) -> Tensor:
    """Canny edges (0/255, N x 1 x H x W, no gradient) the way the official code computes them.

    nv-tlabs/GSCNN ``network/gscnn.py`` ``GSCNN.forward`` casts the *normalised* input tensor
    to uint8 with numpy (``astype(np.uint8)``) and runs ``cv2.Canny(image, 10, 100)`` on it.
    That cast truncates toward zero and wraps modulo 256 on x86 (-1.5 -> 255, -0.5 -> 0,
    2.6 -> 2); it is restated here explicitly, so the result does not depend on the platform
    (on ARM the same numpy cast saturates negative values to 0).
    """
    if images.device.type == "meta":
        return images.new_empty(images.shape[0], 1, *images.shape[2:])
    with torch.no_grad():
        values = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    wrapped = np.mod(np.trunc(values).astype(np.int64), 256).astype(np.uint8)
    edges = np.stack([cv2.Canny(np.ascontiguousarray(image), *thresholds) for image in wrapped])
    return torch.from_numpy(edges).to(images.device, images.dtype).unsqueeze(1)


def init_linear_1x1(conv: nn.Conv2d) -> None:
    """Variance-preserving fan-in init (gain 1) for the shape stream's 1x1 convs.

    No ReLU follows them (reductions, GCL weights ``w_t``, gate convs, the maps to one channel),
    so Kaiming's ReLU gain would double the variance at each and the fan-out rule gives the
    one-channel convs a standard deviation of sqrt(2): the boundary logits then start in the
    hundreds and the lambda1 = 20 BCE diverges at lr 0.01 from scratch.
    """
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="linear")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class GatedConv(nn.Module):
    """Gated convolutional layer (GCL), paper Eq. 1-2, for a C-channel shape-stream map.

    ``alpha = sigmoid(conv1x1(BN(s || r)))`` with ``r`` the one-channel (upsampled) regular
    stream map, then ``s_hat = w^T ((s * alpha) + s)`` with ``w`` a 1x1 conv C -> C.
    ``form="official"``: the gate is ``sigmoid(BN(conv1x1(relu(conv1x1(BN(s || r))))))`` with a
    hidden C+1 -> C+1 conv (``GatedSpatialConv2d._gate_conv`` of the official code).
    """

    def __init__(self, channels: int, form: str = "paper"):
        super().__init__()
        self.gate_norm = nn.BatchNorm2d(channels + 1)
        self.gate_hidden = nn.Conv2d(channels + 1, channels + 1, 1) if form == "official" else None
        self.gate_conv = nn.Conv2d(channels + 1, 1, 1)
        self.gate_out_norm = nn.BatchNorm2d(1) if form == "official" else None
        self.weight = nn.Conv2d(channels, channels, 1, bias=False)

    def attention(self, s: Tensor, r: Tensor) -> Tensor:
        """alpha_t of Eq. 1: N x 1 x H x W in (0, 1)."""
        x = self.gate_norm(torch.cat([s, r], dim=1))
        if self.gate_hidden is not None:
            x = torch.relu(self.gate_hidden(x))
        x = self.gate_conv(x)
        if self.gate_out_norm is not None:
            x = self.gate_out_norm(x)
        return torch.sigmoid(x)

    def forward(self, s: Tensor, r: Tensor) -> Tensor:
        alpha = self.attention(s, r)
        return self.weight(s * alpha + s)


class ShapeStream(nn.Module):
    """Residual blocks interleaved with three GCLs at full resolution; returns boundary logits.

    ``in_channels``: width of the backbone's first convolution; ``gate_channels``: widths of the
    three regular-stream stages that gate it (each reduced to one channel by a 1x1 conv);
    ``gate``: the GCLs' form (:class:`GatedConv`); ``align_corners``: of the resizes to full
    resolution.
    """

    def __init__(self, in_channels: int, gate_channels: tuple[int, int, int], gate: str = "paper",
                 align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners
        widths_in = (in_channels,) + SHAPE_STREAM_WIDTHS[:-1]
        self.blocks = nn.ModuleList([BasicBlock(w, w) for w in widths_in])
        self.reduce = nn.ModuleList(
            [nn.Conv2d(w_in, w_out, 1) for w_in, w_out in zip(widths_in, SHAPE_STREAM_WIDTHS)])
        self.regular_maps = nn.ModuleList([nn.Conv2d(c, 1, 1) for c in gate_channels])
        self.gates = nn.ModuleList([GatedConv(w, gate) for w in SHAPE_STREAM_WIDTHS])
        self.to_boundary = nn.Conv2d(SHAPE_STREAM_WIDTHS[-1], 1, 1, bias=False)
        init_kaiming(self.blocks)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
                init_linear_1x1(module)

    def forward(self, first_conv: Tensor, stages: list[Tensor], size: tuple[int, int]) -> Tensor:
        s = resize(first_conv, size, self.align_corners)
        for block, reduce, regular_map, gate, stage in zip(
                self.blocks, self.reduce, self.regular_maps, self.gates, stages):
            s = reduce(block(s))
            s = gate(s, resize(regular_map(stage), size, self.align_corners))
        return self.to_boundary(s)


class BoundaryASPP(ASPP):
    """ASPP (:class:`~gsbench.models.deeplab.ASPP`) with an optional boundary-map branch.

    With ``boundary_branch`` the one-channel boundary map, resized to the features' resolution,
    goes through a 1x1 conv (BN, ReLU) to 256 channels and is concatenated with the other
    branches before the 1x1 projection (Gated-SCNN fusion module, Sec. 3 "Fusion Module").
    ``projection="official"``: the projection is a plain 1x1 conv (no BN, no ReLU);
    ``align_corners``: of the boundary map's resize.
    """

    def __init__(self, in_channels: int, rates: tuple[int, ...], boundary_branch: bool,
                 projection: str = "paper", align_corners: bool = False):
        super().__init__(in_channels, rates)
        self.align_corners = align_corners
        self.boundary = None
        branches = len(rates) + 2
        if boundary_branch:
            self.boundary = ConvBNReLU(1, ASPP_CHANNELS, 1)
            branches += 1
        if projection == "official":
            self.project = nn.Conv2d(ASPP_CHANNELS * branches, ASPP_CHANNELS, 1, bias=False)
        elif boundary_branch:
            self.project = ConvBNReLU(ASPP_CHANNELS * branches, ASPP_CHANNELS, 1)

    def forward(self, x: Tensor, boundary: Tensor | None = None) -> Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])
        parts = [b(x) for b in self.branches] + [pooled]
        if self.boundary is not None:
            if boundary is None:
                raise GsbenchError("BoundaryASPP was built with a boundary branch: pass the map")
            parts.append(self.boundary(resize(boundary, x.shape[-2:], self.align_corners)))
        return self.project(torch.cat(parts, dim=1))


class GatedSCNN(nn.Module):
    """Regular stream (backbone + DeepLabV3+ head) and, with ``shape_stream``, the shape stream.

    See the module docstring for the architecture, the outputs, the documented choices and the
    official forms (``gate``, ``decoder``, ``aspp_projection``, ``classifier``, ``canny``:
    "paper" or "official"; ``align_corners``).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, rates: tuple[int, ...],
                 dropout: float = 0.1, aux: bool = False, shape_stream: bool = True,
                 use_canny: bool = True, gate: str = "paper", decoder: str = "paper",
                 aspp_projection: str = "paper", classifier_form: str = "paper",
                 canny: str = "paper", align_corners: bool = False):
        super().__init__()
        if use_canny and not shape_stream:
            raise GsbenchError("use_canny needs the shape stream (shape_stream: true): the Canny "
                               "edges are fused with its boundary map")
        for option, value in (("gate", gate), ("decoder", decoder),
                              ("aspp_projection", aspp_projection),
                              ("classifier", classifier_form), ("canny", canny)):
            if value not in FORMS:
                raise GsbenchError(f"model.{option} must be one of {', '.join(FORMS)}, "
                                   f"got {value!r}")
        if decoder == "official" and not isinstance(backbone, WideResNet38):
            raise GsbenchError("model.decoder: official reads WideResNet-38's mod2 (the official "
                               "code's only backbone); use backbone wideresnet38")
        self.backbone = backbone
        self.use_canny = use_canny
        self.canny = canny
        self.align_corners = align_corners
        channels = backbone.channels
        #: backbone submodules whose outputs forward() reads besides [c2..c5], by role
        self._captured: dict[str, str] = {}
        self.shape_stream = None
        self.canny_fusion = None
        if shape_stream:
            first_name, first = next((n, m) for n, m in backbone.named_modules()
                                     if isinstance(m, nn.Conv2d))
            # Kept by name, not as a submodule: registering it twice would duplicate its weights.
            self._captured["first_conv"] = first_name
            self.gate_stages = gate_stage_indices(backbone)
            self.shape_stream = ShapeStream(first.out_channels,
                                            tuple(channels[i] for i in self.gate_stages), gate,
                                            align_corners)
            if use_canny:
                self.canny_fusion = nn.Conv2d(2, 1, 1, bias=False)
                init_linear_1x1(self.canny_fusion)
        self.aspp = BoundaryASPP(channels[-1], rates, shape_stream, aspp_projection, align_corners)
        if decoder == "official":
            self._captured["low_level"] = "mod2"
            last_conv = [m for m in backbone.mod2.modules() if isinstance(m, nn.Conv2d)][-1]
            self.low_level = nn.Conv2d(last_conv.out_channels, LOW_LEVEL_CHANNELS, 1, bias=False)
        else:
            self.low_level = ConvBNReLU(channels[0], LOW_LEVEL_CHANNELS, 1)
        self.fuse = nn.Sequential(
            ConvBNReLU(ASPP_CHANNELS + LOW_LEVEL_CHANNELS, ASPP_CHANNELS, 3),
            ConvBNReLU(ASPP_CHANNELS, ASPP_CHANNELS, 3),
        )
        if classifier_form == "official":
            self.cls = nn.Sequential(nn.Identity(),
                                     nn.Conv2d(ASPP_CHANNELS, num_classes, 1, bias=False))
        else:
            self.cls = classifier(ASPP_CHANNELS, num_classes, dropout)
        init_kaiming(self.aspp)
        init_kaiming(self.low_level)
        init_kaiming(self.fuse)
        init_kaiming(self.cls)
        self.aux_head = AuxFCNHead(channels[2], num_classes, dropout) if aux else None

    def _run_backbone(self, images: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        """[c2..c5] and, by role, the outputs of the submodules in ``_captured`` (forward hooks,
        so the backbone keeps its [c2..c5] contract)."""
        captured: dict[str, Tensor] = {}
        handles = []
        for role, name in self._captured.items():
            def keep(_module, _inputs, out, role=role):
                captured[role] = out
            handles.append(self.backbone.get_submodule(name).register_forward_hook(keep))
        try:
            features = self.backbone(images)
        finally:
            for handle in handles:
                handle.remove()
        return features, captured

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        size = tuple(images.shape[-2:])
        features, captured = self._run_backbone(images)
        outputs = {}
        boundary = None
        if self.shape_stream is not None:
            edge_logits = self.shape_stream(captured["first_conv"],
                                            [features[i] for i in self.gate_stages], size)
            outputs["edge"] = edge_logits
            boundary = torch.sigmoid(edge_logits)
            if self.canny_fusion is not None:
                edges = canny_edges_official if self.canny == "official" else canny_edges
                canny = edges(images).to(boundary.dtype)
                boundary = torch.sigmoid(self.canny_fusion(torch.cat([boundary, canny], dim=1)))
        low = self.low_level(captured.get("low_level", features[0]))
        high = resize(self.aspp(features[-1], boundary), low.shape[-2:], self.align_corners)
        logits = self.cls(self.fuse(torch.cat([high, low], dim=1)))
        outputs["out"] = resize(logits, size)
        if self.training and self.aux_head is not None:
            outputs["aux"] = resize(self.aux_head(features[2]), size)
        return outputs


def gate_stage_indices(backbone: nn.Module) -> tuple[int, int, int]:
    """Indices into [c2, c3, c4, c5] of the "third, fourth and last layer" (Sec. 3.1).

    WideResNet-38: mod3, mod4, mod7 = c2, c3, c5 (official code); ResNet: conv3_x, conv4_x,
    conv5_x = c3, c4, c5.
    """
    return (0, 1, 3) if isinstance(backbone, WideResNet38) else (1, 2, 3)


def shape_stream_parameter_names(model: GatedSCNN) -> list[str]:
    """Names of the parameters that only exist because of the shape stream (Table 5)."""
    return [name for name, _ in model.named_parameters()
            if name.startswith(("shape_stream.", "canny_fusion.", "aspp.boundary."))]


def shape_stream_parameter_share(model: GatedSCNN) -> float:
    """Parameters added by the shape stream, in % of the baseline (regular stream alone), Table 5.

    Added = the shape stream's own modules, the Canny mixing conv, the ASPP boundary branch and
    the projection's extra input channels (256 x 256 weights); the baseline is everything else
    with the projection at its baseline width. The aux head, if any, is left out of both.
    """
    if model.shape_stream is None:
        raise GsbenchError("the model has no shape stream (shape_stream: false)")
    names = set(shape_stream_parameter_names(model))
    added = sum(p.numel() for n, p in model.named_parameters() if n in names)
    projection = model.aspp.project
    weight = projection.weight if isinstance(projection, nn.Conv2d) else projection[0].weight
    added += weight.shape[0] * ASPP_CHANNELS  # the boundary branch's input to the 1x1
    total = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_head."))
    return 100.0 * added / (total - added)


@register_model
def gscnn(num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
          pretrained: str | None = None, aux: bool = True, dropout: float = 0.1,
          shape_stream: bool = True, use_canny: bool = True, gate: str = "paper",
          decoder: str = "paper", aspp_projection: str = "paper", classifier: str = "paper",
          canny: str = "paper", align_corners: bool = False) -> nn.Module:
    """Gated-SCNN on ``backbone`` (resnet50 / resnet101 / wideresnet38 / the tiny ones).

    ``shape_stream=False`` builds the paper's baseline (DeepLabV3+ regular stream);
    ``use_canny=False`` leaves the Canny image gradients out of the fusion (Table 3 "+ GCL").
    ``gate``, ``decoder``, ``aspp_projection``, ``classifier``, ``canny``: "paper" (default) or
    "official", and ``align_corners``: the official code's forms (module docstring).
    """
    encoder = build_backbone(backbone, output_stride, pretrained)
    return GatedSCNN(encoder, num_classes, aspp_rates(output_stride), dropout, aux,
                     shape_stream, use_canny, gate, decoder, aspp_projection, classifier, canny,
                     align_corners)
