"""A compiled CPU kernel for RANet's segment maxima D (Eq. 1), built on first use.

D_ij is the maximum of the boundary map B over the samples of the segment from pixel i to
pixel j. Every pair of pixels of the map needs its own walk along the segment (4 * 10^9
samples over the 88.5 M ordered pairs of a 97 x 97 map), which a vectorised PyTorch gather
does at 10-15 ns per sample on a CPU; a plain C loop does it at about 1-3 ns. The official
RANet code runs this walk as a CUDA kernel (``ops/match_boundary``); on CUDA devices gsbench
keeps its vectorised PyTorch form (:func:`gsbench.models.ranet.segment_max`), which is fast
there.

The C source below is compiled on first use (:mod:`gsbench.native`: the system C compiler, a
cached shared library, :mod:`ctypes`). Without a working compiler (or with
``GSBENCH_NATIVE=0``) :func:`kernels` returns None and the PyTorch form runs instead: same
results, slower.

The two sampling forms (the ``segment_samples`` option of :mod:`gsbench.models.ranet`):

- ``paper`` (mode 0): samples t = 0..L along the major axis (the axis of the larger of
  |dy|, |dx|; L their maximum), end points included, minor coordinate (d * t) / L, B
  interpolated linearly between the two nearest pixels; D_ii = B_i;
- ``official`` (mode 1): the released CUDA op (RANet ``ops/match_boundary/src/
  match_boundary_kernel.cu``) restated: interior samples k = 1..L-1 only (D = 0 when L <= 1),
  minor coordinate start + k * (float(d_minor) / float(d_major)) in float32, x the major axis
  on ties |dx| = |dy|, and a sample whose minor coordinate lands exactly on the last row
  (x major) or the last column (y major) reads 0.

Both walks keep the first sample that reaches the maximum; the gradient of D goes to that
sample's two pixels with its interpolation weights (none when every sample is 0, as in the
official op).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from gsbench.native import NativeLibrary, run_in_spans, spans, thread_pool

_SOURCE = r"""
#include <math.h>
#include <stdint.h>

/* The walk of one pair (i, j) on an H x W map. Returns the maximum; with track != 0 also its
   sample's two pixels (lo, hi; -1 when no sample won) and their weights. */
static inline float walk(const float *restrict b, int h, int w, int mode, int64_t i,
                         int64_t j, int track, int64_t *lo_out, int64_t *hi_out,
                         float *wlo_out, float *whi_out) {
    int yi = (int)(i / w), xi = (int)(i % w), yj = (int)(j / w), xj = (int)(j % w);
    int dy = yj - yi, dx = xj - xi;
    int ady = dy < 0 ? -dy : dy, adx = dx < 0 ? -dx : dx;
    float best = 0.0f, wlo = 0.0f, whi = 0.0f;
    int lo = -1, hi = -1;
    if (mode == 0) {
        int len = ady > adx ? ady : adx;
        best = -1.0f;
        for (int t = 0; t <= len; t++) {
            /* (d * t) / L in float32; its floor is the exact integer floor (never rounds up). */
            int ny = dy * t, nx = dx * t;
            int fy = len ? (ny >= 0 ? ny / len : -((-ny + len - 1) / len)) : 0;
            int fx = len ? (nx >= 0 ? nx / len : -((-nx + len - 1) / len)) : 0;
            float y = len ? (float)ny / (float)len : 0.0f, x = len ? (float)nx / (float)len : 0.0f;
            float wt = (y - (float)fy) + (x - (float)fx);
            int a = (yi + fy) * w + xi + fx;
            int c = a + (wt > 0.0f ? (ady >= adx ? 1 : w) : 0);
            float v = b[a] + wt * (b[c] - b[a]);
            if (v > best) { best = v; lo = a; hi = c; wlo = 1.0f - wt; whi = wt; }
        }
    } else if (adx >= ady && adx != 0) {
        float rate = (float)dy / (float)dx;
        int step = dx > 0 ? 1 : -1;
        for (int k = 1; k < adx; k++) {
            float iy = (float)k * rate;
            if (dx < 0) iy = -iy;
            float y = (float)yi + iy;
            if (y <= 0.0f) y = 0.0f;
            int y0 = (int)y;
            if (y0 >= h - 1) continue;           /* the last-row sample reads 0 */
            int x = xi + k * step;
            float ty = y - (float)y0, by = (float)(y0 + 1) - y;
            int a = y0 * w + x;
            float v = ty * b[a + w] + by * b[a];
            if (best < v) { best = v; lo = a; hi = a + w; wlo = by; whi = ty; }
        }
    } else if (ady > adx) {
        float rate = (float)dx / (float)dy;
        int step = dy > 0 ? 1 : -1;
        for (int k = 1; k < ady; k++) {
            float ix = (float)k * rate;
            if (dy < 0) ix = -ix;
            float x = (float)xi + ix;
            if (x <= 0.0f) x = 0.0f;
            int x0 = (int)x;
            if (x0 >= w - 1) continue;           /* the last-column sample reads 0 */
            int y = yi + k * step;
            float lx = x - (float)x0, rx = (float)(x0 + 1) - x;
            int a = y * w + x0;
            float v = lx * b[a + 1] + rx * b[a];
            if (best < v) { best = v; lo = a; hi = a + 1; wlo = rx; whi = lx; }
        }
    }
    if (track) { *lo_out = lo; *hi_out = hi; *wlo_out = wlo; *whi_out = whi; }
    return best;
}

