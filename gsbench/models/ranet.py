"""RANet: Region Attention Network (Shen et al., NeurIPS 2020).

Where the paper's text and the released code (dingguo1996/RANet) differ, both forms exist as
model options with the values "paper" and "official" (``segment_samples``,
``semantic_distance``, ``region_score``, ``score_source``, ``rib_layers``, ``rib_attention``,
plus ``region_threshold`` and ``multi_grid``); docs/fidelity.md, section "RANet", lists every
point with the paper's equation, the released file and the evidence for each default. The
description below is the paper's form; the released forms are documented at
:func:`segment_max` (D), :func:`binary_jsd` (E), :class:`StageThreeScores` (B, C),
:class:`RIBLayers` and :func:`official_interaction` (RIB). On the CPU the released RCB runs in
compiled loops (:mod:`gsbench.models.ranet_native`) and never builds an hw x hw table.

The head runs on the stride-8 feature map A (a 3x3 conv reduces c5 to M = 512 channels, or
DeepLabV3's ASPP does with ``aspp=True``, Table 5's "HRNetV2-W48+ASPP") and has two blocks
(paper Sec. 3):

Region Construction Block (RCB, Sec. 3.1), for every pair of pixels (i, j) of the h x w map:

- B = sigmoid(1x1 conv(A)), the boundary score map; C = softmax(1x1 conv(A)), the semantic score
  maps (both heads are also supervised, see :class:`gsbench.losses.ranet.RANetLoss`);
- D_ij = max of B on the segment from i to j (Eq. 1). Sampling, as the official CUDA op and
  Fig. 2: one sample per pixel step along the segment's major axis (the axis with the larger of
  |dy|, |dx|), t = 0..L with L = max(|dy|, |dx|); the minor coordinate i + t * d_minor / L is
  fractional and B there is the linear interpolation of its two nearest pixels. Unlike the
  official op, which samples only the interior of the segment, both end points are included:
  the paper defines B_{i<->j} as the pixels of the line whose end points are i and j. D_ii = B_i;
- E_ij = Jensen-Shannon divergence of C_i and C_j in bits (Eq. 2), so E lies in [0, 1]:
  E_ij = H(U_ij) - (H(C_i) + H(C_j)) / 2 with U_ij = (C_i + C_j) / 2;
- F_ij = (1 - D_ij)(1 - E_ij) (Eq. 3); the Table 1 variants keep one cue: F = 1 - D
  ("boundary map") or F = 1 - E ("semantic map");
- F^g = W^g (x) F (Eq. 4): W^g is one 3x3 kernel (with bias) convolved over every pixel's
  region attention map F_i viewed as an h x w image, followed by a sigmoid so that the
  representative score J of Eq. (5) lies in [0, 1] as the paper states. The kernel starts as
  10 x identity with bias -5, i.e. F^g = sigmoid(10 (F - 0.5)) at initialisation;
- G_ij = [ (F^g_ij + F^g_ji) / 2 > t ] (Eq. 4, the sign test taken on the score centred at the
  threshold t; t = 0.5 is the sigmoid's centre, the official code links at 0.8:
  ``region_threshold``). G need not be transitive and the paper does not say how it becomes a
  partition. ``grouping="first_link"`` (default, the official code's rule,
  :func:`first_link_regions`): each pixel links to the first pixel j <= i it is grouped with,
  and the links are resolved by pointer jumping. ``grouping="components"``: the connected
  components of G (:func:`connected_regions`, min-label propagation); one stray pair then
  merges two regions, so it yields fewer, larger regions.

Region Interaction Block (RIB, Sec. 3.2), per image:

- J_i = mean of F^g_ij over the pixels j of i's region (Eq. 5); the K pixels with the highest J
  in each region are its representatives (all its pixels when it has fewer than K; ties go to
  the lower pixel index);
- intra-region collection (Eq. 6), inter-region interaction (Eq. 7) and intra-region
  distribution (Eq. 8) exactly as written, with softmax weights on raw dot products (no
  1/sqrt(M) scale) and, in Eq. (7), the sum over all other regions of each region's own
  softmax-weighted representative. Table 1 ablations: ``intra=False`` drops the collection and
  the distribution (A^l = J(p) A(p); only the representatives receive A^g, O_i = J_i A_i
  + [i is a representative] A^g_i); ``inter=False`` drops the sum of Eq. (7)
  (A^g = J(p) A^l).

The decode head then concatenates A and the contextual map O, applies a 3x3 conv to 512
(BN, ReLU), dropout and the classifier (the CCNet / DANet convention of the time; the paper does
not describe the layers after RIB).

Memory: nothing of size (hw)^2 x L is ever stored. The pairwise maps are computed in blocks of
rows i (all j at once, ``max_chunk_elements`` bounds rows x hw x L). The forward pass stores F^g
of one image (hw x hw floats, 354 MB at 97 x 97) without autograd, groups the pixels into
regions, reads J of Eq. (5) off it and frees it. Backward recomputes F^g block by block and
accumulates the block's gradients (:class:`_RepresentativeScores`), and the maximum of Eq. (1)
passes its gradient to the winning sample only (:class:`_SegmentMax`), so one block's graph is
alive at a time. The thresholded graph G (hw x hw bool, 88 MB) lives while the regions
are found; the segment-sample table is cached per map size (72 MB at 97 x 97). RIB's per-pixel
work against the K slots of the pixel's region runs in checkpointed pixel blocks as well. The
inter-region step is dense over the R <= QK representatives (R x R), which is small unless RCB
splits the map into thousands of regions. Measured peaks are in benchmarks/RESULTS.md
(``python benchmarks/bench_ranet.py``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from gsbench.errors import GsbenchError
from gsbench.models.backbones import build_backbone
from gsbench.models.backbones.resnet import init_kaiming
from gsbench.models.common import AuxFCNHead, ConvBNReLU, SegmentationModel, classifier
from gsbench.models.deeplab import ASPP, aspp_rates
from gsbench.models.nonlocal_net import NonLocalBlock
from gsbench.models.pspnet import PyramidPooling
from gsbench.models import ranet_native
from gsbench.models.registry import register_model

RANET_CONTEXTS = ("region", "spp", "nonlocal")
REGION_CUES = ("both", "boundary", "semantic")
#: Default bound on rows x hw x samples of one block of the pairwise computation (2^23 elements;
#: the temporaries of one block are a few times that in float32 / int64).
DEFAULT_CHUNK_ELEMENTS = 1 << 23


# --- RCB: pairwise maps ---------------------------------------------------------------------------

#: The two forms of each RCB point (``segment_samples``, ``semantic_distance``, ``region_score``,
#: ``score_source``, ``rib_layers``, ``rib_attention``): the paper's text or the released code.
FORMS = ("paper", "official")
#: The released code's form of every RCB / RIB point, as :class:`RegionAttention` options
#: (``recipes/ranet101.yaml`` sets the same values; docs/fidelity.md, RANet).
RELEASED_FORMS = dict(segment_samples="official", semantic_distance="official",
                      region_score="official", score_source="official", rib_layers="official",
                      rib_attention="official", region_threshold=0.8)
#: Official E: class probabilities are clipped into this range (``match_class_kernel.cu``).
OFFICIAL_CLIP = (0.001, 0.99)


@dataclass(frozen=True)
class RCBForm:
    """How RCB computes F (Eq. 1-3): the Table 1 ``cue`` ("both", "boundary", "semantic") and
    the forms of D (``segment_samples``) and E (``semantic_distance``), each in FORMS."""

    cue: str = "both"
    segment_samples: str = "paper"
    semantic_distance: str = "paper"


def _pixel_pairs(rows: Tensor, cols: Tensor | None, num: int) -> tuple[Tensor, Tensor]:
    """Start and end pixel indices broadcast to the output shape: ``len(rows) x num`` (every
    end pixel) when ``cols`` is None, else the pairs ``(rows[p], cols[p])``."""
    if cols is None:
        return rows.view(-1, 1), torch.arange(num, device=rows.device).view(1, -1)
    return rows, cols


@functools.lru_cache(maxsize=8)
def _segment_tables(height: int, width: int, device: torch.device,
                    dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Per offset (dy, dx) of an h x w map, the samples of Eq. (1)'s segment relative to i
    (the ``paper`` form: t = 0..L, end points included).

    Rows are offsets ``(dy + h - 1) * (2w - 1) + (dx + w - 1)``, columns the samples t = 0..T-1
    (T = max(h, w)). Sample t sits at ``(dy, dx) * t / L`` with L = max(|dy|, |dx|): its major
    coordinate is an integer (d * t is computed exactly before the division) and B is
    interpolated linearly between ``floor`` and ``ceil`` of the minor one. Samples t > L repeat
    the end point, so every pair has T samples and no mask is needed. Returns the flat offsets
    of the two neighbours and the interpolation weight of the second. The samples depend on the
    offset only, so the table (2h-1)(2w-1) x T is built once per map size (72 MB at 97 x 97).
    """
    dy = torch.arange(-(height - 1), height, device=device).view(-1, 1, 1)
    dx = torch.arange(-(width - 1), width, device=device).view(1, -1, 1)
    length = torch.maximum(dy.abs(), dx.abs())
    samples = max(height, width)
    steps = torch.minimum(torch.arange(samples, device=device).view(1, 1, -1), length)
    safe_length = length.clamp(min=1)
    y = (dy * steps).to(dtype) / safe_length
    x = (dx * steps).to(dtype) / safe_length
    y0, x0 = y.floor(), x.floor()
    weight = ((y - y0) + (x - x0)).reshape(-1, samples)  # one of the two is 0: the major axis
    low = (y0 * width + x0).long().reshape(-1, samples)
    high = (y.ceil() * width + x.ceil()).long().reshape(-1, samples)
    return low, high, weight


