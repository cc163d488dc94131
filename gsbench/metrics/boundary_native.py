"""The boundary F-score's counts as compiled loops (:mod:`gsbench.native`): the form that
:func:`gsbench.metrics.boundary.boundary_fscore` runs where a C compiler exists.

Same definition and the same integer counts as the vectorised form of
:mod:`gsbench.metrics.boundary`. One pass per label map finds its boundary pixels and the set of
classes each one bounds (a bit per class), sets the pixel in a one-bit-per-pixel bitmap of each
of those classes (zero-padded by the largest radius), and lists the pixel. Then each listed
pixel of one map looks up each of its classes in the other map's bitmap of that class, ring by
ring of growing radius (0, 1, 2, then the radii asked), a row segment at a time and 64 pixels
per word, until the class is found or the largest disk is exhausted; most pixels of a good
prediction are done at radius 0 or 1. A class found in the ring of radius r is matched at r and
at every larger radius (the disks are nested). A grid of 8 x 8-pixel cells tells which classes
have any boundary pixel near a cell, so the classes with none are not searched. Afterwards only
the words of the listed pixels are cleared, so the bitmaps are all zeros for the next image.
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

/* The classes each pixel of an h x w label map bounds, as a bit set (lut[label]: the class's
   bit, 0 for labels that are no class of this block). A pixel that differs from its E, S or
   SE neighbour bounds its own class and its neighbours' (DAVIS seg2bmap on each class mask,
   with the edge rules of row_differs). With `vmask` given, a pixel whose vmask value is
   `vlabel` reads as 255. Each boundary pixel (y, x) sets bit x + pad of row y + pad of the
   bitmap of each class it bounds (class c's bitmap: `plane` 64-bit words from bitmaps +
   c * plane, `words` per row; `pad` rows and columns of zeros on every side), is listed (ys,
   xs, listed: its bits), and its bits are ORed into its cell of `grid` (cells of 2^shift
   pixels, `border` cells of border, `grid_w` per row). Returns how many. scratch: 3 * w
   bytes. */
int64_t boundary_bits(const uint8_t *lab, const uint8_t *vmask, int vlabel, int h, int w,
                      const uint32_t *lut, int pad, uint64_t *bitmaps, int64_t plane,
                      int64_t words, int32_t *ys, int32_t *xs, uint32_t *listed,
                      uint32_t *grid, int shift, int border, int64_t grid_w,
                      uint8_t *scratch) {
    uint8_t *d = scratch, *m0 = scratch + w, *m1 = scratch + 2 * w;
    int64_t n = 0;
    if (vmask) void_masked(lab, vmask, (uint8_t)vlabel, w, m1);
    for (int y = 0; y < h; y++) {
        const uint8_t *r0 = lab + (int64_t)y * w, *r1 = y + 1 < h ? r0 + w : r0;
        if (vmask) {  /* the masked row below becomes this row's; mask the next one */
            uint8_t *swap = m0;
            m0 = m1;
            m1 = swap;
            if (y + 1 < h) void_masked(r1, vmask + (int64_t)(y + 1) * w, (uint8_t)vlabel, w, m1);
            else memcpy(m1, m0, w);
            r0 = m0;
            r1 = m1;
        }
        row_differs(r0, r1, w, d);
        uint64_t *row = bitmaps + (int64_t)(y + pad) * words;
        uint32_t *cells = grid + ((int64_t)(y >> shift) + border) * grid_w + border;
        for (int x = 0; x < w; x++) {
            if (x + 8 <= w) {  /* skip runs of 8 inner pixels at once */
                uint64_t eight;
                memcpy(&eight, d + x, 8);
                if (!eight) { x += 7; continue; }
            }
            if (!d[x]) continue;
            int e = x + 1 < w ? x + 1 : x;
            uint32_t b = lut[r0[x]] | lut[r0[e]] | lut[r1[x]] | lut[r1[e]];
            if (!b) continue;
            int64_t column = x + pad;
            for (uint32_t c = b; c; c &= c - 1)
                row[__builtin_ctz(c) * plane + (column >> 6)] |= (uint64_t)1 << (column & 63);
            cells[x >> shift] |= b;
            ys[n] = y;
            xs[n] = x;
            listed[n++] = b;
        }
    }
    return n;
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

/* For each listed query pixel (ys, xs; its classes in listed), the smallest ring in which the
   target's bitmap of each of its classes (laid out as boundary_bits writes them) has a 1:
   level l is the ring of row segments level_end[l-1] .. level_end[l]-1 (segment k: row offset
   seg_dy[k], seg_len[k] columns from offset seg_dx[k]); a class first found at level l is
   counted in hits[class * nr + level_radius[l]]. totals[class]: the query pixels of the class.
   near (cells as in boundary_bits): the classes with a target pixel within reach of a cell;
   the others are not searched. */
void match_counts(const int32_t *ys, const int32_t *xs, const uint32_t *listed, int64_t n,
                  int pad, const uint64_t *bitmaps, int64_t plane, int64_t words,
                  const int32_t *seg_dy, const int32_t *seg_dx, const int32_t *seg_len,
                  const int32_t *level_end, const int32_t *level_radius, int levels, int nr,
                  const uint32_t *near, int shift, int border, int64_t grid_w,
                  int64_t *totals, int64_t *hits) {
    for (int64_t i = 0; i < n; i++) {
        for (uint32_t b = listed[i]; b; b &= b - 1) totals[__builtin_ctz(b)]++;
        uint32_t missing = listed[i] & near[((ys[i] >> shift) + border) * grid_w +
                                            (xs[i] >> shift) + border];
        int64_t y = ys[i] + pad, x = xs[i] + pad;
        for (int l = 0, first = 0; l < levels && missing; first = level_end[l++]) {
            for (uint32_t b = missing; b; b &= b - 1) {
                int c = __builtin_ctz(b);
                const uint64_t *map = bitmaps + c * plane + y * words;
                for (int k = first; k < level_end[l]; k++) {
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


def _declare(library: ctypes.CDLL) -> None:
    p, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    library.boundary_bits.argtypes = [p, p, i32, i32, i32, p, i32, p, i64, i64, p, p, p, p, i32,
                                      i32, i64, p]
    library.spread_cells.argtypes = [p, p, p, i64, i64, i32]
    library.spread_cells.restype = None
    library.boundary_bits.restype = i64
    library.clear_bits.argtypes = [p, p, p, i64, i32, p, i64, i64]
    library.clear_bits.restype = None
    library.match_counts.argtypes = [p, p, p, i64, i32, p, i64, i64, p, p, p, p, p, i32, i32, p,
                                     i32, i32, i64, p, p]
    library.match_counts.restype = None


_BLOCK = 32  # classes per pass: one bit of a uint32 each
_CELL_SHIFT = 3  # the near-classes grid's cells: 8 x 8 pixels
LIBRARY = NativeLibrary("boundary_fscore", _SOURCE, _declare, purpose="boundary F-score kernel")


def _pointer(array: np.ndarray | None) -> int | None:
    return None if array is None else array.ctypes.data


class _Map:
    """One label map's boundary: a bitmap per class of a block, padded, and the list of its
    boundary pixels."""

    def __init__(self, height: int, width: int, pad: int) -> None:
        self.words = (width + 2 * pad + 63) // 64
        self.plane = (height + 2 * pad) * self.words
        self.bitmaps = np.zeros(_BLOCK * self.plane, np.uint64)
        self.ys = np.empty(height * width, np.int32)
        self.xs = np.empty(height * width, np.int32)
        self.listed = np.empty(height * width, np.uint32)
        self.count = 0
        # A disk of radius `pad` around a pixel lies in the (2 * border + 1)^2 cells around
        # the pixel's cell.
        self.shift, self.border = _CELL_SHIFT, -(-pad >> _CELL_SHIFT)
        self.grid = np.zeros((((height - 1) >> self.shift) + 1 + 2 * self.border,
                              ((width - 1) >> self.shift) + 1 + 2 * self.border), np.uint32)


class NativeWorkspace:
    """The bitmaps and lists of two maps for one image size and largest radius, kept from image
    to image (allocating and clearing them per image would cost more than the work): the
    bitmaps are all zeros between uses, since only the listed pixels' words are written, and
    set back to zero after each use."""

    def __init__(self, height: int, width: int, max_radius: int) -> None:
        self.key = (height, width, max_radius)
        self.pad = max_radius
        self.maps = (_Map(height, width, max_radius), _Map(height, width, max_radius))
        self.scratch = np.empty(3 * width, np.uint8)
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
    pad = workspace.pad
    n_pred = np.zeros(num_classes, np.int64)
    n_gt = np.zeros(num_classes, np.int64)
    matched_pred = np.zeros((num_classes, nr), np.int64)
    matched_gt = np.zeros((num_classes, nr), np.int64)
    maps = workspace.maps
    for first in range(0, num_classes, _BLOCK):  # one bit per class, 32 classes per pass
        block = np.arange(first, min(first + _BLOCK, num_classes))
        lut = np.zeros(256, np.uint32)
        lut[block] = np.left_shift(np.uint32(1), np.arange(block.size, dtype=np.uint32))
        try:
            for one, (labels, vmask) in zip(maps, ((pred, gt), (gt, None))):
                one.grid.fill(0)
                one.count = library.boundary_bits(
                    _pointer(labels), _pointer(vmask), ignore_index, height, width, _pointer(lut),
                    pad, _pointer(one.bitmaps), one.plane, one.words, _pointer(one.ys),
                    _pointer(one.xs), _pointer(one.listed), _pointer(one.grid), one.shift,
                    one.border, one.grid.shape[1], _pointer(workspace.scratch))
            for k, (totals, matched) in enumerate(((n_pred, matched_pred), (n_gt, matched_gt))):
                query, target = maps[k], maps[1 - k]
                block_totals = np.zeros(_BLOCK, np.int64)
                hits = np.zeros((_BLOCK, nr), np.int64)
                library.spread_cells(_pointer(target.grid), _pointer(workspace.spread),
                                     _pointer(workspace.near), *target.grid.shape, target.border)
                library.match_counts(
                    _pointer(query.ys), _pointer(query.xs), _pointer(query.listed), query.count,
                    pad, _pointer(target.bitmaps), target.plane, target.words, *rings, levels,
                    nr, _pointer(workspace.near), query.shift, query.border,
                    query.grid.shape[1], _pointer(block_totals), _pointer(hits))
                totals[block] = block_totals[: block.size]
                matched[block] = np.cumsum(hits, axis=1)[: block.size]  # nested disks
        finally:  # the next image finds the images all zeros again
            for one in maps:
                library.clear_bits(_pointer(one.ys), _pointer(one.xs), _pointer(one.listed),
                                   one.count, pad, _pointer(one.bitmaps), one.plane, one.words)
                one.count = 0
    return n_pred, n_gt, matched_pred, matched_gt