/* --- the official RCB without an hw x hw table -------------------------------------------
   With the official region score (no W^g) RCB needs F only for the first link of each pixel
   (S_ij = (F_ij + F_ji) / 2 > t for the first j <= i) and for the pairs inside each region
   (J of Eq. 5). E is the official binary JSD: with c = argmax of C_i, p = clip(C_i[c]),
   q = clip(C_j[c]): E = (h(p) + h(q)) / 2 - h((p + q) / 2), h(x) = x ln x + (1-x) ln(1-x).
   pc: the clipped probabilities (hw x n), hc: h of them, cls: the argmax class of each
   pixel. cue: 1 = (1 - D)(1 - E), 2 = 1 - D only, 3 = 1 - E only. D is walked once per
   unordered pair and used for both orders (the official op's D is symmetric up to float
   rounding). */

static inline float negentropy(float x) { return x * logf(x) + (1.0f - x) * logf(1.0f - x); }

static inline float semantic(const float *pc, const float *hc, const int64_t *cls, int n,
                             int64_t i, int64_t j) {
    int64_t c = cls[i];
    float p = pc[i * n + c], q = pc[j * n + c];
    return 0.5f * (hc[i * n + c] + hc[j * n + c]) - negentropy(0.5f * (p + q));
}

void official_parents(const float *b, int h, int w, int n, const float *pc, const float *hc,
                      const int64_t *cls, int cue, float threshold, int64_t start, int64_t stop,
                      int64_t *parent) {
    for (int64_t i = start; i < stop; i++) {
        parent[i] = i;
        for (int64_t j = 0; j < i; j++) {
            float keep = 1.0f;
            if (cue != 2)
                keep = 0.5f * ((1.0f - semantic(pc, hc, cls, n, i, j))
                               + (1.0f - semantic(pc, hc, cls, n, j, i)));
            if (keep <= threshold) continue;   /* S <= keep: no boundary walk needed */
            if (cue != 3) keep *= 1.0f - walk(b, h, w, 1, i, j, 0, 0, 0, 0, 0);
            if (keep > threshold) { parent[i] = j; break; }
        }
    }
}

/* For each region, its pixels are order[offsets[q] .. offsets[q+1]); pair (a, b) with a < b
   of a region's list is handled by thread (a % threads). */
