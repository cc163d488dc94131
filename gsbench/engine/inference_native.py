"""Test-time inference's per-pixel work as compiled loops (:mod:`gsbench.native`): the form
that :func:`gsbench.engine.inference.infer` runs on the CPU where a C compiler exists.

Per scale, a procedure takes the mean of the model's logits of the image and of its mirror,
resizes it to the image size, takes its softmax and adds it to the running total. PyTorch runs
these as separate passes over the full class maps, each reading and writing all of them (its
softmax also copies a channels-last map to the planar layout first); on the smoke models they
cost about a sixth of the forward passes. :func:`accumulate_scores` does them in one pass: each
output pixel reads its four source pixels in each map (the mirror's from the other end), takes
their weighted sum, the softmax of its classes and adds it to the total; a group of four pixels
at a time, so that their exponentials are independent work. When enlarging, the two maps are
summed at their smaller size first. :func:`resize_planes` is the same bilinear resize for
planar images (the scaled image itself).

The values are PyTorch's up to rounding (tests/test_inference_native.py): the source indices
and weights are ATen's ``compute_source_index_and_lambda`` (its AVX2 build fuses the
multiply-add, and so does this one), the weighted sums are taken in another order, and the
exponential is Cephes' ``expf`` polynomial, within a few units in the last place.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
import torch

from gsbench.native import NativeLibrary, run_in_spans

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

/* x86-64 builds carry an AVX2 + FMA copy of each kernel, picked when the library is loaded;
   the cached library stays valid on any x86-64 machine. */
#if defined(__x86_64__) && defined(__GNUC__) && __GNUC__ >= 11 && !defined(__clang__) \
    && defined(__GLIBC__)
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

#define LANES 8
#define GROUP 4  /* output pixels worked on together: their exponentials are independent */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

#ifdef __clang__
#define SHUFFLE(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define SHUFFLE(v, ...) __builtin_shuffle(v, (v8i){__VA_ARGS__})
#endif

static inline v8f load8(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
static inline v8f splat8(float x) { return (v8f){x, x, x, x, x, x, x, x}; }
static inline v8f max8(v8f a, v8f b) { v8i m = a > b; return (v8f)((m & (v8i)a) | (~m & (v8i)b)); }

/* The maximum and the sum of the eight lanes, in every lane. */
static inline v8f all_max8(v8f v) {
    v = max8(v, SHUFFLE(v, 4, 5, 6, 7, 0, 1, 2, 3));
    v = max8(v, SHUFFLE(v, 2, 3, 0, 1, 6, 7, 4, 5));
    return max8(v, SHUFFLE(v, 1, 0, 3, 2, 5, 4, 7, 6));
}
static inline v8f all_sum8(v8f v) {
    v += SHUFFLE(v, 4, 5, 6, 7, 0, 1, 2, 3);
    v += SHUFFLE(v, 2, 3, 0, 1, 6, 7, 4, 5);
    return v + SHUFFLE(v, 1, 0, 3, 2, 5, 4, 7, 6);
}

/* exp(x) for x <= 0: x = n ln2 + r with |r| <= ln2 / 2, a degree-6 polynomial in r (Cephes
   expf) and 2^n from the exponent bits. Below -87 it returns exp(-87) (about 1.6e-38), which
   leaves a softmax's sum, at least 1, unchanged; NaN stays NaN. */
static inline v8f exp8(v8f x) {
    const v8f low = splat8(-87.0f);
    const v8i below = x < low;  /* false for NaN */
    x = (v8f)((below & (v8i)low) | (~below & (v8i)x));
    v8i ni = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, v8i);  /* nearest */
    v8f n = __builtin_convertvector(ni, v8f);
    v8f r = x - n * 0.693359375f + n * 2.12194440e-4f;
    v8f p = splat8(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    return p * (v8f)((ni + 127) << 23);
}

/* Output index o of a bilinear resize from `in` to `out` samples: the two source indices and
   their weights, as ATen's compute_source_index_and_lambda (half-pixel centres, or corners
   aligned); its AVX2 build fuses the multiply-add of the source coordinate. */
static void taps(long in, long out, int corners, long o, long *i0, long *i1, float *l0, float *l1) {
    if (in == out) { *i0 = *i1 = o; *l0 = 1.0f; *l1 = 0.0f; return; }
    float ratio = corners ? (out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f)
                          : (float)in / (float)out;
    float real = corners ? ratio * (float)o : fmaf(ratio, (float)o + 0.5f, -0.5f);
    if (real < 0.0f) real = 0.0f;
    long index = (long)floorf(real);
    if (index > in - 1) index = in - 1;
    float lambda = real - (float)index;
    lambda = lambda < 0.0f ? 0.0f : (lambda > 1.0f ? 1.0f : lambda);
    *i0 = index; *i1 = index + (index < in - 1 ? 1 : 0);
    *l1 = lambda; *l0 = 1.0f - lambda;
}

static long padded(long classes) { return (classes + LANES - 1) / LANES * LANES; }
static long round16(long n) { return (n + 15) / 16 * 16; }

/* The work memory of one call, in 64-byte aligned pieces: per output column its two source
   columns' offsets in a map and in its mirror (longs) and their weights; a blended row of w
   floats (resize_planes); the classes of a group of output pixels; four copies of source rows
   (a row whose last pixels cannot be read as whole vectors inside its map's storage, with room
   after it). */
typedef struct {
    long *col0, *col1, *mirror0, *mirror1;
    float *weight0, *weight1, *row, *pixels, *edge[4];
    long edge_floats;
} Work;

long work_bytes(long classes, long w, long W, long s_x) {
    long edge = round16(w * s_x + padded(classes));
    return 64 + (long)sizeof(long) * 4 * round16(W)
         + (long)sizeof(float) * (2 * round16(W) + round16(w) + GROUP * padded(classes) + 4 * edge);
}

/* Carves the work memory and fills in the column taps (offsets for pixel stride s_x). */
static Work carve(void *memory, long classes, long w, long W, long s_x, int corners) {
    Work work;
    long *longs = (long *)(((uintptr_t)memory + 63) & ~(uintptr_t)63);
    work.col0 = longs; work.col1 = longs + round16(W);
    work.mirror0 = longs + 2 * round16(W); work.mirror1 = longs + 3 * round16(W);
    float *floats = (float *)(longs + 4 * round16(W));
    work.weight0 = floats; work.weight1 = floats + round16(W);
    work.row = floats + 2 * round16(W);
    work.pixels = work.row + round16(w);
    work.edge_floats = round16(w * s_x + padded(classes));
    work.edge[0] = work.pixels + GROUP * padded(classes);
    for (int e = 1; e < 4; e++) work.edge[e] = work.edge[e - 1] + work.edge_floats;
    for (long x = 0; x < W; x++) {
        long c0, c1;
        taps(w, W, corners, x, &c0, &c1, &work.weight0[x], &work.weight1[x]);
        work.col0[x] = c0 * s_x; work.col1[x] = c1 * s_x;
        work.mirror0[x] = (w - 1 - c0) * s_x; work.mirror1[x] = (w - 1 - c1) * s_x;
    }
    return work;
}

/* A source row whose pixels can all be read as whole vectors (C classes and the lanes up to
   the next multiple of LANES): the row itself, or where that would read past its map's
   storage (its last rows), a copy with zeros after it. */
static const float *readable_row(const float *row, const float *stop, long w, long s_x, long C,
                                 long Cp, float *copy, long copy_floats) {
    const long span = (w - 1) * s_x + C;
    if (row + span - C + Cp <= stop) return row;
    memcpy(copy, row, sizeof(float) * span);
    memset(copy + span, 0, sizeof(float) * (copy_floats - span));
    return copy;
}

/* Up to GROUP output pixels x0, x0 + 1, ...: each one's classes the bilinear sum of its source
   pixels (LANES per vector; the lanes past C hold a neighbour's values and are left out): in
   the rows a[0..rows) and, with two maps, their mirrored counterparts b[], weighted rw[] per
   row and the work's column weights (one column where cols is 1); their softmax when asked;
   into o (= or +=). Written for constant maps, rows and cols, which the compiler unrolls. The
   values go through `pixels`, written and read whole vectors at a time (a vector read of
   values stored piecewise would stall). */
static inline __attribute__((always_inline)) void output_pixels(
        const Work *work, const float *const *a, const float *const *b, const float *rw,
        int maps, int rows, int cols, long x0, int count, long C, long Cp, int softmax,
        int accumulate, v8i real, float *o) {
    const v8f pad = splat8(-1e30f);  /* a pad lane's logit in the softmax: exp() about 0 */
    float *scratch = work->pixels;
    v8f m8[GROUP];
    float sums[LANES] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    const v8f row_weights[2] = {splat8(rw[0]), splat8(rows == 2 ? rw[1] : 0.0f)};
    for (int g = 0; g < count; g++) {
        const long x = x0 + g;
        const v8f cw0 = splat8(work->weight0[x]), cw1 = splat8(work->weight1[x]);
        const long c0 = work->col0[x], c1 = work->col1[x];
        const long m0 = work->mirror0[x], m1 = work->mirror1[x];
        m8[g] = pad;
        for (long k = 0; k < Cp; k += LANES) {
            v8f v = splat8(0.0f);
            for (int r = 0; r < rows; r++) {
                v8f t = cw0 * load8(a[r] + c0 + k);
                if (cols == 2) t += cw1 * load8(a[r] + c1 + k);
                if (maps == 2) {
                    t += cw0 * load8(b[r] + m0 + k);
                    if (cols == 2) t += cw1 * load8(b[r] + m1 + k);
                }
                v += row_weights[r] * t;
            }
            if (softmax) {
                if (k == Cp - LANES) v = (v8f)(((v8i)v & real) | ((v8i)pad & ~real));
                m8[g] = max8(m8[g], v);
            }
            memcpy(scratch + g * Cp + k, &v, sizeof v);
        }
    }
    /* The softmax: a NaN logit, or +inf (inf - inf), makes the pixel's sum and all its
       probabilities NaN, as in PyTorch. */
    if (softmax) {
        for (int g = 0; g < count; g++) {
            m8[g] = all_max8(m8[g]);
            v8f s8 = splat8(0.0f);
            for (long k = 0; k < Cp; k += LANES) {
                v8f e = exp8(load8(scratch + g * Cp + k) - m8[g]);
                memcpy(scratch + g * Cp + k, &e, sizeof e);
                s8 += e;
            }
            sums[g] = all_sum8(s8)[0];
        }
    }
    v8f scale;
    memcpy(&scale, sums, sizeof scale);
    scale = splat8(1.0f) / scale;  /* the group's divisions in one */
    for (int g = 0; g < count; g++) {
        const float *v = scratch + g * Cp;
        float *out = o + g * C;
        const float f = scale[g];
        if (accumulate) for (long k = 0; k < C; k++) out[k] += v[k] * f;
        else for (long k = 0; k < C; k++) out[k] = v[k] * f;
    }
}

/* total[n, y, x, :] = (or +=) post(resize(weight * (a + mirror(b)))) for the output rows
   [y_begin, y_end) of every image n: a and b (either may be NULL) are batch x h x w x C maps
   with the classes contiguous, element strides s_n, s_y, s_x, and a_end, b_end floats
   readable from a and b; mirror(b) is b flipped left to right; resize is bilinear to H x W;
   post is the softmax over the classes when asked (a pixel with a NaN or +inf logit among the
   source pixels it reads gets NaN, as in PyTorch; source pixels of weight 0 are not read).
   total is batch x H x W x C. */
CLONES
void accumulate_scores(const float *a, const float *b, long C, long h, long w, long s_n,
                       long s_y, long s_x, long a_end, long b_end, float weight, float *total,
                       long H, long W, long batch, long y_begin, long y_end, int corners,
                       int softmax, int accumulate, void *memory) {
    const long Cp = padded(C);
    Work work = carve(memory, C, w, W, s_x, corners);
    if (!a) {  /* the mirror alone: read it as the one map, through the mirrored offsets */
        a = b; a_end = b_end; b = NULL;
        long *swap = work.col0; work.col0 = work.mirror0; work.mirror0 = swap;
        swap = work.col1; work.col1 = work.mirror1; work.mirror1 = swap;
    }
    v8i real = {0, 1, 2, 3, 4, 5, 6, 7};  /* the last vector's lanes that hold classes */
    real = real < (int32_t)(C - (Cp - LANES));
    const int maps = b ? 2 : 1, cols = w == W ? 1 : 2;  /* one column where not resized */
    for (long n = 0; n < batch; n++) {
        for (long y = y_begin; y < y_end; y++) {
            long r0, r1;
            float ly0, ly1;
            taps(h, H, corners, y, &r0, &r1, &ly0, &ly1);
            const int rows = ly1 != 0.0f ? 2 : 1;
            const float *ra[2], *rb[2];
            const float rw[2] = {weight * ly0, weight * ly1};
            for (int r = 0; r < rows; r++) {
                const long offset = n * s_n + (r ? r1 : r0) * s_y;
                ra[r] = readable_row(a + offset, a + a_end, w, s_x, C, Cp, work.edge[r],
                                     work.edge_floats);
                rb[r] = b ? readable_row(b + offset, b + b_end, w, s_x, C, Cp, work.edge[2 + r],
                                         work.edge_floats) : NULL;
            }
            float *out = total + (n * H + y) * W * C;
            const int shape = (maps - 1) * 4 + (rows - 1) * 2 + (cols - 1);
            for (long x0 = 0; x0 < W; x0 += GROUP) {
                const int count = W - x0 < GROUP ? (int)(W - x0) : GROUP;
                float *o = out + x0 * C;
#define PIXELS(M, R, K) \
    output_pixels(&work, ra, rb, rw, M, R, K, x0, count, C, Cp, softmax, accumulate, real, o)
                switch (shape) {  /* constant counts: each form unrolled on its own */
                case 0: PIXELS(1, 1, 1); break;
                case 1: PIXELS(1, 1, 2); break;
                case 2: PIXELS(1, 2, 1); break;
                case 3: PIXELS(1, 2, 2); break;
                case 4: PIXELS(2, 1, 1); break;
                case 5: PIXELS(2, 1, 2); break;
                case 6: PIXELS(2, 2, 1); break;
                default: PIXELS(2, 2, 2);
                }
#undef PIXELS
            }
        }
    }
}

/* dst = the bilinear resize of planar images: `planes` planes of h x w (contiguous) to H x W,
   output rows [y_begin, y_end) of every plane: the two source rows blended, then the two
   columns. */
CLONES
void resize_planes(const float *src, long planes, long h, long w, float *dst, long H, long W,
                   long y_begin, long y_end, int corners, void *memory) {
    Work work = carve(memory, 1, w, W, 1, corners);  /* the edge copies are not used */
    for (long p = 0; p < planes; p++) {
        for (long y = y_begin; y < y_end; y++) {
            long r0, r1;
            float ly0, ly1;
            taps(h, H, corners, y, &r0, &r1, &ly0, &ly1);
            const float *p0 = src + (p * h + r0) * w, *p1 = src + (p * h + r1) * w;
            for (long x = 0; x < w; x++) work.row[x] = ly0 * p0[x] + ly1 * p1[x];
            float *out = dst + (p * H + y) * W;
            for (long x = 0; x < W; x++)
                out[x] = work.weight0[x] * work.row[work.col0[x]]
                       + work.weight1[x] * work.row[work.col1[x]];
        }
    }
}

/* out = a + mirror(b) for the rows [y_begin, y_end) of every image: a and b batch x h x w x C
   maps with the classes contiguous and element strides s_n, s_y, s_x; out packed
   (batch x h x w x C). */
CLONES
void sum_mirrored(const float *a, const float *b, long C, long h, long w, long s_n, long s_y,
                  long s_x, float *out, long batch, long y_begin, long y_end) {
    for (long n = 0; n < batch; n++)
        for (long y = y_begin; y < y_end; y++) {
            const float *ra = a + n * s_n + y * s_y, *rb = b + n * s_n + y * s_y;
            float *o = out + (n * h + y) * w * C;
            for (long x = 0; x < w; x++)
                for (long k = 0; k < C; k++)
                    o[x * C + k] = ra[x * s_x + k] + rb[(w - 1 - x) * s_x + k];
        }
}
"""