def _paper_samples(boundary: Tensor, start: Tensor, end: Tensor, height: int, width: int):
    """The ``paper`` walk in PyTorch: values ``... x T`` and each sample's (low, high, weight
    of low, weight of high), from :func:`_segment_tables`."""
    low_table, high_table, weight_table = _segment_tables(height, width, boundary.device,
                                                          boundary.dtype)
    dy = torch.div(end, width, rounding_mode="floor") - torch.div(start, width,
                                                                  rounding_mode="floor")
    offset = (dy + height - 1) * (2 * width - 1) + (end % width - start % width + width - 1)
    low = low_table[offset] + start.unsqueeze(-1)
    high = high_table[offset] + start.unsqueeze(-1)
    weight = weight_table[offset]
    values = boundary[low].lerp_(boundary[high], weight)
    return values, (low, high, 1 - weight, weight)


def _official_samples(boundary: Tensor, start: Tensor, end: Tensor, height: int, width: int):
    """The ``official`` walk in PyTorch, the float32 arithmetic of RANet's
    ``match_boundary_kernel.cu`` sample by sample: interior samples k = 1..L-1, x the major axis
    when |dx| >= |dy|, the minor coordinate ``start + k * (float(d_minor) / float(d_major))``
    clamped at 0, and 0 for a sample on the last row (x major) or column (y major) and for
    k >= L. Returns values ``... x T`` and each sample's (low, high, weight of low, weight of
    high)."""
    yi, xi = torch.div(start, width, rounding_mode="floor"), start % width
    yj, xj = torch.div(end, width, rounding_mode="floor"), end % width
    dy, dx = yj - yi, xj - xi
    x_major = (dx.abs() >= dy.abs()) & (dx != 0)
    d_major = torch.where(x_major, dx, dy).unsqueeze(-1)
    d_minor = torch.where(x_major, dy, dx).unsqueeze(-1)
    x_major = x_major.unsqueeze(-1)
    k = torch.arange(1, max(height, width, 3) - 1, device=boundary.device)
    rate = d_minor.to(torch.float32) / d_major.to(torch.float32).masked_fill(d_major == 0, 1)
    minor = k.to(torch.float32) * rate
    minor = torch.where(d_major < 0, -minor, minor)
    position = (torch.where(x_major, yi.unsqueeze(-1), xi.unsqueeze(-1)).to(torch.float32)
                + minor).clamp(min=0)
    floor = position.floor()
    last = torch.where(x_major, height - 1, width - 1)
    valid = (k < d_major.abs()) & (floor < last)
    major = torch.where(x_major, xi.unsqueeze(-1), yi.unsqueeze(-1)) + k * d_major.sign()
    floor_index = floor.long()
    low = torch.where(x_major, floor_index * width + major, major * width + floor_index)
    high = low + torch.where(x_major, width, 1)
    low = torch.where(valid, low, 0)
    high = torch.where(valid, high, 0)
    w_high = torch.where(valid, position - floor, 0.0)
    w_low = torch.where(valid, (floor + 1) - position, 0.0)
    values = w_high * boundary[high].to(torch.float32) + w_low * boundary[low].to(torch.float32)
    return values.to(boundary.dtype), (low, high, w_low.to(boundary.dtype),
                                       w_high.to(boundary.dtype))


class _SegmentMax(torch.autograd.Function):
    """Eq. (1)'s maximum over the interpolated samples, keeping only the winning sample.

    On the CPU the compiled kernel of :mod:`gsbench.models.ranet_native` walks each pair in
    both passes (forward, and backward for the pairs with a non-zero gradient); elsewhere, or
    without a compiler, the PyTorch walks above run with autograd replaced by the winning
    sample: the gradient of a maximum reaches only the sample that won, so saving its two
    neighbours and weights (one value per pair each) is enough. On exact ties between
    different samples the first one takes the whole gradient (a valid subgradient; ``amax``
    would split it).
    """

    @staticmethod
    def forward(ctx, boundary: Tensor, rows: Tensor, cols: Tensor | None, height: int,
                width: int, form: str) -> Tensor:
        native = boundary.device.type == "cpu" and boundary.dtype == torch.float32
        library = ranet_native.kernels() if native else None
        ctx.geometry = (height, width, form, boundary.numel(), boundary.dtype)
        if library is not None:
            ctx.library = library
            ctx.save_for_backward(boundary, rows, cols)
            return ranet_native.forward(library, boundary, height, width, form, rows,
                                        cols).to(boundary.dtype)
        ctx.library = None
        start, end = _pixel_pairs(rows, cols, height * width)
        walk = _paper_samples if form == "paper" else _official_samples
        values, (low, high, w_low, w_high) = walk(boundary, start, end, height, width)
        best, arg = values.max(dim=-1)
        del values
        pick = arg.unsqueeze(-1)
        won = (best > 0) if form == "official" else torch.ones_like(best, dtype=torch.bool)
        ctx.save_for_backward(low.gather(-1, pick).squeeze(-1),
                              high.gather(-1, pick).squeeze(-1),
                              w_low.gather(-1, pick).squeeze(-1) * won,
                              w_high.gather(-1, pick).squeeze(-1) * won)
        return best

    @staticmethod
    def backward(ctx, grad: Tensor):
        height, width, form, num, dtype = ctx.geometry
        if ctx.library is not None:
            boundary, rows, cols = ctx.saved_tensors
            out = ranet_native.backward(ctx.library, boundary, height, width, form, rows, cols,
                                        grad)
            return out.to(dtype), None, None, None, None, None
        low, high, w_low, w_high = (t.flatten() for t in ctx.saved_tensors)
        grad = grad.flatten()
        out = grad.new_zeros(num)
        out.index_add_(0, low, grad * w_low)
        out.index_add_(0, high, grad * w_high)
        return out, None, None, None, None, None