void official_region_sums(const float *b, int h, int w, int n, const float *pc, const float *hc,
                          const int64_t *cls, int cue, const int64_t *order,
                          const int64_t *offsets, int64_t regions, int thread, int threads,
                          float *sums) {
    for (int64_t q = 0; q < regions; q++) {
        for (int64_t a = offsets[q]; a < offsets[q + 1]; a++) {
            if ((a - offsets[q]) % threads != thread) continue;
            int64_t i = order[a];
            sums[i] += 1.0f;                   /* F_ii = 1 */
            for (int64_t c = a + 1; c < offsets[q + 1]; c++) {
                int64_t j = order[c];
                float d = cue != 3 ? walk(b, h, w, 1, i, j, 0, 0, 0, 0, 0) : 0.0f;
                float eij = cue != 2 ? semantic(pc, hc, cls, n, i, j) : 0.0f;
                float eji = cue != 2 ? semantic(pc, hc, cls, n, j, i) : 0.0f;
                sums[i] += (1.0f - eij) * (1.0f - d);
                sums[j] += (1.0f - eji) * (1.0f - d);
            }
        }
    }
}

/* The gradient of sum_i g[i] * sums[i] with respect to B (grad_b, hw) and to the class
   probabilities (grad_p, hw x n). dh: ln(x / (1 - x)) of the clipped probabilities, inside: 1
   where the probability lies within the clip range (else the clip passes no gradient). */
static inline void semantic_grad(const float *pc, const float *dh, const float *inside,
                                 const int64_t *cls, int n, int64_t i, int64_t j, float g,
                                 float *grad_p) {
    int64_t c = cls[i];
    float p = pc[i * n + c], q = pc[j * n + c], m = 0.5f * (p + q);
    float dm = logf(m / (1.0f - m));
    grad_p[i * n + c] += g * 0.5f * (dh[i * n + c] - dm) * inside[i * n + c];
    grad_p[j * n + c] += g * 0.5f * (dh[j * n + c] - dm) * inside[j * n + c];
}

void official_region_backward(const float *b, int h, int w, int n, const float *pc,
                              const float *hc, const float *dh, const float *inside,
                              const int64_t *cls, int cue, const int64_t *order,
                              const int64_t *offsets, int64_t regions, int thread, int threads,
                              const float *g, float *grad_b, float *grad_p) {
    int64_t lo, hi;
    float wlo, whi;
    for (int64_t q = 0; q < regions; q++) {
        for (int64_t a = offsets[q]; a < offsets[q + 1]; a++) {
            if ((a - offsets[q]) % threads != thread) continue;
            int64_t i = order[a];
            for (int64_t c = a + 1; c < offsets[q + 1]; c++) {
                int64_t j = order[c];
                if (g[i] == 0.0f && g[j] == 0.0f) continue;
                float d = 0.0f;
                lo = -1;
                if (cue != 3) d = walk(b, h, w, 1, i, j, 1, &lo, &hi, &wlo, &whi);
                float eij = cue != 2 ? semantic(pc, hc, cls, n, i, j) : 0.0f;
                float eji = cue != 2 ? semantic(pc, hc, cls, n, j, i) : 0.0f;
                if (lo >= 0) {                 /* dF/dD = -(1 - E) for both orders */
                    float gd = -(g[i] * (1.0f - eij) + g[j] * (1.0f - eji));
                    grad_b[lo] += gd * wlo;
                    grad_b[hi] += gd * whi;
                }
                if (cue != 2) {                /* dF/dE = -(1 - D) */
                    semantic_grad(pc, dh, inside, cls, n, i, j, -g[i] * (1.0f - d), grad_p);
                    semantic_grad(pc, dh, inside, cls, n, j, i, -g[j] * (1.0f - d), grad_p);
                }
            }
        }
    }
}

/* Pairs: (rows[p], cols[p]) for p < n, or with cols == 0 the dense block rows x (0..hw-1):
   pair p = r * hw + j. */
void segment_max_forward(const float *b, int h, int w, int mode, const int64_t *rows,
                         const int64_t *cols, int64_t start, int64_t stop, float *out) {
    int64_t hw = (int64_t)h * w;
    for (int64_t p = start; p < stop; p++) {
        int64_t i = cols ? rows[p] : rows[p / hw], j = cols ? cols[p] : p % hw;
        out[p] = walk(b, h, w, mode, i, j, 0, 0, 0, 0, 0);
    }
}

