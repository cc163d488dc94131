"""The boundary F-score's counts as compiled loops (:mod:`gsbench.native`): the form that
:func:`gsbench.metrics.boundary.boundary_fscore` runs where a C compiler exists.

Same definition and the same integer counts as the vectorised form of
:mod:`gsbench.metrics.boundary`. One pass over both label maps finds their boundary pixels and
the set of classes each one bounds (a bit per class), sets the pixel in a one-bit-per-pixel
bitmap of each of those classes (zero-padded by the largest radius) and lists it; the classes
that both maps bound at the same pixel are matched at radius 0 there, and most boundary pixels
of a good prediction are done with that. Each pixel with classes left then looks for each of
them in the other map's bitmap of the class, ring by ring of growing radius (1, 2, then the
radii asked), a row segment at a time and 64 pixels per word, until the class is found or the
largest disk is exhausted. A class found in the ring of radius r is matched at r and at every
larger radius (the disks are nested). A grid of 8 x 8-pixel cells tells which classes have any
boundary pixel near a cell, so the classes with none are not searched. Afterwards only the words
of the listed pixels are cleared, so the bitmaps are all zeros for the next image.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from gsbench.native import NativeLibrary

_SOURCE = r"""
#include <stdint.h>
#include <string.h>

/* d[x] = 1 where pixel x of row r0 differs from its E, S or SE neighbour (r1: the row below,
   r0 itself on the last row, so that S is the pixel and SE is E there); on the last column E
   is the pixel and SE is S. Vectorised by the compiler. */
static void row_differs(const uint8_t *r0, const uint8_t *r1, int w, uint8_t *d) {
    for (int x = 0; x + 1 < w; x++)
        d[x] = (r0[x] != r0[x + 1]) | (r0[x] != r1[x]) | (r0[x] != r1[x + 1]);
    d[w - 1] = r0[w - 1] != r1[w - 1];
}

/* out[x] = 255 where vmask[x] == vlabel, else lab[x] (the prediction where the GT is void). */
static void void_masked(const uint8_t *lab, const uint8_t *vmask, uint8_t vlabel, int w,
                        uint8_t *out) {
    for (int x = 0; x < w; x++) out[x] = lab[x] | (uint8_t)-(vmask[x] == vlabel);  /* no branch */
}

/* One map's boundary as boundary_pair writes it (the fields are described there). */
struct map_out {
    uint64_t *bitmaps;         /* a bitmap per class: `plane` words each, `words` per row */
    int32_t *ys, *xs;          /* every boundary pixel ... */
    uint32_t *bits;            /* ... and the classes it bounds */
    int64_t *query;            /* the pixels with classes left to search for (index into ys) */
    uint32_t *query_bits;      /* ... and those classes */
    uint32_t *grid;            /* per cell, the classes bounded in it */
    int64_t *totals;           /* per class, its boundary pixels */
    int64_t *at_zero;          /* per class, those matched at radius 0 */
    int64_t n, n_query;
};

static inline void add_pixel(struct map_out *m, int y, int x, uint32_t bits, uint32_t matched,
                             int pad, int64_t plane, int64_t words, int64_t cell) {
    int64_t column = x + pad;
    uint64_t *row = m->bitmaps + (int64_t)(y + pad) * words + (column >> 6);
    for (uint32_t c = bits; c; c &= c - 1) {
        int k = __builtin_ctz(c);
        row[k * plane] |= (uint64_t)1 << (column & 63);
        m->totals[k]++;
    }
    for (uint32_t c = matched; c; c &= c - 1) m->at_zero[__builtin_ctz(c)]++;
    m->grid[cell] |= bits;
    m->ys[m->n] = y;
    m->xs[m->n] = x;
    m->bits[m->n] = bits;
    if (bits & ~matched) {
        m->query[m->n_query] = m->n;
        m->query_bits[m->n_query++] = bits & ~matched;
    }
    m->n++;
}