def segment_max(boundary: Tensor, rows: Tensor, height: int, width: int,
                cols: Tensor | None = None, form: str = "paper") -> Tensor:
    """D of Eq. (1): ``len(rows) x hw`` for the pixels ``rows`` against every pixel, or one
    value per pair ``(rows[p], cols[p])`` when ``cols`` is given.

    ``boundary`` is one image's B flattened (hw,). ``form``: "paper" (end points included) or
    "official" (the released op's interior samples), see :mod:`gsbench.models.ranet_native`.
    """
    return _SegmentMax.apply(boundary, rows, cols, height, width, form)


def entropy_bits(prob: Tensor) -> Tensor:
    """Shannon entropy in bits over the last axis (0 log 0 = 0)."""
    return -torch.special.xlogy(prob, prob).sum(-1) / math.log(2.0)


def jensen_shannon(prob: Tensor, rows: Tensor, cols: Tensor | None = None) -> Tensor:
    """E of Eq. (2) in bits (the ``paper`` form) for the pixels ``rows`` against every pixel
    (``len(rows) x hw``), or for the pairs ``(rows[p], cols[p])``.

    ``prob`` is one image's C as hw x N class probabilities. JSD = H(U) - (H(C_i) + H(C_j)) / 2
    with U = (C_i + C_j) / 2, clamped into [0, 1] against rounding.
    """
    start, end = _pixel_pairs(rows, cols, prob.shape[0])
    mixture = 0.5 * (prob[start] + prob[end])
    own = entropy_bits(prob)
    divergence = entropy_bits(mixture) - 0.5 * (own[start] + own[end])
    return divergence.clamp(0.0, 1.0)


def _negative_entropy(p: Tensor) -> Tensor:
    """p ln p + (1 - p) ln(1 - p): minus the entropy of Bernoulli(p) in nats."""
    return torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)


def binary_jsd(prob: Tensor, rows: Tensor, cols: Tensor | None = None) -> Tensor:
    """E in the ``official`` form (RANet ``ops/match_class/src/match_class_kernel.cu``): the
    Jensen-Shannon divergence in nats of Bernoulli(p) and Bernoulli(q), where c is the argmax
    class of the start pixel i, p = C_i[c] and q = C_j[c], both clipped into [0.001, 0.99].
    Not symmetric (c is i's class); 0 on the diagonal, at most 0.661.

    Written as (h(p) + h(q)) / 2 - h((p + q) / 2) with h = :func:`_negative_entropy`, the
    kernel's four-term sum rearranged. Gradients are autograd's (the released op has a
    hand-written backward with an operator-precedence slip, see docs/fidelity.md).
    """
    start, end = _pixel_pairs(rows, cols, prob.shape[0])
    with torch.no_grad():
        cls = prob.argmax(dim=1)
    own_class = cls[start]
    clipped = prob.clamp(*OFFICIAL_CLIP)
    p = clipped[start, own_class]
    q = clipped[end, own_class]
    return 0.5 * (_negative_entropy(p) + _negative_entropy(q)) - _negative_entropy(0.5 * (p + q))


def region_attention(boundary: Tensor, prob: Tensor, rows: Tensor, height: int, width: int,
                     cue: str = "both", cols: Tensor | None = None,
                     segment_samples: str = "paper", semantic_distance: str = "paper") -> Tensor:
    """F of Eq. (3) for the pixels ``rows`` (or the pairs with ``cols``): (1 - D)(1 - E), or
    one factor (Table 1 cues); D and E in the chosen forms."""
    def one_minus_d():
        return 1 - segment_max(boundary, rows, height, width, cols, segment_samples)

    def one_minus_e():
        distance = jensen_shannon if semantic_distance == "paper" else binary_jsd
        return 1 - distance(prob, rows, cols)

    if cue == "boundary":
        return one_minus_d()
    if cue == "semantic":
        return one_minus_e()
    return one_minus_d() * one_minus_e()