void segment_max_backward(const float *b, int h, int w, int mode, const int64_t *rows,
                          const int64_t *cols, int64_t start, int64_t stop,
                          const float *grad, float *grad_b) {
    int64_t hw = (int64_t)h * w, lo, hi;
    float wlo, whi;
    for (int64_t p = start; p < stop; p++) {
        if (grad[p] == 0.0f) continue;
        int64_t i = cols ? rows[p] : rows[p / hw], j = cols ? cols[p] : p % hw;
        walk(b, h, w, mode, i, j, 1, &lo, &hi, &wlo, &whi);
        if (lo < 0) continue;
        grad_b[lo] += grad[p] * wlo;
        grad_b[hi] += grad[p] * whi;
    }
}
"""

#: Sampling forms of Eq. (1): the ``mode`` argument of the kernel.
MODES = {"paper": 0, "official": 1}

def _declare(library: ctypes.CDLL) -> None:
    p, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
    library.segment_max_forward.argtypes = [p, i32, i32, i32, p, p, i64, i64, p]
    library.segment_max_backward.argtypes = [p, i32, i32, i32, p, p, i64, i64, p, p]
    library.official_parents.argtypes = [p, i32, i32, i32, p, p, p, i32, f32, i64, i64, p]
    library.official_region_sums.argtypes = [p, i32, i32, i32, p, p, p, i32, p, p, i64, i32,
                                             i32, p]
    library.official_region_backward.argtypes = [p, i32, i32, i32, p, p, p, p, p, i32, p, p,
                                                 i64, i32, i32, p, p, p]


# No fast-math and no contraction: float32 rounding as the official CUDA op.
LIBRARY = NativeLibrary("ranet_segment_max", _SOURCE, _declare,
                        flags=("-O3", "-std=c99", "-ffp-contract=off"),
                        purpose="RANet segment-maximum kernel")


def kernels() -> ctypes.CDLL | None:
    """The compiled library, or None (no compiler, a failed build, or ``GSBENCH_NATIVE=0``)."""
    return LIBRARY.get()


def _spans(total: int) -> list[tuple[int, int]]:
    """Contiguous pair ranges, one per thread of ``torch.get_num_threads()``."""
    return spans(total, torch.get_num_threads(), 4096)


def _pairs(rows: Tensor, cols: Tensor | None, hw: int) -> tuple[Tensor, Tensor | None, int]:
    rows = rows.to(torch.int64).contiguous()
    if cols is None:
        return rows, None, rows.numel() * hw
    return rows, cols.to(torch.int64).contiguous(), rows.numel()


def _address(tensor: Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def forward(library: ctypes.CDLL, boundary: Tensor, height: int, width: int, mode: str,
            rows: Tensor, cols: Tensor | None) -> Tensor:
    """D for the pairs (rows[p], cols[p]), or for rows x every pixel when ``cols`` is None
    (then shaped ``len(rows) x hw``); ``boundary`` is one image's B, float32, flattened."""
    b = boundary.detach().to(torch.float32).contiguous()
    rows, cols, total = _pairs(rows, cols, height * width)
    out = torch.empty(total, dtype=torch.float32)
    args = (b.data_ptr(), height, width, MODES[mode], rows.data_ptr(), _address(cols))

    def run(start, end):
        library.segment_max_forward(*args, start, end, out.data_ptr())

    run_in_spans(run, total, torch.get_num_threads(), 4096)
    return out if cols is not None else out.view(rows.numel(), height * width)


def backward(library: ctypes.CDLL, boundary: Tensor, height: int, width: int, mode: str,
             rows: Tensor, cols: Tensor | None, grad: Tensor) -> Tensor:
    """The gradient of sum(grad * D) with respect to B (hw,): each pair's gradient goes to
    its winning sample's two pixels. Pairs with a zero gradient are not walked."""
    b = boundary.detach().to(torch.float32).contiguous()
    rows, cols, total = _pairs(rows, cols, height * width)
    grad = grad.detach().to(torch.float32).contiguous().view(-1)
    ranges = _spans(total)
    partial = torch.zeros(len(ranges), height * width, dtype=torch.float32)
    args = (b.data_ptr(), height, width, MODES[mode], rows.data_ptr(), _address(cols))

    def run(k):
        library.segment_max_backward(*args, ranges[k][0], ranges[k][1], grad.data_ptr(),
                                     partial[k].data_ptr())

    list(thread_pool(len(ranges)).map(run, range(len(ranges))))
    return partial.sum(0)


