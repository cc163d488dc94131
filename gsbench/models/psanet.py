"""PSANet: Point-wise Spatial Attention Network (Zhao et al., ECCV 2018).

The PSA module (paper Sec. 3, Fig. 2) predicts for every position i of the (shrunk) feature map
two attention maps over all positions, one per information-flow direction, and aggregates

    z_i = sum_j a^c_{i,j} x_j  (collect, Eq. 4)        z_i = sum_j a^d_{i,j} x_j  (distribute, Eq. 5)

with the normalisation N of Eq. (8) equal to 1 after a softmax (as the authors' PyTorch code,
hszhao/semseg, and mmsegmentation). The bi-directional module concatenates Z^c and Z^d
(Sec. 3.2). Each branch predicts an *over-complete* map h_i of (2H-1) x (2W-1) values per
position, of which the H x W window centred on i is used (Eq. 9, Fig. 3); mmsegmentation trains
with a fixed smaller mask (97 x 97 on Cityscapes, 66 x 66 on ADE20K), whose window is clipped
the same way. The "compact" variant of Table 1 predicts H x W values per position, indexed by
absolute position instead of relative location.

Index math (the ``PSAMask`` op of semseg / mmseg; Eq. 9 is its 1-based form for the full mask):
with ``half = (mask - 1) // 2``, mask cell (i, j) of position (h, w) points at target
(h + i - half_h, w + j - half_w), so the centre cell points at the position itself; collect
writes ``out[target_index, h, w]``, distribute writes ``out[h * W + w, target_h, target_w]``;
cells outside the map are dropped and window entries no cell reaches stay 0. The softmax is taken
*after* this window extraction, over the first HW axis of ``out`` (the source position j of
Eq. 8, for each receiving position), and zero entries take part in it: with a mask smaller than
2H-1 every position outside the window gets the weight of a zero score, exactly as in the
reference codes. With the full over-complete mask every window entry is covered and no zero remains.

Two forms of the head (``head``): "semseg" (default, the authors' code hszhao/semseg
``model/psanet.py``) and "mmseg" (``mmseg/models/decode_heads/psa_head.py``, which its released
checkpoints need). They differ in two places. (1) The shrink: semseg always shrinks to
``(H - 1) // s + 1`` with align_corners=True; mmseg does so only when neither H nor W is a
multiple of s, and otherwise to ``H // s`` with align_corners=False, and the expand back to H x W
uses the same align_corners (:func:`shrink_plan`). (2) mmseg's 1x1 fusion conv ``proj`` has
``padding=1``, so its output is (h + 2) x (w + 2) (the border is BN + ReLU of zero) and is then
resized to H x W.

Memory: per branch the module holds the predicted mask (N x mask_h*mask_w x h x w), the
gather intermediate (N x h x mask_w x hw) and the N x hw x hw attention before and after the
softmax, where h x w is the map after the shrink factor. On a 1 x 2048 x 97 x 97 input with the
defaults (shrink 2 -> 49 x 49, full mask 97 x 97) that is 86.2 MiB (mask) + 43.5 MiB
(intermediate) + 2 x 22.0 MiB (attention) per branch in float32; without the shrink (97 x 97,
mask 193 x 193) the mask alone would be 1.3 GiB per branch. Measured peak live tensor memory
of the whole bi-directional module on that input (parameters excluded, input included):
416 MiB forward, 755 MiB forward + backward (benchmarks/RESULTS.md,
``python benchmarks/bench_psanet.py``).

Where the paper and the official code differ: docs/fidelity.md, "PSANet and PSPNet".
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import ConvBNReLU, classifier, make_model, resize
from gsbench.models.registry import register_model

PSA_TYPES = ("collect", "distribute", "bi")
#: ``head`` option: the authors' code (semseg) or mmsegmentation's PSAHead
PSA_HEADS = ("semseg", "mmseg")


def full_mask_size(height: int, width: int) -> tuple[int, int]:
    """The over-complete mask size (2H-1, 2W-1) of a map of ``height`` x ``width`` (Sec. 3.3)."""
    return 2 * height - 1, 2 * width - 1


def shrunk_size(height: int, width: int, shrink_factor: int) -> tuple[int, int]:
    """Size of the map the attention runs on: ``(H - 1) // s + 1`` (semseg), 1 -> unchanged."""
    return (height - 1) // shrink_factor + 1, (width - 1) // shrink_factor + 1