/* The boundaries of both h x w maps in one pass: out[0] the prediction's (read as 255 where
   the GT is `vlabel`), out[1] the GT's. A pixel that differs from its E, S or SE neighbour
   bounds its own class and its neighbours' (DAVIS seg2bmap on each class mask, with the edge
   rules of row_differs); lut[label] is the class's bit (0 for labels that are no class of this
   block). Each boundary pixel sets bit x + pad of row y + pad of its classes' bitmaps (`pad`
   rows and columns of zeros on every side), ORs its classes into its grid cell (cells of
   2^shift pixels, `border` cells of border, grid_w per row) and is listed; the classes that
   the other map bounds at the same pixel are matched at radius 0 (at_zero), the others are
   left for match_counts. scratch: 6 * w bytes. */
void boundary_pair(const uint8_t *pred, const uint8_t *gt, int vlabel, int h, int w,
                   const uint32_t *lut, int pad, int64_t plane, int64_t words, int shift,
                   int border, int64_t grid_w, struct map_out *out, uint8_t *scratch) {
    uint8_t *dp = scratch, *dg = scratch + w, *m0 = scratch + 2 * w, *m1 = scratch + 3 * w;
    void_masked(pred, gt, (uint8_t)vlabel, w, m1);
    for (int y = 0; y < h; y++) {
        const uint8_t *g0 = gt + (int64_t)y * w, *g1 = y + 1 < h ? g0 + w : g0;
        uint8_t *swap = m0;  /* the masked prediction row below becomes this row's */
        m0 = m1;
        m1 = swap;
        if (y + 1 < h) void_masked(pred + (int64_t)(y + 1) * w, g1, (uint8_t)vlabel, w, m1);
        else memcpy(m1, m0, w);
        row_differs(m0, m1, w, dp);
        row_differs(g0, g1, w, dg);
        int64_t row_cells = ((int64_t)(y >> shift) + border) * grid_w + border;
        for (int x = 0; x < w; x++) {
            if (x + 8 <= w) {  /* skip runs of 8 inner pixels at once */
                uint64_t a, b;
                memcpy(&a, dp + x, 8);
                memcpy(&b, dg + x, 8);
                if (!(a | b)) { x += 7; continue; }
            }
            int e = x + 1 < w ? x + 1 : x;
            uint32_t pb = dp[x] ? lut[m0[x]] | lut[m0[e]] | lut[m1[x]] | lut[m1[e]] : 0;
            uint32_t gb = dg[x] ? lut[g0[x]] | lut[g0[e]] | lut[g1[x]] | lut[g1[e]] : 0;
            uint32_t both = pb & gb;
            int64_t cell = row_cells + (x >> shift);
            if (pb) add_pixel(&out[0], y, x, pb, both, pad, plane, words, cell);
            if (gb) add_pixel(&out[1], y, x, gb, both, pad, plane, words, cell);
        }
    }
}

/* Sets the listed pixels' words of the bitmaps back to zero. */
void clear_bits(const int32_t *ys, const int32_t *xs, const uint32_t *listed, int64_t n,
                int pad, uint64_t *bitmaps, int64_t plane, int64_t words) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t *word = bitmaps + (int64_t)(ys[i] + pad) * words + ((xs[i] + pad) >> 6);
        for (uint32_t c = listed[i]; c; c &= c - 1) word[__builtin_ctz(c) * plane] = 0;
    }
}

/* near = the OR of grid over the (2 * border + 1)^2 cells around each cell (rows x cols
   cells, the outer `border` cells left as they are); tmp: rows x cols words. */