def _declare(library: ctypes.CDLL) -> None:
    p, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_float
    library.work_bytes.argtypes = [i64, i64, i64, i64]
    library.work_bytes.restype = i64
    library.accumulate_scores.argtypes = [p, p, i64, i64, i64, i64, i64, i64, i64, i64, f32, p,
                                          i64, i64, i64, i64, i64, i32, i32, i32, p]
    library.accumulate_scores.restype = None
    library.resize_planes.argtypes = [p, i64, i64, i64, p, i64, i64, i64, i64, i32, p]
    library.resize_planes.restype = None
    library.sum_mirrored.argtypes = [p, p, i64, i64, i64, i64, i64, i64, p, i64, i64, i64]
    library.sum_mirrored.restype = None


LIBRARY = NativeLibrary("inference_scores", _SOURCE, _declare,
                        flags=("-O3", "-std=c99", "-fno-trapping-math", "-ffp-contract=fast"),
                        purpose="test-time inference kernel")

def _rows_in_parallel(call: Callable[[int, int], None], rows: int) -> None:
    """``call(first, end)`` over the output rows, split among ``torch.get_num_threads()``
    threads, as PyTorch's own operators would use them."""
    run_in_spans(call, rows, torch.get_num_threads(), min_span=16)


def _readable(m: torch.Tensor | None) -> int:
    """Floats readable from ``m``'s first element to the end of its storage."""
    return 0 if m is None else m.untyped_storage().nbytes() // m.element_size() - m.storage_offset()