def regularised_scores(attention: Tensor, weight: Tensor, bias: Tensor, height: int,
                       width: int) -> Tensor:
    """F^g of Eq. (4) for a block of rows: sigmoid(W^g (x) F_i) on each row's h x w map."""
    maps = attention.view(-1, 1, height, width)
    scores = F.conv2d(maps, weight, bias, padding=weight.shape[-1] // 2)
    return torch.sigmoid(scores).view(attention.shape)


def _row_blocks(num: int, per_pair: int, max_elements: int) -> list[Tensor]:
    """Row index blocks with rows x num x per_pair <= max_elements (at least one row each)."""
    rows = max(1, max_elements // max(1, num * per_pair))
    return list(torch.arange(num).split(rows))


def connected_regions(adjacent_rows, num: int, device: torch.device,
                      blocks: list[Tensor]) -> Tensor:
    """Region id 0..Q-1 of every pixel: the connected components of the pair graph G.

    ``adjacent_rows(rows)`` returns G's boolean ``len(rows) x num`` block. Min-label
    propagation: every pixel takes the smallest label among itself and its neighbours, then
    pointer jumping (label <- label[label]) shortcuts chains, until nothing changes. Each pixel's
    label is always a pixel of its own component and never grows, so the fixed point is the
    smallest pixel index of each component. Ids are renumbered in order of that smallest index.
    """
    labels = torch.arange(num, device=device)
    blocks_g = [(rows.to(device), adjacent_rows(rows.to(device))) for rows in blocks]
    sentinel = torch.full((), num, device=device)
    while True:
        neighbour_min = torch.cat([
            torch.where(block, labels.unsqueeze(0), sentinel).amin(dim=1) for _, block in blocks_g
        ])
        updated = torch.minimum(labels, neighbour_min)
        while True:
            jumped = updated[updated]
            if torch.equal(jumped, updated):
                break
            updated = jumped
        if torch.equal(updated, labels):
            break
        labels = updated
    return torch.unique(labels, return_inverse=True)[1]


def first_link_regions(adjacent_rows, num: int, device: torch.device,
                       blocks: list[Tensor]) -> Tensor:
    """Region id 0..Q-1 of every pixel by the official RANet rule: each pixel links to the first
    (lowest-index) pixel j <= i it is grouped with (itself when there is none), and the links
    are followed by pointer jumping to their root. Every region is connected in G, but a pair
    connected only through later pixels stays split, so this gives at least as many regions as
    :func:`connected_regions`. Ids are renumbered in order of the root index.
    """
    parents = []
    for rows in blocks:
        rows = rows.to(device)
        block = adjacent_rows(rows)
        cols = torch.arange(num, device=device)
        earlier = block & (cols.unsqueeze(0) <= rows.unsqueeze(1))
        first = torch.where(earlier, cols.unsqueeze(0), torch.full((), num, device=device))
        parents.append(torch.minimum(first.amin(dim=1), rows))
    return resolve_links(torch.cat(parents))


def resolve_links(parent: Tensor) -> Tensor:
    """Region ids 0..Q-1 from first links (parent[i] <= i): pointer jumping to the roots
    (parent[r] = r), then the roots ranked by index. The released code jumps 10 times
    (chains up to 1024 links); gsbench jumps until nothing changes."""
    while True:
        jumped = parent[parent]
        if torch.equal(jumped, parent):
            break
        parent = jumped
    return torch.unique(parent, return_inverse=True)[1]


#: Region assignment rules of :class:`RegionAttention` (``grouping``).
GROUPINGS = {"first_link": first_link_regions, "components": connected_regions}


def _pair_scores(rows: Tensor, boundary: Tensor, prob: Tensor, weight: Tensor | None,
                 bias: Tensor | None, height: int, width: int, form: RCBForm,
                 cols: Tensor | None = None) -> Tensor:
    """The pair scores that RCB groups and J averages: F^g rows (Eq. 1-4, W^g (x) F on each
    row's map, in F's dtype) for the ``paper`` region score, F itself (for rows, or for the
    pairs with ``cols``) for the ``official`` one (``weight`` None: no W^g)."""
    attention = region_attention(boundary, prob, rows, height, width, form.cue, cols,
                                 form.segment_samples, form.semantic_distance)
    if weight is None:
        return attention
    return regularised_scores(attention, weight.to(attention.dtype), bias.to(attention.dtype),
                              height, width)


def _region_mean(scores: Tensor, rows: Tensor, regions: Tensor, counts: Tensor) -> Tensor:
    """J of Eq. (5) for ``rows``: the mean of their F^g rows over each row's own region."""
    same = regions[rows].unsqueeze(1) == regions.unsqueeze(0)
    return (scores * same).sum(dim=1) / counts[regions[rows]]


class _RepresentativeScores(torch.autograd.Function):
    """J of Eq. (5) with a backward that recomputes the pair scores block by block.

    Forward keeps nothing of size hw x hw: it reads J off the score matrix of the grouping pass
    when given one (else recomputes the blocks without autograd). Backward recomputes each
    block's scores with autograd and accumulates its gradients into preallocated buffers, so
    only one block's graph is alive at a time. This is :func:`torch.utils.checkpoint.checkpoint`
    per block, written out so that the forward need not recompute, and so that no per-block
    tensor outlives its block (on CPU, glibc's heap otherwise fragments and grows with every
    block). Without W^g (the ``official`` region score) J_i reads F_ij only for j in i's own
    region, so backward recomputes just those pairs (a few % of all pairs when the map splits
    into tens of regions).
    """

    @staticmethod
    def forward(ctx, geometry, score_matrix, boundary, prob, weight, bias):
        regions, blocks, height, width, form = geometry
        counts = torch.bincount(regions).to(boundary.dtype)
        out = boundary.new_empty(regions.numel())
        for rows in blocks:
            scores = (score_matrix[rows] if score_matrix is not None else
                      _pair_scores(rows, boundary, prob, weight, bias, height, width, form))
            out[rows] = _region_mean(scores, rows, regions, counts)
        ctx.geometry = geometry
        ctx.save_for_backward(boundary, prob, weight, bias)
        return out

    @staticmethod
    def backward(ctx, grad):
        regions, blocks, height, width, form = ctx.geometry
        inputs = [None if t is None else t.detach().requires_grad_()
                  for t in ctx.saved_tensors]
        wanted = [i for i, needs in enumerate(ctx.needs_input_grad[2:]) if needs]
        totals = [None if t is None else torch.zeros_like(t) for t in inputs]
        counts = torch.bincount(regions).to(inputs[0].dtype)
        for rows in blocks:
            with torch.enable_grad():
                if inputs[2] is None:  # no W^g: only the pairs inside each row's region
                    same = regions[rows].unsqueeze(1) == regions.unsqueeze(0)
                    index, cols = same.nonzero(as_tuple=True)
                    starts = rows[index]
                    scores = _pair_scores(starts, *inputs, height, width, form, cols)
                    block, block_grad = scores, grad[starts] / counts[regions[starts]]
                else:
                    scores = _pair_scores(rows, *inputs, height, width, form)
                    block = _region_mean(scores, rows, regions, counts)
                    block_grad = grad[rows]
                parts = torch.autograd.grad(block, [inputs[i] for i in wanted], block_grad,
                                            allow_unused=True)  # a one-cue F leaves B or C out
            for i, part in zip(wanted, parts):
                if part is not None:
                    totals[i] += part
        return (None, None, *[totals[i] if i in wanted else None for i in range(4)])


class _OfficialRegionScores(torch.autograd.Function):
    """Regions and J of the ``official`` RCB on the CPU without any hw x hw table
    (:mod:`gsbench.models.ranet_native`): the first link of every pixel is searched pair by
    pair (a pair whose E already rules the link out skips its boundary walk), and J sums F over
    each pixel's own region. Same results as the dense path (the score matrix, then
    :func:`first_link_regions` and :class:`_RepresentativeScores`); backward walks the pairs
    inside each region once more and passes the gradient of J to B and C."""

    @staticmethod
    def forward(ctx, boundary, prob, geometry):
        library, height, width, cue, threshold = geometry
        tables = ranet_native.OfficialTables(boundary, prob, OFFICIAL_CLIP)
        parent = ranet_native.official_parents(library, tables, height, width, cue, threshold)
        regions = resolve_links(parent)
        counts = torch.bincount(regions).to(torch.float32)
        sums = ranet_native.official_region_sums(library, tables, height, width, cue, regions)
        ctx.state = (tables, geometry, regions, counts)
        ctx.mark_non_differentiable(regions)
        return (sums / counts[regions]).to(boundary.dtype), regions

    @staticmethod
    def backward(ctx, grad, _):
        tables, (library, height, width, cue, _), regions, counts = ctx.state
        grad_b, grad_p = ranet_native.official_region_backward(
            library, tables, height, width, cue, regions, grad / counts[regions])
        return grad_b.to(grad.dtype), grad_p.to(grad.dtype), None


# --- RIB ------------------------------------------------------------------------------------------

def select_representatives(scores: Tensor, regions: Tensor, num_regions: int,
                           k: int) -> Tensor:
    """Q x K pixel indices of each region's K highest representative scores (Sec. 3.2).

    Slots beyond a region's size hold -1. Ties go to the lower pixel index (stable sorts).
    """
    num = scores.numel()
    by_score = torch.sort(scores, descending=True, stable=True).indices
    order = by_score[torch.sort(regions[by_score], stable=True).indices]
    counts = torch.bincount(regions, minlength=num_regions)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(num, device=scores.device) - starts[regions[order]]
    keep = rank < k
    reps = torch.full((num_regions, k), -1, dtype=torch.long, device=scores.device)
    reps[regions[order][keep], rank[keep]] = order[keep]
    return reps


def _segment_softmax(logits: Tensor, segments: Tensor, num_segments: int, dim: int) -> Tensor:
    """Softmax of ``logits`` along ``dim`` separately within each segment id of ``segments``.

    ``-inf`` entries get weight 0; a segment with no finite entry gives all-0 weights.
    """
    shape = list(logits.shape)
    shape[dim] = num_segments
    index_shape = [1] * logits.dim()
    index_shape[dim] = -1
    index = segments.view(index_shape).expand_as(logits)
    peak = torch.full(shape, -math.inf, dtype=logits.dtype, device=logits.device)
    peak = peak.scatter_reduce(dim, index, logits.detach(), reduce="amax", include_self=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    exp = torch.exp(logits - peak.gather(dim, index))
    total = logits.new_zeros(shape).scatter_add(dim, index, exp).gather(dim, index)
    return torch.where(total > 0, exp / total.clamp(min=torch.finfo(logits.dtype).tiny), 0.0)


def _in_pixel_blocks(fn, block_rows: int, regions: Tensor, per_pixel: Tensor,
                     shared: Tensor) -> Tensor:
    """``fn(regions, per_pixel, shared)`` on blocks of pixels, concatenated.

    ``fn`` gathers ``shared[regions]`` (pixels x K x M); under autograd each block runs under
    :func:`torch.utils.checkpoint.checkpoint`, so that backward recomputes the gather instead
    of keeping hw x K x M values (154 MB at 97 x 97, K = 8, M = 512) per use.
    """
    parts = []
    for start in range(0, regions.numel(), block_rows):
        args = (regions[start:start + block_rows], per_pixel[start:start + block_rows], shared)
        if torch.is_grad_enabled():
            parts.append(checkpoint(fn, *args, use_reentrant=False))
        else:
            parts.append(fn(*args))
    return torch.cat(parts)


def _slot_dot(regions: Tensor, pixels: Tensor, slots: Tensor) -> Tensor:
    """``out[i, k] = <slots[regions[i], k], pixels[i]>``: pixel i against its region's slots."""
    return torch.einsum("ikm,im->ik", slots[regions], pixels)


def _slot_mix(regions: Tensor, weights: Tensor, slots: Tensor) -> Tensor:
    """``out[i] = sum_k weights[i, k] slots[regions[i], k]``."""
    return torch.einsum("ik,ikm->im", weights, slots[regions])


def _in_pixel_order(layer, values: Tensor, pixels: Tensor) -> Tensor:
    """``layer`` (a :meth:`RIBLayers.along_representatives` map of an R x M list) applied to
    ``values`` sorted by their pixel index, as the official code orders its representatives;
    returned in the original order."""
    order = torch.argsort(pixels)
    out = torch.empty_like(values)
    out[order] = layer(values[order])
    return out


def region_interaction(features: Tensor, scores: Tensor, regions: Tensor, reps: Tensor,
                       intra: bool = True, inter: bool = True,
                       max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                       query: Tensor | None = None, collect=None, interact=None) -> Tensor:
    """RIB (Eq. 6-8, the ``paper`` attention) on one image: hw x M features A, scores J (hw,),
    region ids, Q x K reps.

    Returns the contextual features O (hw x M). Per-pixel work against the region's K slots
    runs in pixel blocks of at most ``max_chunk_elements`` gathered values (see
    :func:`_in_pixel_blocks`); the inter-region step is dense over the R <= Q K
    representatives (R x R weights). With the ``official`` learned layers, ``features`` is the
    value map, ``query`` the query map that Eq. (8) distributes to (default: ``features``),
    and ``collect`` / ``interact`` transform the representatives after Eq. (6) and Eq. (7).
    """
    query = features if query is None else query
    num, channels = features.shape
    num_regions, k = reps.shape
    block_rows = max(1, max_chunk_elements // (k * channels))
    valid_slot = reps >= 0
    safe_reps = reps.clamp(min=0)
    is_rep = torch.zeros(num, dtype=torch.bool, device=features.device)
    is_rep[reps[valid_slot]] = True
    weighted = scores.unsqueeze(1) * features  # J_i A_i
    rep_features = features[safe_reps]  # Q x K x M, A(p_qk)
    rep_scores = scores[safe_reps]  # Q x K, J(p_qk)

    # Eq. (6): intra-region collection over the region's non-representative pixels.
    local = rep_scores.unsqueeze(-1) * rep_features
    if intra:
        logits = _in_pixel_blocks(_slot_dot, block_rows, regions, weighted, rep_features)
        allowed = valid_slot[regions] & ~is_rep.unsqueeze(1)
        logits = logits.masked_fill(~allowed, -math.inf)
        attn = _segment_softmax(logits, regions, num_regions, dim=0)  # over pixels, per (q, k)
        # One slot at a time: hw x M temporaries instead of hw x K x M.
        zeros = features.new_zeros(num_regions, channels)
        collected = torch.stack([zeros.index_add(0, regions, attn[:, slot, None] * weighted)
                                 for slot in range(k)], dim=1)
        local = local + collected

    # Eq. (7): inter-region interaction between the representatives of different regions.
    rep_region = torch.arange(num_regions, device=features.device).unsqueeze(1).expand(-1, k)
    flat_local = local[valid_slot]  # R x M
    rep_pixels = reps[valid_slot]
    if collect is not None:
        flat_local = _in_pixel_order(collect, flat_local, rep_pixels)
    flat_region = rep_region[valid_slot]
    flat_scores = rep_scores[valid_slot]
    glob = flat_scores.unsqueeze(1) * flat_local
    if inter:
        messages = flat_scores.unsqueeze(1) * flat_local  # J(p_si) A^l_si
        logits = flat_local @ messages.T
        logits = logits.masked_fill(flat_region.unsqueeze(1) == flat_region.unsqueeze(0),
                                    -math.inf)
        attn = _segment_softmax(logits, flat_region, num_regions, dim=1)
        glob = glob + attn @ messages
    if interact is not None:
        glob = _in_pixel_order(interact, glob, rep_pixels)

    weighted = scores.unsqueeze(1) * query  # J_i A_i of Eq. (8)
    if not intra:
        out = weighted.clone()
        out[rep_pixels] = out[rep_pixels] + glob
        return out

    # Eq. (8): intra-region distribution of J(p) A^g to every pixel of the region.
    global_slots = torch.zeros(num_regions, k, channels, dtype=features.dtype,
                               device=features.device)
    global_slots = global_slots.masked_scatter(valid_slot.unsqueeze(-1),
                                               flat_scores.unsqueeze(1) * glob)
    logits = _in_pixel_blocks(_slot_dot, block_rows, regions, query, global_slots)
    logits = logits.masked_fill(~valid_slot[regions], -math.inf)
    attn = torch.softmax(logits, dim=1)
    return weighted + _in_pixel_blocks(_slot_mix, block_rows, regions, attn, global_slots)


def official_representatives(reps: Tensor) -> Tensor:
    """The representative set S of the ``official`` RIB: every region's representatives as
    one list of pixel indices in ascending order (``vcount.topk(k).indices.unique()`` in
    RANet ``networks/ranet.py``). The released topk also returns K - |R_q| pixels with score 0
    from outside a region smaller than K (which ones is up to the CUDA topk); gsbench keeps
    only the region's own pixels."""
    return torch.unique(reps[reps >= 0])


def official_interaction(value: Tensor, query: Tensor, scores: Tensor, rep_pixels: Tensor,
                         intra: bool = True, inter: bool = True, collect=None,
                         interact=None) -> Tensor:
    """RIB as the released code computes it (RANet ``networks/ranet.py``, ``RIB.forward``) on
    one image: value and query maps hw x M, scores J (hw,), S = ``rep_pixels`` ascending.

    Collection, interaction and distribution are global softmaxes without a scale; J weights
    the keys, not the aggregated values, and the residuals are unweighted. With V_S, Q the
    rows of the maps:

    - collection: C = V_S + softmax_n(V_S (J_n V_n)^T) V, over every pixel n;
    - interaction: I = C + softmax_t(C (J_t C_t)^T) C, over every representative t (its own
      region's and itself included);
    - distribution: O = Q + softmax_s(Q (J_s I_s)^T) I, every pixel over every representative.

    ``collect`` / ``interact`` (the official 3x3 convolutions run along the list S) follow
    the first two steps. The ablations, which the official code does not have, follow Sec.
    5.1: ``intra=False`` drops the collection and the distribution (only the representatives
    receive I: O = Q + [n in S] I); ``inter=False`` drops the interaction's sum (I = C).
    Returns O (hw x M); the ``distribute`` convolution is applied on the 2-D map by the caller.
    """
    rep_values = value[rep_pixels]
    rep_scores = scores[rep_pixels].unsqueeze(1)
    collected = rep_values
    if intra:
        weights = torch.softmax(rep_values @ (scores.unsqueeze(1) * value).T, dim=1)
        collected = rep_values + weights @ value
    if collect is not None:
        collected = collect(collected)
    interacted = collected
    if inter:
        weights = torch.softmax(collected @ (rep_scores * collected).T, dim=1)
        interacted = collected + weights @ collected
    if interact is not None:
        interacted = interact(interacted)
    if not intra:
        out = query.clone()
        out[rep_pixels] = out[rep_pixels] + interacted
        return out
    weights = torch.softmax(query @ (rep_scores * interacted).T, dim=1)
    return query + weights @ interacted



# --- the module -----------------------------------------------------------------------------------

def conv_bn_leaky(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Convolution (no bias) + BatchNorm + leaky ReLU 0.01: the released code's
    ``conv + InPlaceABNSync`` (whose default activation is a leaky ReLU of slope 0.01)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.01, inplace=True),
    )


class ScoreHeads(nn.Module):
    """B and C from A (the ``paper`` score source, Sec. 3.1: "A is passed to two separate
    convolutional layers"): 1x1 convolutions to one boundary logit (B = sigmoid) and to the
    class logits."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.boundary_head = nn.Conv2d(in_channels, 1, 1)
        self.class_head = nn.Conv2d(in_channels, num_classes, 1)
        nn.init.normal_(self.boundary_head.weight, std=0.01)
        # Start with B ~ 0.02 everywhere (no boundaries yet): a few large regions instead of
        # hw singletons, whose Eq. (7) sum would be huge.
        nn.init.constant_(self.boundary_head.bias, -4.0)
        nn.init.normal_(self.class_head.weight, std=0.01)
        nn.init.zeros_(self.class_head.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.boundary_head(x), self.class_head(x)

    @staticmethod
    def boundary_probability(logits: Tensor) -> Tensor:
        """B (N x h x w) from the N x 1 x h x w boundary logits."""
        return torch.sigmoid(logits[:, 0])


class StageThreeScores(nn.Module):
    """B and C from the stage-3 branch (the ``official`` score source, RANet
    ``networks/ranet.py``: ``dsn``, ``dsn_semantic_logit``, ``dsn_boundary_logit``): a 3x3
    conv 1024 -> 512 with bias, BatchNorm without activation and dropout 0.1 on c4, then 1x1
    convolutions to the class logits and to two boundary logits (B = softmax(.)[1])."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1),
                                    nn.BatchNorm2d(channels), nn.Dropout2d(dropout))
        self.boundary_head = nn.Conv2d(channels, 2, 1)
        self.class_head = nn.Conv2d(channels, num_classes, 1)

    def forward(self, c4: Tensor) -> tuple[Tensor, Tensor]:
        x = self.branch(c4)
        return self.boundary_head(x), self.class_head(x)

    @staticmethod
    def boundary_probability(logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=1)[:, 1]


class RIBLayers(nn.Module):
    """The learned layers of the released RIB (``rib_layers="official"``, RANet
    ``networks/ranet.py``, class ``RIB``): query, value, collect, interact and distribute, each
    a 3x3 conv 512 -> 512 + BN + leaky ReLU (5 x 2.36 M parameters). ``collect`` and
    ``interact`` run along the list of representatives (an M x |S| x 1 image, so only the
    middle column of the kernel meets data: neighbours in ascending pixel order are mixed,
    BatchNorm over the |S| positions); ``distribute`` on the h x w map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        for name in ("query", "value", "collect", "interact", "distribute"):
            self.add_module(name, conv_bn_leaky(channels, channels))

    @staticmethod
    def along_representatives(layer: nn.Module, values: Tensor) -> Tensor:
        """``layer`` on an R x M list viewed as a 1 x M x R x 1 image; returns R x M."""
        rows, channels = values.shape
        image = values.T.reshape(1, channels, rows, 1)
        return layer(image).reshape(channels, rows).T


class RegionAttention(nn.Module):
    """RCB + RIB on a feature map A (N x M x h x w); returns (O, boundary logits, class logits).

    ``num_classes``: channels of the semantic score maps C; ``num_representatives``: K
    (Table 2); ``cue``: "both", "boundary" or "semantic" (Table 1); ``intra`` / ``inter``: RIB
    ablations; ``region_threshold``: t of the grouping test; ``grouping``: "first_link" or
    "components" (see the module docstring); ``max_chunk_elements``: bound on
    one block of the pairwise computation (memory, not results). The paper / official forms
    (``segment_samples``, ``semantic_distance``, ``region_score``, ``score_source``,
    ``rib_layers``, ``rib_attention``) are those of :func:`ranet`; ``score_channels`` are the
    channels of the stage-3 map c4 that the ``official`` score source reads.
    """

    def __init__(self, in_channels: int = 512, num_classes: int = 19,
                 num_representatives: int = 8, cue: str = "both", intra: bool = True,
                 inter: bool = True, region_threshold: float = 0.5,
                 grouping: str = "first_link",
                 max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                 segment_samples: str = "paper", semantic_distance: str = "paper",
                 region_score: str = "paper", score_source: str = "paper",
                 rib_layers: str = "paper", rib_attention: str = "paper",
                 score_channels: int = 1024) -> None:
        super().__init__()
        if grouping not in GROUPINGS:
            raise GsbenchError(f"region grouping must be one of {', '.join(GROUPINGS)}, "
                               f"got {grouping!r}")
        if cue not in REGION_CUES:
            raise GsbenchError(f"region cue must be one of {', '.join(REGION_CUES)}, got {cue!r}")
        forms = dict(segment_samples=segment_samples, semantic_distance=semantic_distance,
                     region_score=region_score, score_source=score_source,
                     rib_layers=rib_layers, rib_attention=rib_attention)
        for option, value in forms.items():
            if value not in FORMS:
                raise GsbenchError(f"{option} must be one of {', '.join(FORMS)}, got {value!r}")
        if num_representatives < 1:
            raise GsbenchError(f"num_representatives must be >= 1, got {num_representatives}")
        if not 0.0 < region_threshold < 1.0:
            raise GsbenchError(f"region_threshold must be in (0, 1), got {region_threshold}")
        if max_chunk_elements < 1:
            raise GsbenchError(f"max_chunk_elements must be >= 1, got {max_chunk_elements}")
        self.num_representatives = num_representatives
        self.intra = intra
        self.inter = inter
        self.region_threshold = region_threshold
        self.grouping = grouping
        self.max_chunk_elements = max_chunk_elements
        self.forms = forms
        self.form = RCBForm(cue, segment_samples, semantic_distance)
        self.score_heads = (ScoreHeads(in_channels, num_classes) if score_source == "paper" else
                            StageThreeScores(score_channels, num_classes, in_channels))
        if region_score == "paper":
            self.score_weight = nn.Parameter(torch.zeros(1, 1, 3, 3))
            self.score_bias = nn.Parameter(torch.zeros(1))
        else:  # the released W^g (a 1x1 conv) is defined but never called
            self.score_weight = self.score_bias = None
        self.layers = RIBLayers(in_channels) if rib_layers == "official" else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.score_weight is not None:
            with torch.no_grad():
                self.score_weight.zero_()
                self.score_weight[0, 0, 1, 1] = 10.0
                self.score_bias.fill_(-5.0)
        if self.layers is not None:
            init_kaiming(self.layers)

    @property
    def cue(self) -> str:
        return self.form.cue

    def extra_repr(self) -> str:
        forms = ", ".join(f"{key}={value!r}" for key, value in self.forms.items())
        return (f"num_representatives={self.num_representatives}, cue={self.cue!r}, "
                f"intra={self.intra}, inter={self.inter}, "
                f"region_threshold={self.region_threshold}, grouping={self.grouping!r}, {forms}")

    def pair_scores(self, boundary: Tensor, prob: Tensor, rows: Tensor, height: int,
                    width: int) -> Tensor:
        """The scores that RCB groups (F^g rows of Eq. 1-4, or F rows without W^g) of one
        image: boundary (hw,), prob (hw x N)."""
        return _pair_scores(rows, boundary, prob, self.score_weight, self.score_bias, height,
                            width, self.form)

    def _blocks(self, height: int, width: int, device: torch.device,
                num_classes: int = 1) -> list[Tensor]:
        """Row blocks of the pairwise computation: rows x hw x (the per-pair temporaries) within
        ``max_chunk_elements``; the per-pair temporaries are the samples of the PyTorch walk
        (max(h, w)), else the classes of the paper's E, else a handful."""
        native = device.type == "cpu" and ranet_native.kernels() is not None
        per_pair = (max(height, width) if not native else
                    num_classes if self.form.semantic_distance == "paper" else 8)
        rows = _row_blocks(height * width, per_pair, self.max_chunk_elements)
        return [block.to(device) for block in rows]

    @torch.no_grad()
    def _score_matrix(self, boundary: Tensor, prob: Tensor, height: int, width: int) -> Tensor:
        """The pair scores of every pair of one image (hw x hw), filled block by block."""
        num = height * width
        scores = boundary.new_empty(num, num)
        for rows in self._blocks(height, width, boundary.device, prob.shape[1]):
            scores[rows] = self.pair_scores(boundary, prob, rows, height, width)
        return scores

    @torch.no_grad()
    def _group(self, scores: Tensor, height: int, width: int) -> Tensor:
        """Region ids from the score matrix: G of Eq. (4) and the ``grouping`` rule."""
        def adjacent(rows: Tensor) -> Tensor:
            return (scores[rows] + scores[:, rows].T) > 2 * self.region_threshold

        return GROUPINGS[self.grouping](adjacent, height * width, scores.device,
                                        self._blocks(height, width, scores.device))

    def regions(self, boundary: Tensor, prob: Tensor, height: int, width: int) -> Tensor:
        """Region id of every pixel of one image (Eq. 4 and the ``grouping`` rule)."""
        library = self._official_kernels(boundary)
        if library is not None:
            tables = ranet_native.OfficialTables(boundary, prob, OFFICIAL_CLIP)
            return resolve_links(ranet_native.official_parents(
                library, tables, height, width, self.cue, self.region_threshold))
        return self._group(self._score_matrix(boundary, prob, height, width), height, width)

    def representative_scores(self, boundary: Tensor, prob: Tensor, regions: Tensor,
                              height: int, width: int,
                              score_matrix: Tensor | None = None) -> Tensor:
        """J of Eq. (5) of one image, differentiable in B, C and W^g.

        ``score_matrix``: the pair scores of every pair when the grouping pass already
        computed them (the forward then reads them instead of recomputing); backward always
        recomputes block by block (see :class:`_RepresentativeScores`).
        """
        geometry = (regions, self._blocks(height, width, boundary.device, prob.shape[1]),
                    height, width, self.form)
        return _RepresentativeScores.apply(geometry, score_matrix, boundary, prob,
                                           self.score_weight, self.score_bias)

    def _official_kernels(self, boundary: Tensor):
        """The compiled kernels when the released RCB (both D and E and the region score
        official, first-link grouping) runs on a float32 CPU map, else None (dense path)."""
        official = (self.forms["segment_samples"] == self.forms["semantic_distance"] ==
                    self.forms["region_score"] == "official" and self.grouping == "first_link")
        if not official or boundary.device.type != "cpu" or boundary.dtype != torch.float32:
            return None
        return ranet_native.kernels()

    def score_maps(self, score_input: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Boundary and class logits at the size of A."""
        boundary_logits, class_logits = self.score_heads(score_input)
        if tuple(boundary_logits.shape[-2:]) != tuple(size):
            boundary_logits = F.interpolate(boundary_logits, size=size, mode="bilinear",
                                            align_corners=False)
            class_logits = F.interpolate(class_logits, size=size, mode="bilinear",
                                         align_corners=False)
        return boundary_logits, class_logits

    def forward(self, features: Tensor,
                score_input: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``features``: A; ``score_input``: what the score heads read (A by default, c4 for
        the ``official`` score source)."""
        n, channels, height, width = features.shape
        boundary_logits, class_logits = self.score_maps(
            features if score_input is None else score_input, (height, width))
        value = query = features
        if self.layers is not None:
            value, query = self.layers.value(features), self.layers.query(features)
        # RCB and RIB run in at least float32 with autocast off: the threshold on the scores,
        # the logs of Eq. (2) and the unscaled dot products of Eq. (6)-(8) need the precision.
        dtype = torch.promote_types(features.dtype, torch.float32)
        with torch.autocast(features.device.type, enabled=False):
            boundary = self.score_heads.boundary_probability(
                boundary_logits.to(dtype)).reshape(n, -1)
            prob = torch.softmax(class_logits.to(dtype), dim=1).flatten(2).transpose(1, 2)
            value = value.to(dtype).reshape(n, channels, -1).transpose(1, 2)
            query = query.to(dtype).reshape(n, channels, -1).transpose(1, 2)
            outputs = [self._interact(boundary[b], prob[b], value[b], query[b], height, width)
                       for b in range(n)]
        context = torch.stack(outputs).transpose(1, 2).reshape(n, channels, height, width)
        context = context.to(features.dtype)
        if self.layers is not None:
            context = self.layers.distribute(context)
        return context, boundary_logits, class_logits

    def _interact(self, boundary: Tensor, prob: Tensor, value: Tensor, query: Tensor,
                  height: int, width: int) -> Tensor:
        """RCB then RIB on one image; returns O (hw x M)."""
        library = self._official_kernels(boundary)
        if library is not None:
            scores, regions = _OfficialRegionScores.apply(
                boundary, prob, (library, height, width, self.cue, self.region_threshold))
        else:
            score_matrix = self._score_matrix(boundary, prob, height, width)
            regions = self._group(score_matrix, height, width)
            scores = self.representative_scores(boundary, prob, regions, height, width,
                                                score_matrix)
            del score_matrix
        with torch.no_grad():
            reps = select_representatives(scores.detach(), regions, int(regions.max()) + 1,
                                          self.num_representatives)
        collect = interact = None
        if self.layers is not None:
            along = RIBLayers.along_representatives
            collect = functools.partial(along, self.layers.collect)
            interact = functools.partial(along, self.layers.interact)
        if self.forms["rib_attention"] == "official":
            return official_interaction(value, query, scores, official_representatives(reps),
                                        self.intra, self.inter, collect, interact)
        return region_interaction(value, scores, regions, reps, self.intra, self.inter,
                                  self.max_chunk_elements, query, collect, interact)


class RANetHead(nn.Module):
    """3x3 conv c5 -> 512 (A), the context module, concat(A, context) -> 3x3 conv -> classifier.

    ``context``: "region" (RCB + RIB), or the Table 1 pixel-wise baselines "spp" (the PSPNet
    pyramid pooling on A) and "nonlocal" (an embedded-Gaussian non-local block on A), which have
    no boundary / class score heads.

    ``aspp_rates``: when given, A is DeepLabV3's ASPP on c5 with these atrous rates and
    ``channels`` outputs instead of the 3x3 conv: the "+ASPP" of RANet Table 5's
    "HRNetV2-W48+ASPP" baseline, on which RCB and RIB then run.

    With ``rib_layers="official"`` the two 3x3 convs are the released ``feats_conv`` and
    ``final_conv`` (BN + leaky ReLU 0.01, like the RIB layers); with the ``official`` score
    source a 1x1 conv on the fused features gives two boundary logits (``"final_boundary"``,
    the released ``head_boundary_logit``), supervised by the loss.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1,
                 context: str = "region", channels: int = 512,
                 aspp_rates: tuple[int, ...] | None = None, **region_options) -> None:
        super().__init__()
        if context not in RANET_CONTEXTS:
            raise GsbenchError(f"RANet context must be one of {', '.join(RANET_CONTEXTS)}, "
                               f"got {context!r}")
        self.context_type = context
        official_layers = region_options.get("rib_layers") == "official"
        conv = conv_bn_leaky if official_layers else functools.partial(ConvBNReLU,
                                                                       kernel_size=3)
        self.reduce = (conv(in_channels, channels) if aspp_rates is None else
                       ASPP(in_channels, tuple(aspp_rates), channels))
        self.final_boundary = None
        if context == "region":
            self.context = RegionAttention(channels, num_classes, **region_options)
            fused = 2 * channels
            if region_options.get("score_source") == "official":
                self.final_boundary = nn.Conv2d(channels, 2, 1)
        elif context == "spp":
            self.context = PyramidPooling(channels)
            fused = self.context.out_channels
        else:
            self.context = NonLocalBlock(channels)
            fused = 2 * channels
        self.bottleneck = conv(fused, channels)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self.reduce)
        init_kaiming(self.bottleneck)
        init_kaiming(self.cls)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        a = self.reduce(features[-1])
        if self.context_type == "region":
            score_input = features[2] if self.final_boundary is not None else None
            context, boundary, coarse = self.context(a, score_input)
            fused = self.cls[0](self.bottleneck(torch.cat([a, context], dim=1)))  # dropout
            head = {"out": self.cls[1](fused), "boundary": boundary, "coarse": coarse}
            if self.final_boundary is not None:
                head["final_boundary"] = self.final_boundary(fused)
            return head
        if self.context_type == "spp":
            return {"out": self.cls(self.bottleneck(self.context(a)))}
        return {"out": self.cls(self.bottleneck(torch.cat([a, self.context(a)], dim=1)))}


class RANetModel(SegmentationModel):
    """:class:`SegmentationModel` whose head also returns RCB's score maps.

    In training mode the outputs add ``"boundary"`` (the boundary logits of B: N x 1 x H x W
    with the ``paper`` score source, N x 2 x H x W with the ``official`` one) and ``"coarse"``
    (N x C x H x W logits of the semantic score maps C), and with the ``official`` score source
    ``"final_boundary"`` (N x 2 x H x W), all at the input resolution, for
    :class:`gsbench.losses.ranet.RANetLoss`. In eval mode ``model(images,
    outputs=("coarse",))`` adds the coarse logits too: RANet Table 4 scores their argmax as the
    "coarse segmentation" (``gsbench eval RUN --output coarse``).
    """

    @property
    def extra_outputs(self) -> tuple[str, ...]:
        """``("coarse",)`` when the head has RCB (context "region"), else ``()``."""
        return ("coarse",) if self.decode_head.context_type == "region" else ()

    def decode(self, features: list[Tensor], outputs: tuple[str, ...] = ()) -> dict[str, Tensor]:
        head = self.decode_head(features)
        logits = {"out": head["out"]}
        for key in ("boundary", "coarse", "final_boundary"):
            if key in head and (self.training or key in outputs):
                logits[key] = head[key]
        return logits


def apply_multi_grid(encoder: nn.Module, grid: tuple[int, ...]) -> None:
    """Multiply the dilation of stage 5's 3x3 convolutions by ``grid`` block by block (block i
    by ``grid[i % len(grid)]``), as the released RANet backbone (``layer4`` with
    ``multi_grid=(4, 8, 16)`` on dilation 4: dilations 16, 32, 64)."""
    grid = tuple(int(g) for g in grid)
    if not grid or min(grid) < 1:
        raise GsbenchError(f"multi_grid must be positive integers, got {list(grid)}")
    if all(g == 1 for g in grid):
        return
    stage = getattr(encoder, "layer4", None)
    convs = [getattr(block, "conv2", None) for block in (stage or [])]
    if not convs or any(not isinstance(c, nn.Conv2d) or c.kernel_size != (3, 3) for c in convs):
        raise GsbenchError("multi_grid needs a ResNet backbone with bottleneck blocks "
                           f"(stage 5 of {type(encoder).__name__} has none)")
    for index, conv in enumerate(convs):
        dilation = conv.dilation[0] * grid[index % len(grid)]
        conv.dilation = (dilation, dilation)
        conv.padding = (dilation, dilation)


@register_model
def ranet(
    num_classes: int,
    backbone: str = "resnet101",
    output_stride: int = 8,
    pretrained: str | None = None,
    aux: bool = True,
    dropout: float = 0.1,
    context: str = "region",
    cue: str = "both",
    num_representatives: int = 8,
    intra: bool = True,
    inter: bool = True,
    region_threshold: float = 0.5,
    grouping: str = "first_link",
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    aspp: bool = False,
    segment_samples: str = "paper",
    semantic_distance: str = "paper",
    region_score: str = "paper",
    score_source: str = "paper",
    rib_layers: str = "official",
    rib_attention: str = "paper",
    multi_grid: tuple[int, ...] = (1, 1, 1),
) -> nn.Module:
    """RANet: dilated ResNet (or HRNetV2) + RANet head (+ stage-3 aux FCN head, weight 0.4).

    Where the paper's text and the released code differ, each point is an option with the
    values "paper" and "official"; docs/fidelity.md ("RANet") lists every point with its
    evidence. Defaults follow the paper's text, except ``rib_layers`` (Table 3's +21 M
    parameters are the released layers). The recipes that fill RANet's tables use the released
    forms throughout (``recipes/ranet101.yaml``).

    ``segment_samples``: D of Eq. (1) with the segment's end points ("paper") or its interior
    samples only, as the released op ("official"). ``semantic_distance``: E of Eq. (2) as the
    JSD of C_i and C_j in bits ("paper") or the released binary JSD in nats on i's argmax class
    with clipping ("official"). ``region_score``: the grouping test on W^g (x) F with a sigmoid
    ("paper", Eq. 4) or on (F + F^T) / 2 without W^g ("official"; threshold 0.8 there).
    ``score_source``: B and C from A by 1x1 convs ("paper", Sec. 3.1) or from the released
    stage-3 branch with a two-class boundary head, plus a two-class boundary head on the final
    features ("official"). ``rib_layers``: RIB without learned layers ("paper", Eq. 6-8) or with
    the released query / value / collect / interact / distribute convs and BN + leaky ReLU
    0.01 on the 3x3 convs before and after ("official"). ``rib_attention``: Eq. 6-8 as written
    ("paper": softmaxes within a region, other regions only in Eq. 7, J-weighted residuals)
    or the released global softmaxes with unweighted residuals ("official").
    ``multi_grid``: stage-5 dilation multipliers per block ((1, 1, 1); released (4, 8, 16)).

    The paper trains only the main, coarse and boundary losses; the stage-3 aux head follows
    the project's convention and is switched off with ``aux=False``.
    ``context``: "region" (RANet), "spp" or "nonlocal" (Table 1 pixel-wise baselines).
    ``cue``: "both", "boundary" or "semantic" (Table 1 region cues). ``num_representatives``:
    K (Table 2, default 8). ``intra`` / ``inter``: RIB ablations of Sec. 5.1.
    ``region_threshold``: t of the grouping test of Eq. (4) (0.5; official code 0.8).
    ``grouping``: "first_link" (the official rule) or "components" (connected components of G).
    ``max_chunk_elements``: memory bound of the pairwise blocks (see the module docstring).
    ``aspp``: A = DeepLabV3's ASPP on c5 (512 outputs, rates ``aspp_rates(output_stride)``:
    12/24/36 at stride 8) instead of the 3x3 conv. RANet Table 5's stronger model is
    ``backbone="hrnetv2_w48", aspp=True`` ("HRNetV2-W48+ASPP"): c5 is then the 720-channel
    HRNetV2 representation at ``output_stride`` 8, where RCB's pairwise maps stay the size of
    the ResNet-101 setting (see :mod:`gsbench.models.backbones.hrnet`).
    """
    encoder = build_backbone(backbone, output_stride, pretrained)
    apply_multi_grid(encoder, multi_grid)
    region_options = {}
    if context == "region":
        region_options = dict(cue=cue, num_representatives=num_representatives, intra=intra,
                              inter=inter, region_threshold=region_threshold, grouping=grouping,
                              max_chunk_elements=max_chunk_elements,
                              segment_samples=segment_samples,
                              semantic_distance=semantic_distance, region_score=region_score,
                              score_source=score_source, rib_layers=rib_layers,
                              rib_attention=rib_attention, score_channels=encoder.channels[2])
    rates = aspp_rates(output_stride) if aspp else None
    head = RANetHead(encoder.channels[-1], num_classes, dropout, context, aspp_rates=rates,
                     **region_options)
    aux_head = AuxFCNHead(encoder.channels[2], num_classes, dropout) if aux else None
    return RANetModel(encoder, head, aux_head)