void spread_cells(const uint32_t *grid, uint32_t *tmp, uint32_t *near, int64_t rows,
                  int64_t cols, int border) {
    for (int64_t y = 0; y < rows; y++)
        for (int64_t x = border; x < cols - border; x++) {
            uint32_t acc = 0;
            for (int d = -border; d <= border; d++) acc |= grid[y * cols + x + d];
            tmp[y * cols + x] = acc;
        }
    for (int64_t y = border; y < rows - border; y++)
        for (int64_t x = border; x < cols - border; x++) {
            uint32_t acc = 0;
            for (int d = -border; d <= border; d++) acc |= tmp[(y + d) * cols + x];
            near[y * cols + x] = acc;
        }
}

/* Whether the bitmap row `row` has a 1 in columns a .. a + len - 1. */
static inline int run_any(const uint64_t *row, int64_t a, int len) {
    while (len > 0) {
        int off = (int)(a & 63), take = 64 - off < len ? 64 - off : len;
        uint64_t chunk = row[a >> 6] >> off;
        if (take < 64) chunk &= ((uint64_t)1 << take) - 1;
        if (chunk) return 1;
        a += take;
        len -= take;
    }
    return 0;
}

/* For each query pixel (query[i]: its index into ys, xs; query_bits[i]: its classes not
   matched at radius 0), the smallest ring in which the target's bitmap of each of those
   classes (laid out as boundary_pair writes them) has a 1: level l >= 1 is the ring of row
   segments level_end[l-1] .. level_end[l]-1 (segment k: row offset seg_dy[k], seg_len[k]
   columns from offset seg_dx[k]; level 0 is radius 0); a class first found at level l is
   counted in hits[class * nr + level_radius[l]]. near (cells as in boundary_pair): the
   classes with a target pixel within reach of a cell; the others are not searched. */
