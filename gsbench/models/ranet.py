"""RANet: Region Attention Network (Shen et al., NeurIPS 2020).

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
from gsbench.models.registry import register_model

RANET_CONTEXTS = ("region", "spp", "nonlocal")
REGION_CUES = ("both", "boundary", "semantic")
#: Default bound on rows x hw x samples of one block of the pairwise computation (2^23 elements;
#: the temporaries of one block are a few times that in float32 / int64).
DEFAULT_CHUNK_ELEMENTS = 1 << 23


# --- RCB: pairwise maps ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _segment_tables(height: int, width: int, device: torch.device,
                    dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Per offset (dy, dx) of an h x w map, the samples of Eq. (1)'s segment relative to i.

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


class _SegmentMax(torch.autograd.Function):
    """Eq. (1)'s maximum over the interpolated samples, keeping only the winning sample.

    Autograd through ``amax`` of the rows x hw x T samples would keep (and in backward build)
    several rows x hw x T tensors; the gradient of a maximum reaches only the sample that won,
    so saving that sample's two neighbours and weight (rows x hw each) is enough. On exact ties
    between different samples the first one takes the whole gradient (a valid subgradient;
    ``amax`` would split it). Samples t > L repeat the end point, so ties there go to one pixel
    either way.
    """

    @staticmethod
    def forward(ctx, boundary: Tensor, tables: tuple[Tensor, Tensor, Tensor], offset: Tensor,
                start: Tensor) -> Tensor:
        low_table, high_table, weight_table = tables
        # One rows x hw x T index tensor alive at a time; the interpolation runs in place.
        values = boundary[low_table[offset] + start]
        values.lerp_(boundary[high_table[offset] + start], weight_table[offset])
        best, arg = values.max(dim=-1)
        del values
        ctx.save_for_backward(low_table[offset, arg] + start[..., 0],
                              high_table[offset, arg] + start[..., 0],
                              weight_table[offset, arg])
        ctx.num = boundary.numel()
        return best

    @staticmethod
    def backward(ctx, grad: Tensor):
        low, high, weight = (t.flatten() for t in ctx.saved_tensors)
        grad = grad.flatten()
        out = grad.new_zeros(ctx.num)
        out.index_add_(0, low, grad * (1 - weight))
        out.index_add_(0, high, grad * weight)
        return out, None, None, None


def segment_max(boundary: Tensor, rows: Tensor, height: int, width: int) -> Tensor:
    """D of Eq. (1) for the pixels ``rows`` against every pixel: ``len(rows) x hw``.

    ``boundary`` is one image's B flattened (hw,); the samples of each pair come from
    :func:`_segment_tables` shifted to the start pixel i (they stay inside the map: the segment
    lies between two pixels of it).
    """
    low_table, high_table, weight_table = _segment_tables(height, width, boundary.device,
                                                          boundary.dtype)
    cols = torch.arange(height * width, device=boundary.device)
    dy = torch.div(cols, width, rounding_mode="floor").unsqueeze(0) - torch.div(
        rows, width, rounding_mode="floor").unsqueeze(1)
    dx = (cols % width).unsqueeze(0) - (rows % width).unsqueeze(1)
    offset = (dy + height - 1) * (2 * width - 1) + (dx + width - 1)
    return _SegmentMax.apply(boundary, (low_table, high_table, weight_table), offset,
                             rows.view(-1, 1, 1))


def entropy_bits(prob: Tensor) -> Tensor:
    """Shannon entropy in bits over the last axis (0 log 0 = 0)."""
    return -torch.special.xlogy(prob, prob).sum(-1) / math.log(2.0)


def jensen_shannon(prob: Tensor, rows: Tensor) -> Tensor:
    """E of Eq. (2) in bits for the pixels ``rows`` against every pixel: ``len(rows) x hw``.

    ``prob`` is one image's C as hw x N class probabilities. JSD = H(U) - (H(C_i) + H(C_j)) / 2
    with U = (C_i + C_j) / 2, clamped into [0, 1] against rounding.
    """
    mixture = 0.5 * (prob[rows].unsqueeze(1) + prob.unsqueeze(0))
    own = entropy_bits(prob)
    divergence = entropy_bits(mixture) - 0.5 * (own[rows].unsqueeze(1) + own.unsqueeze(0))
    return divergence.clamp(0.0, 1.0)


def region_attention(boundary: Tensor, prob: Tensor, rows: Tensor, height: int, width: int,
                     cue: str = "both") -> Tensor:
    """F of Eq. (3) for the pixels ``rows``: (1 - D)(1 - E), or one factor (Table 1 cues)."""
    if cue == "boundary":
        return 1 - segment_max(boundary, rows, height, width)
    if cue == "semantic":
        return 1 - jensen_shannon(prob, rows)
    return (1 - segment_max(boundary, rows, height, width)) * (1 - jensen_shannon(prob, rows))


def regularised_scores(attention: Tensor, weight: Tensor, bias: Tensor, height: int,
                       width: int) -> Tensor:
    """F^g of Eq. (4) for a block of rows: sigmoid(W^g (x) F_i) on each row's h x w map."""
    maps = attention.view(-1, 1, height, width)
    scores = F.conv2d(maps, weight, bias, padding=weight.shape[-1] // 2)
    return torch.sigmoid(scores).view(attention.shape)


def _row_blocks(num: int, height: int, width: int, max_elements: int) -> list[Tensor]:
    """Row index blocks with rows x hw x max(h, w) <= max_elements (at least one row each)."""
    rows = max(1, max_elements // max(1, num * max(height, width)))
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
    parent = torch.cat(parents)
    while True:  # parent[i] <= i, so the chains end at roots with parent[r] = r
        jumped = parent[parent]
        if torch.equal(jumped, parent):
            break
        parent = jumped
    return torch.unique(parent, return_inverse=True)[1]


#: Region assignment rules of :class:`RegionAttention` (``grouping``).
GROUPINGS = {"first_link": first_link_regions, "components": connected_regions}


def _pair_scores(rows: Tensor, boundary: Tensor, prob: Tensor, weight: Tensor, bias: Tensor,
                 height: int, width: int, cue: str) -> Tensor:
    """F^g rows (Eq. 1-4): W^g (x) F on each row's map, computed in F's dtype."""
    attention = region_attention(boundary, prob, rows, height, width, cue)
    return regularised_scores(attention, weight.to(attention.dtype), bias.to(attention.dtype),
                              height, width)


def _region_mean(scores: Tensor, rows: Tensor, regions: Tensor, counts: Tensor) -> Tensor:
    """J of Eq. (5) for ``rows``: the mean of their F^g rows over each row's own region."""
    same = regions[rows].unsqueeze(1) == regions.unsqueeze(0)
    return (scores * same).sum(dim=1) / counts[regions[rows]]


class _RepresentativeScores(torch.autograd.Function):
    """J of Eq. (5) with a backward that recomputes F^g block by block.

    Forward keeps nothing of size hw x hw: it reads J off the F^g matrix of the grouping pass
    when given one (else recomputes the blocks without autograd). Backward recomputes each
    block's F^g with autograd and accumulates its gradients into preallocated buffers, so only
    one block's graph is alive at a time. This is :func:`torch.utils.checkpoint.checkpoint` per
    block, written out so that the forward need not recompute, and so that no per-block tensor
    outlives its block (on CPU, glibc's heap otherwise fragments and grows with every block).
    """

    @staticmethod
    def forward(ctx, geometry, score_matrix, boundary, prob, weight, bias):
        regions, blocks, height, width, cue = geometry
        counts = torch.bincount(regions).to(boundary.dtype)
        out = boundary.new_empty(regions.numel())
        for rows in blocks:
            scores = (score_matrix[rows] if score_matrix is not None else
                      _pair_scores(rows, boundary, prob, weight, bias, height, width, cue))
            out[rows] = _region_mean(scores, rows, regions, counts)
        ctx.geometry = geometry
        ctx.save_for_backward(boundary, prob, weight, bias)
        return out

    @staticmethod
    def backward(ctx, grad):
        regions, blocks, height, width, cue = ctx.geometry
        inputs = [t.detach().requires_grad_() for t in ctx.saved_tensors]
        wanted = [i for i, needs in enumerate(ctx.needs_input_grad[2:]) if needs]
        totals = [torch.zeros_like(t) for t in inputs]
        counts = torch.bincount(regions).to(inputs[0].dtype)
        for rows in blocks:
            with torch.enable_grad():
                scores = _pair_scores(rows, *inputs, height, width, cue)
                block = _region_mean(scores, rows, regions, counts)
                parts = torch.autograd.grad(block, [inputs[i] for i in wanted], grad[rows],
                                            allow_unused=True)  # a one-cue F leaves B or C out
            for i, part in zip(wanted, parts):
                if part is not None:
                    totals[i] += part
        return (None, None, *[totals[i] if i in wanted else None for i in range(4)])


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


def region_interaction(features: Tensor, scores: Tensor, regions: Tensor, reps: Tensor,
                       intra: bool = True, inter: bool = True,
                       max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tensor:
    """RIB (Eq. 6-8) on one image: hw x M features A, scores J (hw,), region ids, Q x K reps.

    Returns the contextual features O (hw x M). Per-pixel work against the region's K slots
    runs in pixel blocks of at most ``max_chunk_elements`` gathered values (see
    :func:`_in_pixel_blocks`); the inter-region step is dense over the R <= Q K
    representatives (R x R weights).
    """
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

    if not intra:
        out = weighted.clone()
        out[reps[valid_slot]] = out[reps[valid_slot]] + glob
        return out

    # Eq. (8): intra-region distribution of J(p) A^g to every pixel of the region.
    global_slots = torch.zeros(num_regions, k, channels, dtype=features.dtype,
                               device=features.device)
    global_slots = global_slots.masked_scatter(valid_slot.unsqueeze(-1),
                                               flat_scores.unsqueeze(1) * glob)
    logits = _in_pixel_blocks(_slot_dot, block_rows, regions, features, global_slots)
    logits = logits.masked_fill(~valid_slot[regions], -math.inf)
    attn = torch.softmax(logits, dim=1)
    return weighted + _in_pixel_blocks(_slot_mix, block_rows, regions, attn, global_slots)


# --- the module -----------------------------------------------------------------------------------

class RegionAttention(nn.Module):
    """RCB + RIB on a feature map A (N x M x h x w); returns (O, boundary logits, class logits).

    ``num_classes``: channels of the semantic score maps C; ``num_representatives``: K
    (Table 2); ``cue``: "both", "boundary" or "semantic" (Table 1); ``intra`` / ``inter``: RIB
    ablations; ``region_threshold``: t of the grouping test; ``grouping``: "first_link" or
    "components" (see the module docstring); ``max_chunk_elements``: bound on
    one block of the pairwise computation (memory, not results).
    """

    def __init__(self, in_channels: int = 512, num_classes: int = 19,
                 num_representatives: int = 8, cue: str = "both", intra: bool = True,
                 inter: bool = True, region_threshold: float = 0.5,
                 grouping: str = "first_link",
                 max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        super().__init__()
        if grouping not in GROUPINGS:
            raise GsbenchError(f"region grouping must be one of {', '.join(GROUPINGS)}, "
                               f"got {grouping!r}")
        if cue not in REGION_CUES:
            raise GsbenchError(f"region cue must be one of {', '.join(REGION_CUES)}, got {cue!r}")
        if num_representatives < 1:
            raise GsbenchError(f"num_representatives must be >= 1, got {num_representatives}")
        if not 0.0 < region_threshold < 1.0:
            raise GsbenchError(f"region_threshold must be in (0, 1), got {region_threshold}")
        if max_chunk_elements < 1:
            raise GsbenchError(f"max_chunk_elements must be >= 1, got {max_chunk_elements}")
        self.num_representatives = num_representatives
        self.cue = cue
        self.intra = intra
        self.inter = inter
        self.region_threshold = region_threshold
        self.grouping = grouping
        self.max_chunk_elements = max_chunk_elements
        self.boundary_head = nn.Conv2d(in_channels, 1, 1)
        self.class_head = nn.Conv2d(in_channels, num_classes, 1)
        self.score_weight = nn.Parameter(torch.zeros(1, 1, 3, 3))
        self.score_bias = nn.Parameter(torch.zeros(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.boundary_head.weight, std=0.01)
        # Start with B ~ 0.02 everywhere (no boundaries yet): a few large regions instead of
        # hw singletons, whose Eq. (7) sum would be huge.
        nn.init.constant_(self.boundary_head.bias, -4.0)
        nn.init.normal_(self.class_head.weight, std=0.01)
        nn.init.zeros_(self.class_head.bias)
        with torch.no_grad():
            self.score_weight.zero_()
            self.score_weight[0, 0, 1, 1] = 10.0
            self.score_bias.fill_(-5.0)

    def extra_repr(self) -> str:
        return (f"num_representatives={self.num_representatives}, cue={self.cue!r}, "
                f"intra={self.intra}, inter={self.inter}, "
                f"region_threshold={self.region_threshold}, grouping={self.grouping!r}")

    def pair_scores(self, boundary: Tensor, prob: Tensor, rows: Tensor, height: int,
                    width: int) -> Tensor:
        """F^g rows (Eq. 1-4) of one image: boundary (hw,), prob (hw x N)."""
        return _pair_scores(rows, boundary, prob, self.score_weight, self.score_bias, height,
                            width, self.cue)

    def _blocks(self, height: int, width: int, device: torch.device) -> list[Tensor]:
        rows = _row_blocks(height * width, height, width, self.max_chunk_elements)
        return [block.to(device) for block in rows]

    @torch.no_grad()
    def _score_matrix(self, boundary: Tensor, prob: Tensor, height: int, width: int) -> Tensor:
        """F^g of every pair of one image (hw x hw), filled in place block by block."""
        num = height * width
        scores = boundary.new_empty(num, num)
        for rows in self._blocks(height, width, boundary.device):
            scores[rows] = self.pair_scores(boundary, prob, rows, height, width)
        return scores

    @torch.no_grad()
    def _group(self, scores: Tensor, height: int, width: int) -> Tensor:
        """Region ids from the F^g matrix: G of Eq. (4) and the ``grouping`` rule."""
        def adjacent(rows: Tensor) -> Tensor:
            return (scores[rows] + scores[:, rows].T) > 2 * self.region_threshold

        return GROUPINGS[self.grouping](adjacent, height * width, scores.device,
                                        self._blocks(height, width, scores.device))

    def regions(self, boundary: Tensor, prob: Tensor, height: int, width: int) -> Tensor:
        """Region id of every pixel of one image (Eq. 4 and the ``grouping`` rule)."""
        return self._group(self._score_matrix(boundary, prob, height, width), height, width)

    def representative_scores(self, boundary: Tensor, prob: Tensor, regions: Tensor,
                              height: int, width: int,
                              score_matrix: Tensor | None = None) -> Tensor:
        """J of Eq. (5) of one image, differentiable in B, C and W^g.

        ``score_matrix``: F^g of every pair when the grouping pass already computed it (the
        forward then reads it instead of recomputing); backward always recomputes block by
        block (see :class:`_RepresentativeScores`).
        """
        geometry = (regions, self._blocks(height, width, boundary.device), height, width,
                    self.cue)
        return _RepresentativeScores.apply(geometry, score_matrix, boundary, prob,
                                           self.score_weight, self.score_bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n, channels, height, width = features.shape
        boundary_logits = self.boundary_head(features)
        class_logits = self.class_head(features)
        # RCB and RIB run in at least float32 with autocast off: the 0.5 threshold on F^g, the
        # logs of Eq. (2) and the unscaled dot products of Eq. (6)-(8) need the precision.
        dtype = torch.promote_types(features.dtype, torch.float32)
        with torch.autocast(features.device.type, enabled=False):
            boundary = torch.sigmoid(boundary_logits.to(dtype)).reshape(n, -1)
            prob = torch.softmax(class_logits.to(dtype), dim=1).flatten(2).transpose(1, 2)
            flat = features.to(dtype).reshape(n, channels, -1).transpose(1, 2)
            outputs = []
            for b in range(n):
                score_matrix = self._score_matrix(boundary[b], prob[b], height, width)
                regions = self._group(score_matrix, height, width)
                scores = self.representative_scores(boundary[b], prob[b], regions, height, width,
                                                     score_matrix)
                del score_matrix
                with torch.no_grad():
                    reps = select_representatives(scores.detach(), regions,
                                                  int(regions.max()) + 1, self.num_representatives)
                outputs.append(region_interaction(flat[b], scores, regions, reps, self.intra,
                                                  self.inter, self.max_chunk_elements))
        context = torch.stack(outputs).transpose(1, 2).reshape(n, channels, height, width)
        return context.to(features.dtype), boundary_logits, class_logits


class RANetHead(nn.Module):
    """3x3 conv c5 -> 512 (A), the context module, concat(A, context) -> 3x3 conv -> classifier.

    ``context``: "region" (RCB + RIB), or the Table 1 pixel-wise baselines "spp" (the PSPNet
    pyramid pooling on A) and "nonlocal" (an embedded-Gaussian non-local block on A), which have
    no boundary / class score heads.

    ``aspp_rates``: when given, A is DeepLabV3's ASPP on c5 with these atrous rates and
    ``channels`` outputs instead of the 3x3 conv: the "+ASPP" of RANet Table 5's
    "HRNetV2-W48+ASPP" baseline, on which RCB and RIB then run.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1,
                 context: str = "region", channels: int = 512,
                 aspp_rates: tuple[int, ...] | None = None, **region_options) -> None:
        super().__init__()
        if context not in RANET_CONTEXTS:
            raise GsbenchError(f"RANet context must be one of {', '.join(RANET_CONTEXTS)}, "
                               f"got {context!r}")
        self.context_type = context
        self.reduce = (ConvBNReLU(in_channels, channels, 3) if aspp_rates is None else
                       ASPP(in_channels, tuple(aspp_rates), channels))
        if context == "region":
            self.context = RegionAttention(channels, num_classes, **region_options)
            fused = 2 * channels
        elif context == "spp":
            self.context = PyramidPooling(channels)
            fused = self.context.out_channels
        else:
            self.context = NonLocalBlock(channels)
            fused = 2 * channels
        self.bottleneck = ConvBNReLU(fused, channels, 3)
        self.cls = classifier(channels, num_classes, dropout)
        init_kaiming(self.reduce)
        init_kaiming(self.bottleneck)
        init_kaiming(self.cls)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        a = self.reduce(features[-1])
        if self.context_type == "region":
            context, boundary, coarse = self.context(a)
            out = self.cls(self.bottleneck(torch.cat([a, context], dim=1)))
            return {"out": out, "boundary": boundary, "coarse": coarse}
        if self.context_type == "spp":
            return {"out": self.cls(self.bottleneck(self.context(a)))}
        return {"out": self.cls(self.bottleneck(torch.cat([a, self.context(a)], dim=1)))}


class RANetModel(SegmentationModel):
    """:class:`SegmentationModel` whose head also returns RCB's score maps.

    In training mode the outputs add ``"boundary"`` (N x 1 x H x W boundary logits of B) and
    ``"coarse"`` (N x C x H x W logits of the semantic score maps C), both at the input
    resolution, for :class:`gsbench.losses.ranet.RANetLoss`. In eval mode ``model(images,
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
        for key in ("boundary", "coarse"):
            if key in head and (self.training or key in outputs):
                logits[key] = head[key]
        return logits


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
) -> nn.Module:
    """RANet: dilated ResNet (or HRNetV2) + RANet head (+ stage-3 aux FCN head, weight 0.4).

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
    region_options = {}
    if context == "region":
        region_options = dict(cue=cue, num_representatives=num_representatives, intra=intra,
                              inter=inter, region_threshold=region_threshold, grouping=grouping,
                              max_chunk_elements=max_chunk_elements)
    rates = aspp_rates(output_stride) if aspp else None
    head = RANetHead(encoder.channels[-1], num_classes, dropout, context, aspp_rates=rates,
                     **region_options)
    aux_head = AuxFCNHead(encoder.channels[2], num_classes, dropout) if aux else None
    return RANetModel(encoder, head, aux_head)