#: The Table 1 cues as the kernel's ``cue`` argument.
CUES = {"both": 1, "boundary": 2, "semantic": 3}


class OfficialTables:
    """What the official RCB kernels read of one image: B (hw,), the clipped class
    probabilities and h, h' of them (hw x n), the clip mask and each pixel's argmax class."""

    def __init__(self, boundary: Tensor, prob: Tensor, clip: tuple[float, float]):
        prob = prob.detach().to(torch.float32)
        self.boundary = boundary.detach().to(torch.float32).contiguous()
        self.num_classes = prob.shape[1]
        self.clipped = prob.clamp(*clip).contiguous()
        c = self.clipped
        self.negentropy = (torch.special.xlogy(c, c) + torch.special.xlogy(1 - c, 1 - c)).contiguous()
        self.slope = torch.log(c / (1 - c)).contiguous()
        self.inside = ((prob >= clip[0]) & (prob <= clip[1])).to(torch.float32).contiguous()
        self.classes = prob.argmax(dim=1).contiguous()

    def semantic(self) -> tuple:
        return (self.clipped.data_ptr(), self.negentropy.data_ptr())


def _regions_csr(regions: Tensor) -> tuple[Tensor, Tensor, int]:
    order = torch.argsort(regions, stable=True).contiguous()
    counts = torch.bincount(regions)
    offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).contiguous()
    return order, offsets, counts.numel()


def _threads() -> int:
    return max(1, torch.get_num_threads())


def official_parents(library: ctypes.CDLL, tables: OfficialTables, height: int, width: int,
                     cue: str, threshold: float) -> Tensor:
    """parent(i) = the first j <= i with (F_ij + F_ji) / 2 > threshold (``FollowCluster``)."""
    num = height * width
    parent = torch.empty(num, dtype=torch.int64)
    step = 64
    args = (tables.boundary.data_ptr(), height, width, tables.num_classes, *tables.semantic(),
            tables.classes.data_ptr(), CUES[cue], threshold)

    def run(start):
        library.official_parents(*args, start, min(start + step, num), parent.data_ptr())

    list(thread_pool(_threads()).map(run, range(0, num, step)))
    return parent


def official_region_sums(library: ctypes.CDLL, tables: OfficialTables, height: int,
                         width: int, cue: str, regions: Tensor) -> Tensor:
    """V_i = sum of F_ij over the pixels j of i's region (hw,)."""
    order, offsets, count = _regions_csr(regions)
    threads = _threads()
    sums = torch.zeros(threads, height * width, dtype=torch.float32)
    args = (tables.boundary.data_ptr(), height, width, tables.num_classes, *tables.semantic(),
            tables.classes.data_ptr(), CUES[cue], order.data_ptr(), offsets.data_ptr(), count)

    def run(thread):
        library.official_region_sums(*args, thread, threads, sums[thread].data_ptr())

    list(thread_pool(threads).map(run, range(threads)))
    return sums.sum(0)


def official_region_backward(library: ctypes.CDLL, tables: OfficialTables, height: int,
                             width: int, cue: str, regions: Tensor,
                             grad: Tensor) -> tuple[Tensor, Tensor]:
    """The gradients of sum_i grad[i] V_i with respect to B (hw,) and C (hw x n)."""
    order, offsets, count = _regions_csr(regions)
    threads = _threads()
    num = height * width
    grad = grad.detach().to(torch.float32).contiguous()
    grad_b = torch.zeros(threads, num, dtype=torch.float32)
    grad_p = torch.zeros(threads, num, tables.num_classes, dtype=torch.float32)
    args = (tables.boundary.data_ptr(), height, width, tables.num_classes, *tables.semantic(),
            tables.slope.data_ptr(), tables.inside.data_ptr(), tables.classes.data_ptr(),
            CUES[cue], order.data_ptr(), offsets.data_ptr(), count)

    def run(thread):
        library.official_region_backward(*args, thread, threads, grad.data_ptr(),
                                         grad_b[thread].data_ptr(), grad_p[thread].data_ptr())

    list(thread_pool(threads).map(run, range(threads)))
    return grad_b.sum(0), grad_p.sum(0)