void match_counts(const int32_t *ys, const int32_t *xs, const int64_t *query,
                  const uint32_t *query_bits, int64_t n, int pad, const uint64_t *bitmaps,
                  int64_t plane, int64_t words, const int32_t *seg_dy, const int32_t *seg_dx,
                  const int32_t *seg_len, const int32_t *level_end,
                  const int32_t *level_radius, int levels, int nr, const uint32_t *near,
                  int shift, int border, int64_t grid_w, int64_t *hits) {
    for (int64_t i = 0; i < n; i++) {
        int32_t y0 = ys[query[i]], x0 = xs[query[i]];
        uint32_t missing = query_bits[i] & near[((y0 >> shift) + border) * grid_w +
                                                (x0 >> shift) + border];
        int64_t y = y0 + pad, x = x0 + pad;
        for (int l = 1; l < levels && missing; l++) {
            for (uint32_t b = missing; b; b &= b - 1) {
                int c = __builtin_ctz(b);
                const uint64_t *map = bitmaps + c * plane + y * words;
                for (int k = level_end[l - 1]; k < level_end[l]; k++) {
                    if (run_any(map + seg_dy[k] * words, x + seg_dx[k], seg_len[k])) {
                        hits[c * nr + level_radius[l]]++;
                        missing &= ~(1u << c);
                        break;
                    }
                }
            }
        }
    }
}
"""


class _MapOut(ctypes.Structure):
    """``struct map_out`` of the kernel."""

    _fields_ = [(name, ctypes.c_void_p) for name in (
        "bitmaps", "ys", "xs", "bits", "query", "query_bits", "grid", "totals", "at_zero")] + [
        ("n", ctypes.c_int64), ("n_query", ctypes.c_int64)]


def _declare(library: ctypes.CDLL) -> None:
    p, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    library.boundary_pair.argtypes = [p, p, i32, i32, i32, p, i32, i64, i64, i32, i32, i64,
                                      ctypes.POINTER(_MapOut), p]
    library.boundary_pair.restype = None
    library.spread_cells.argtypes = [p, p, p, i64, i64, i32]
    library.spread_cells.restype = None
    library.clear_bits.argtypes = [p, p, p, i64, i32, p, i64, i64]
    library.clear_bits.restype = None
    library.match_counts.argtypes = [p, p, p, p, i64, i32, p, i64, i64, p, p, p, p, p, i32, i32,
                                     p, i32, i32, i64, p]
    library.match_counts.restype = None


_BLOCK = 32  # classes per pass: one bit of a uint32 each
_CELL_SHIFT = 3  # the near-classes grid's cells: 8 x 8 pixels
LIBRARY = NativeLibrary("boundary_fscore", _SOURCE, _declare, purpose="boundary F-score kernel")


def _pointer(array: np.ndarray | None) -> int | None:
    return None if array is None else array.ctypes.data


class _Map:
    """One label map's boundary: a bitmap per class of a block, padded, the list of its
    boundary pixels and of those with classes left to search for, and its grid of cells."""

    def __init__(self, height: int, width: int, pad: int) -> None:
        self.words = (width + 2 * pad + 63) // 64
        self.plane = (height + 2 * pad) * self.words
        self.bitmaps = np.zeros(_BLOCK * self.plane, np.uint64)
        self.ys = np.empty(height * width, np.int32)
        self.xs = np.empty(height * width, np.int32)
        self.bits = np.empty(height * width, np.uint32)
        self.query = np.empty(height * width, np.int64)
        self.query_bits = np.empty(height * width, np.uint32)
        # A disk of radius `pad` around a pixel lies in the (2 * border + 1)^2 cells around
        # the pixel's cell.
        self.shift, self.border = _CELL_SHIFT, -(-pad >> _CELL_SHIFT)
        self.grid = np.zeros((((height - 1) >> self.shift) + 1 + 2 * self.border,
                              ((width - 1) >> self.shift) + 1 + 2 * self.border), np.uint32)

    def start(self, out: _MapOut) -> tuple[np.ndarray, np.ndarray]:
        """``out`` pointed at this map's arrays, with empty lists, an empty grid and fresh
        per-class counts (returned: the totals and the matches at radius 0) for a pass."""
        self.grid.fill(0)
        totals, at_zero = np.zeros(_BLOCK, np.int64), np.zeros(_BLOCK, np.int64)
        arrays = (self.bitmaps, self.ys, self.xs, self.bits, self.query, self.query_bits,
                  self.grid, totals, at_zero)
        for (name, _), array in zip(_MapOut._fields_, arrays):
            setattr(out, name, _pointer(array))
        out.n = out.n_query = 0
        return totals, at_zero


class NativeWorkspace:
    """The bitmaps and lists of two maps for one image size and largest radius, kept from image
    to image (allocating and clearing them per image would cost more than the work): the
    bitmaps are all zeros between uses, since only the listed pixels' words are written, and
    set back to zero after each use."""

    def __init__(self, height: int, width: int, max_radius: int) -> None:
        self.key = (height, width, max_radius)
        self.pad = max_radius
        self.maps = (_Map(height, width, max_radius), _Map(height, width, max_radius))
        self.pair = (_MapOut * 2)()  # the kernel's two structs, filled by _Map.start
        self.scratch = np.empty(6 * width, np.uint8)
        self.near = np.zeros_like(self.maps[0].grid)
        self.spread = np.zeros_like(self.maps[0].grid)
        self._rings: dict[tuple[int, ...], tuple[np.ndarray, ...]] = {}

    def rings(self, sorted_radii: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        """The disks of the radii asked (ascending) as growing rings of row segments, with
        rings at radii 0, 1 and 2 first (most boundary pixels of a good prediction match
        there): ``(seg_dy, seg_dx, seg_len, level_end, level_radius)`` of the kernel."""
        if sorted_radii not in self._rings:
            levels = sorted({r for r in (0, 1, 2) if r < sorted_radii[-1]} | set(sorted_radii))
            segments, ends, radius_index = [], [], []
            previous = -1
            for radius in levels:
                for dy in range(-radius, radius + 1):
                    half = math.isqrt(radius * radius - dy * dy)
                    inner = math.isqrt(previous * previous - dy * dy) if abs(dy) <= previous else -1
                    if inner < 0:  # a row the smaller disk does not reach: the whole run
                        pieces = [(-half, 2 * half + 1)]
                    else:  # the run's two ends beyond the smaller disk's run
                        pieces = [(-half, half - inner), (inner + 1, half - inner)]
                    segments += [(dy, dx, length) for dx, length in pieces if length > 0]
                ends.append(len(segments))
                radius_index.append(next(i for i, r in enumerate(sorted_radii) if r >= radius))
                previous = radius
            table = np.array(segments, np.int32).reshape(-1, 3).T
            self._rings[sorted_radii] = (*(np.ascontiguousarray(c) for c in table),
                                         np.array(ends, np.int32), np.array(radius_index, np.int32))
        return self._rings[sorted_radii]


def native_counts(library: ctypes.CDLL, workspace: NativeWorkspace, pred: np.ndarray,
                  gt: np.ndarray, ignore_index: int, num_classes: int, sorted_radii: list[int]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(n_pred, n_gt, matched_pred, matched_gt)`` of :func:`boundary_fscore`: boundary pixels
    per class and, per class and sorted radius, those with a boundary of the class in the other
    map within the disk. ``pred`` is read as 255 where ``gt`` is ``ignore_index``."""
    height, width = gt.shape
    pred, gt = np.ascontiguousarray(pred), np.ascontiguousarray(gt)
    nr = len(sorted_radii)
    ring_tables = workspace.rings(tuple(sorted_radii))
    rings, levels = [_pointer(table) for table in ring_tables], ring_tables[3].size
    pad, maps, pair = workspace.pad, workspace.maps, workspace.pair
    one = maps[0]  # both maps share the layout
    n_pred = np.zeros(num_classes, np.int64)
    n_gt = np.zeros(num_classes, np.int64)
    matched_pred = np.zeros((num_classes, nr), np.int64)
    matched_gt = np.zeros((num_classes, nr), np.int64)
    for first in range(0, num_classes, _BLOCK):  # one bit per class, 32 classes per pass
        block = np.arange(first, min(first + _BLOCK, num_classes))
        lut = np.zeros(256, np.uint32)
        lut[block] = np.left_shift(np.uint32(1), np.arange(block.size, dtype=np.uint32))
        counts = [m.start(out) for m, out in zip(maps, pair)]
        try:
            library.boundary_pair(_pointer(pred), _pointer(gt), ignore_index, height, width,
                                  _pointer(lut), pad, one.plane, one.words, one.shift, one.border,
                                  one.grid.shape[1], pair, _pointer(workspace.scratch))
            for k, (totals, matched) in enumerate(((n_pred, matched_pred), (n_gt, matched_gt))):
                query, target = pair[k], maps[1 - k]
                block_totals, at_zero = counts[k]
                hits = np.zeros((_BLOCK, nr), np.int64)
                hits[:, 0] = at_zero  # radius index 0: the smallest radius asked
                library.spread_cells(_pointer(target.grid), _pointer(workspace.spread),
                                     _pointer(workspace.near), *target.grid.shape, target.border)
                library.match_counts(
                    _pointer(maps[k].ys), _pointer(maps[k].xs), _pointer(maps[k].query),
                    _pointer(maps[k].query_bits), query.n_query, pad, _pointer(target.bitmaps),
                    one.plane, one.words, *rings, levels, nr, _pointer(workspace.near),
                    one.shift, one.border, one.grid.shape[1], _pointer(hits))
                totals[block] = block_totals[: block.size]
                matched[block] = np.cumsum(hits, axis=1)[: block.size]  # nested disks
        finally:  # the next image finds the bitmaps all zeros again
            for m, listed in zip(maps, pair):
                library.clear_bits(_pointer(m.ys), _pointer(m.xs), _pointer(m.bits), listed.n,
                                   pad, _pointer(m.bitmaps), one.plane, one.words)
                listed.n = 0
    return n_pred, n_gt, matched_pred, matched_gt