def _usable(*maps: torch.Tensor | None) -> bool:
    return all(m is None or (m.device.type == "cpu" and m.dtype == torch.float32 and m.ndim == 4
                             and m.numel() > 0) for m in maps)


def accumulate_scores(total: torch.Tensor | None, plain: torch.Tensor | None,
                      mirrored: torch.Tensor | None, size: tuple[int, int], corners: bool,
                      softmax: bool) -> torch.Tensor | None:
    """``total + post(resize(merge))`` (``total`` updated in place, or a new N x C x H x W
    channels-last tensor when None), where merge is ``plain``, the mirror image of
    ``mirrored``, or the mean of ``plain`` and the mirror image of ``mirrored`` (N x C x h x w
    float32 maps on the CPU), resize is bilinear to ``size`` (``corners``: corners aligned, else
    half-pixel centres) and post is the softmax over the classes when ``softmax``. None where
    the compiled form does not apply (no compiler, another device or dtype): the caller runs
    the PyTorch form."""
    library = LIBRARY.get()
    maps = [m for m in (plain, mirrored) if m is not None]
    if library is None or not maps or not _usable(total, *maps) or \
            any(m.shape != maps[0].shape for m in maps):
        return None
    if any(m.stride(1) != 1 or m.stride() != maps[0].stride() for m in maps):
        # the kernel reads each pixel's classes as one run, with the same strides in both maps
        plain, mirrored = (None if m is None else m.contiguous(memory_format=torch.channels_last)
                           for m in (plain, mirrored))
    first = plain if plain is not None else mirrored
    n, classes, h, w = first.shape
    height, width = size
    accumulate = total is not None
    if total is None:
        total = torch.empty((n, classes, height, width), dtype=torch.float32,
                            memory_format=torch.channels_last)
    elif total.shape != (n, classes, height, width) or total.stride(1) != 1 or \
            not total.is_contiguous(memory_format=torch.channels_last):
        return None
    weight = 0.5 if plain is not None and mirrored is not None else 1.0
    if weight == 0.5 and h * w < height * width:
        # enlarging: the two maps are summed at their smaller size first, so that each output
        # pixel reads four source pixels instead of eight
        summed = torch.empty((n, classes, h, w), dtype=torch.float32,
                             memory_format=torch.channels_last)
        s_n, _, s_y, s_x = first.stride()
        _rows_in_parallel(lambda first_row, end_row: library.sum_mirrored(
            plain.data_ptr(), mirrored.data_ptr(), classes, h, w, s_n, s_y, s_x,
            summed.data_ptr(), n, first_row, end_row), h)
        plain, mirrored, first = summed, None, summed
    s_n, _, s_y, s_x = first.stride()
    work_bytes = library.work_bytes(classes, w, width, s_x)

    def rows(first_row: int, end_row: int) -> None:
        work = np.empty(work_bytes, np.uint8)
        library.accumulate_scores(
            plain.data_ptr() if plain is not None else None,
            mirrored.data_ptr() if mirrored is not None else None,
            classes, h, w, s_n, s_y, s_x, _readable(plain), _readable(mirrored), weight,
            total.data_ptr(), height, width, n,
            first_row, end_row, int(corners), int(softmax), int(accumulate), work.ctypes.data)

    _rows_in_parallel(rows, height)
    return total


def resize_planes(images: torch.Tensor, size: tuple[int, int],
                  corners: bool) -> torch.Tensor | None:
    """The bilinear resize of N x C x h x w float32 CPU ``images`` (contiguous) to ``size``,
    as ``F.interpolate(mode="bilinear")``; None where the compiled form does not apply."""
    library = LIBRARY.get()
    if library is None or not _usable(images) or not images.is_contiguous():
        return None
    n, channels, h, w = images.shape
    height, width = size
    out = torch.empty((n, channels, height, width), dtype=torch.float32)
    work_bytes = library.work_bytes(1, w, width, 1)

    def rows(first_row: int, end_row: int) -> None:
        work = np.empty(work_bytes, np.uint8)
        library.resize_planes(images.data_ptr(), n * channels, h, w, out.data_ptr(), height,
                              width, first_row, end_row, int(corners), work.ctypes.data)

    _rows_in_parallel(rows, height)
    return out