def shrink_plan(height: int, width: int, shrink_factor: int, head: str = "semseg",
                align_corners: bool = False) -> tuple[tuple[int, int], bool]:
    """(size of the attended map, align_corners of the shrink and of the expand back).

    semseg: :func:`shrunk_size` with align_corners=True. mmseg (``PSAHead.forward``): the same
    when neither ``height`` nor ``width`` is a multiple of ``shrink_factor``, else
    ``(H // s, W // s)`` with align_corners=False. Without a shrink (factor 1) the size is
    unchanged and any resize uses the model's ``align_corners``.
    """
    if shrink_factor == 1:
        return (height, width), align_corners
    if head == "mmseg" and not (height % shrink_factor and width % shrink_factor):
        return (height // shrink_factor, width // shrink_factor), False
    return shrunk_size(height, width, shrink_factor), True


@functools.lru_cache(maxsize=32)
def _window_gather_index(
    size: int, mask: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Along one axis: mask cell ``index[t, p]`` that position p uses for target t, and validity.

    Position p's cell k points at target ``p + k - half`` (REFERENCE), so the cell for target t is
    ``k = t - p + half``; it exists when ``0 <= k < mask``. The index is clamped into range and
    the invalid entries are zeroed with ``valid``, which is None when every entry is valid (a
    mask of at least 2 * size - 1 cells). Cached per (size, mask, device): built once per feature
    size, not per forward.
    """
    half = (mask - 1) // 2
    target = torch.arange(size).view(size, 1)
    position = torch.arange(size).view(1, size)
    cell = target - position + half
    valid = (cell >= 0) & (cell < mask)
    index = cell.clamp(0, mask - 1).to(device)
    return index, None if bool(valid.all()) else valid.to(device)


def over_complete_to_target_major(
    over_complete: torch.Tensor, mask_size: tuple[int, int]
) -> torch.Tensor:
    """Cut each position's H x W window out of its over-complete mask (Eq. 9, Fig. 3).

    ``over_complete``: N x (mask_h * mask_w) x H x W, channel ``i * mask_w + j`` = mask cell
    (i, j). Returns G: N x HW x HW with ``G[n, t, p]`` = the value position p predicted for
    target position t (0 where t lies outside p's mask). G is the collect attention of
    REFERENCE (``out[t, h, w]``, viewed N x HW x H x W); the distribute one is its transpose.

    The window offset depends on the position, but separately per axis (rows on (t_h, h),
    columns on (t_w, w)), so two gathers with small cached (size x size) indices do it without a
    loop and without an HW x HW index tensor.
    """
    n, channels, height, width = over_complete.shape
    mask_h, mask_w = mask_size
    if channels != mask_h * mask_w:
        raise GsbenchError(
            f"over-complete mask has {channels} channels, expected mask_h*mask_w = "
            f"{mask_h}*{mask_w} = {mask_h * mask_w}"
        )
    cells = over_complete.reshape(n, mask_h, mask_w, height, width)
    row_index, row_valid = _window_gather_index(height, mask_h, over_complete.device)
    col_index, col_valid = _window_gather_index(width, mask_w, over_complete.device)

    # Rows: rows[n, t_h, j, h, w] = cells[n, t_h - h + half_h, j, h, w].
    index = row_index.view(1, height, 1, height, 1).expand(n, height, mask_w, height, width)
    rows = cells.gather(1, index)
    if row_valid is not None:
        rows = rows * row_valid.view(1, height, 1, height, 1)
    # Columns: out[n, t_h, t_w, h, w] = rows[n, t_h, t_w - w + half_w, h, w].
    index = col_index.view(1, 1, width, 1, width).expand(n, height, width, height, width)
    out = rows.gather(2, index)
    if col_valid is not None:
        out = out * col_valid.view(1, 1, width, 1, width)
    return out.reshape(n, height * width, height * width)


def point_wise_attention(
    predicted: torch.Tensor, mode: str, mask_size: tuple[int, int] | None, compact: bool = False
) -> torch.Tensor:
    """Attention matrix A (N x HW x HW) of one branch, with ``Z = X A`` (Eq. 4 / 5, N = 1).

    ``predicted`` is the branch's last conv output, N x C x H x W: the over-complete mask
    (C = mask_h * mask_w) or, with ``compact``, one value per absolute position (C = H * W,
    Table 1 "COLLECT (Compact)"). ``A[n, j, i]`` is the weight of source j in the new feature
    of position i: the REFERENCE buffer (collect ``out[t, h, w]``, distribute
    ``out[h * W + w, t_h, t_w]``) after a softmax over its first HW axis.
    """
    n, channels, height, width = predicted.shape
    hw = height * width
    if compact:
        if channels != hw:
            raise GsbenchError(
                f"compact PSA predicts {channels} values per position but the attended map is "
                f"{height}x{width} = {hw} positions; set mask_size to the shrunk feature size"
            )
        # Channel t at position p is p's value for target t: already target-major.
        target_major = predicted.reshape(n, hw, hw)
    else:
        target_major = over_complete_to_target_major(predicted, mask_size)
    if mode == "collect":
        return F.softmax(target_major, dim=1)
    if mode == "distribute":
        # REFERENCE buffer = G^T; softmax over its first axis = softmax of G over its last.
        return F.softmax(target_major, dim=2).transpose(1, 2)
    raise GsbenchError(f"PSA mode must be 'collect' or 'distribute', got {mode!r}")


class MaskPredictor(LazyModuleMixin, nn.Conv2d):
    """The branch's last 1x1 conv: one attention value per mask cell and position.

    With a ``mask_size`` its output channels are fixed at construction. Without one the module
    is lazy: the first forward fixes the mask from the map it sees - (2h-1, 2w-1), or (h, w) when
    ``compact`` - and it stays fixed afterwards (as semseg derives it from the training crop).
    The mask size is a persistent buffer, so a checkpoint restores it. Until the weight exists,
    whatever touches every parameter fails in torch itself, as for every torch lazy module:
    building an optimizer or DDP, ``.to(memory_format=...)``, ``to_empty``, counting parameters.
    Run one forward at the training crop size (eval mode, no grad) or load a checkpoint first,
    or give ``mask_size`` (the paper recipes do).
    """

    cls_to_become = None

    def __init__(self, in_channels: int, mask_size: tuple[int, int] | None, compact: bool) -> None:
        super().__init__(in_channels, 0, kernel_size=1, bias=False)
        self.compact = compact
        self.register_buffer("mask_hw", torch.zeros(2, dtype=torch.long))
        self._mask_size = (0, 0)  # not known until the first forward
        if mask_size is not None:
            self._set_mask_size(mask_size)
            self.weight = nn.Parameter(torch.empty(self.out_channels, in_channels, 1, 1))
            self.reset_parameters()
        else:
            self.weight = UninitializedParameter()

    def _set_mask_size(self, mask_size: tuple[int, int]) -> None:
        # Kept as Python ints too: the forward reads them without a device sync, also on meta.
        self._mask_size = (int(mask_size[0]), int(mask_size[1]))
        self.mask_hw.copy_(torch.tensor(self._mask_size, dtype=torch.long))
        self.out_channels = self._mask_size[0] * self._mask_size[1]

    @property
    def mask_size(self) -> tuple[int, int]:
        return self._mask_size

    def reset_parameters(self) -> None:
        # The project's init (init_kaiming), which cannot reach a weight that does not exist yet.
        if not self.has_uninitialized_params() and self.out_channels != 0:
            nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def initialize_parameters(self, features: torch.Tensor) -> None:
        if self.has_uninitialized_params():
            height, width = features.shape[-2:]
            size = (height, width) if self.compact else full_mask_size(height, width)
            self._set_mask_size(size)
            self.weight.materialize((self.out_channels, self.in_channels, 1, 1))
            self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Keep out_channels consistent with the loaded weight (a lazy one is materialised by the
        # LazyModuleMixin load hook from the checkpoint's shape).
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        loaded = state_dict.get(prefix + "mask_hw")
        if loaded is not None and loaded.device.type != "meta":
            self._mask_size = tuple(int(v) for v in loaded.tolist())
        if not self.has_uninitialized_params():
            self.out_channels = self.weight.shape[0]


class PointwiseSpatialAttention(nn.Module):
    """The PSA module of Fig. 2: returns ``concat(X, proj(concat(Z^c, Z^d)))``, 2 x in channels.

    Per branch (Sec. 3.3): 1x1 conv in -> mid (BN, ReLU) to reduce channels, bilinear shrink by
    ``shrink_factor`` (:func:`shrink_plan`: size ``(H-1)//s+1``, align_corners=True, as semseg),
    attention head 1x1 mid -> mid (BN, ReLU) and 1x1 to mask_h*mask_w; the window cut + softmax
    of :func:`point_wise_attention`; ``Z = X A``. The branches' Z are concatenated, fused by a 1x1
    conv to ``in_channels`` (BN, ReLU), resized back to H x W and concatenated with the input.
    ``psa_type``: "collect", "distribute" or "bi" (both, Eq. 8). ``head="mmseg"``: mmseg's
    shrink rule and its padded fusion conv (see the module docstring); ``align_corners`` is the
    model's, used only by the mmseg form without a shrink.
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        psa_type: str = "bi",
        compact: bool = False,
        mask_size: tuple[int, int] | None = None,
        shrink_factor: int = 2,
        head: str = "semseg",
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if psa_type not in PSA_TYPES:
            raise GsbenchError(f"psa_type must be one of {', '.join(PSA_TYPES)}, got {psa_type!r}")
        if head not in PSA_HEADS:
            raise GsbenchError(f"psanet head must be one of {', '.join(PSA_HEADS)}, got {head!r}")
        if shrink_factor < 1:
            raise GsbenchError(f"shrink_factor must be >= 1, got {shrink_factor}")
        if mask_size is not None:
            mask_size = tuple(int(v) for v in mask_size)
            if len(mask_size) != 2 or min(mask_size) < 1:
                raise GsbenchError(f"mask_size must be two positive ints (h, w), got {mask_size}")
        self.psa_type = psa_type
        self.compact = compact
        self.shrink_factor = shrink_factor
        self.head = head
        self.align_corners = align_corners
        self.modes = ("collect", "distribute") if psa_type == "bi" else (psa_type,)
        self.reduce = nn.ModuleDict(
            {mode: ConvBNReLU(in_channels, mid_channels) for mode in self.modes}
        )
        self.attention = nn.ModuleDict(
            {
                mode: nn.Sequential(
                    ConvBNReLU(mid_channels, mid_channels),
                    MaskPredictor(mid_channels, mask_size, compact),
                )
                for mode in self.modes
            }
        )
        self.proj = ConvBNReLU(mid_channels * len(self.modes), in_channels)
        if head == "mmseg":
            self.proj[0].padding = (1, 1)  # psa_head.py: ConvModule(..., kernel_size=1, padding=1)
        init_kaiming(self.reduce)
        init_kaiming(self.proj)
        for mode in self.modes:
            init_kaiming(self.attention[mode][0])  # the MaskPredictor inits itself

    def mask_size(self, mode: str) -> tuple[int, int]:
        """The mask size of a branch (after the first forward when it was left to the module)."""
        return self.attention[mode][-1].mask_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        small, align_corners = shrink_plan(height, width, self.shrink_factor, self.head,
                                           self.align_corners)
        aggregated = []
        for mode in self.modes:
            features = resize(self.reduce[mode](x), small, align_corners)
            predicted = self.attention[mode](features)
            attention = point_wise_attention(
                predicted, mode, self.mask_size(mode), compact=self.compact
            )
            n, c = features.shape[:2]
            z = torch.bmm(features.reshape(n, c, -1), attention)
            aggregated.append(z.reshape(n, c, *small))
        context = resize(self.proj(torch.cat(aggregated, dim=1)), (height, width), align_corners)
        return torch.cat([x, context], dim=1)


class PSAHead(nn.Module):
    """PSANet decode head (Fig. 4): PSA module on c5, 3x3 conv 2C -> C/4 (4096 -> 512 on
    ResNet-50/101, BN, ReLU), dropout and 1x1 classifier. Branch width C/4 (2048 -> 512)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dropout: float = 0.1,
        psa_type: str = "bi",
        compact: bool = False,
        mask_size: tuple[int, int] | None = None,
        shrink_factor: int = 2,
        head: str = "semseg",
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        width = in_channels // 4
        self.psa = PointwiseSpatialAttention(
            in_channels, width, psa_type, compact, mask_size, shrink_factor, head, align_corners
        )
        self.bottleneck = ConvBNReLU(2 * in_channels, width, 3)
        self.cls = classifier(width, num_classes, dropout)
        init_kaiming(self.bottleneck)
        init_kaiming(self.cls)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.cls(self.bottleneck(self.psa(features[-1])))


@register_model
def psanet(
    num_classes: int,
    backbone: str = "resnet101",
    output_stride: int = 8,
    pretrained: str | None = None,
    aux: bool = True,
    dropout: float = 0.1,
    psa_type: str = "bi",
    compact: bool = False,
    mask_size: tuple[int, int] | int | None = None,
    shrink_factor: int = 2,
    align_corners: bool = False,
    head: str = "semseg",
) -> nn.Module:
    """PSANet: dilated ResNet + PSA head (+ stage-3 aux FCN head, loss weight 0.4).

    ``psa_type``: "collect", "distribute" or "bi" (Table 1 COLLECT / DISTRIBUTE /
    COLLECT+DISTRIBUTE). ``compact``: Table 1 "(Compact)", H x W values per position.
    ``mask_size``: (h, w) or one int for a square mask (mmseg: 97 on Cityscapes 512 x 1024 crops,
    66 on ADE20K); None derives the full over-complete mask (2h-1, 2w-1) - or (h, w) when
    compact - from the shrunk feature map of the first forward (the training crop); the model
    is then lazy until that forward, see :class:`MaskPredictor`. For a crop of S pixels at output
    stride 8 the full mask is ``full_mask_size(*shrunk_size(f, f, 2))`` with ``f = (S - 1) // 8 + 1``
    (713 -> 89). ``shrink_factor``: spatial shrink before the attention (2).
    ``align_corners``: upsample the logits with align_corners=True, as hszhao/semseg's
    ``model/psanet.py`` (the PSA shrink and expand follow :func:`shrink_plan`).
    ``head``: "semseg" (the authors' code) or "mmseg" (mmsegmentation's shrink rule and padded
    fusion conv, which its released checkpoints need; see the module docstring).
    """
    if isinstance(mask_size, int):
        mask_size = (mask_size, mask_size)
    encoder = build_backbone(backbone, output_stride, pretrained)
    decode_head = PSAHead(
        encoder.channels[-1], num_classes, dropout, psa_type, compact, mask_size, shrink_factor,
        head, align_corners,
    )
    return make_model(encoder, decode_head, num_classes, aux, dropout, align_corners)
