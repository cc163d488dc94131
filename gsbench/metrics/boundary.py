"""Boundary F-score (Gated-SCNN Tables 2 and 4; the DAVIS boundary measure).

Definition (per class c and image, exactly as GSCNN's evaluation computes it):

* masks ``pred == c`` and ``gt == c``, with pixels whose GT is ignored set to 0 in both;
* boundary map of a mask: a pixel differs from its east, south or south-east neighbour (the
  last row compares with its east neighbour only, the last column with its south neighbour
  only, the bottom-right corner is never a boundary);
* a predicted boundary pixel matches if a GT boundary pixel lies in the digital disk
  x^2 + y^2 <= r^2 around it (and symmetrically for recall);
* P = matched predicted / predicted boundary pixels, R = matched GT / GT boundary pixels,
  F = 2PR / (P + R) (0 when P + R = 0); no boundary in either map: P = R = 1; only in the GT:
  P = 1, R = 0; only in the prediction: P = 0, R = 1;
* class score = mean of F over images, reported score = mean over classes.

Two conventions for the image mean: ``"gscnn"`` averages over every image (a class absent
from both maps scores F = 1), ``"strict"`` skips the images where the class is absent from
both (zeroed) masks, which stops rare classes from being inflated.

How it is computed fast and exactly: a pixel is a boundary of class c iff its label differs
from one of its three neighbours and c is one of the labels involved, so the boundaries of all
classes come from one pass over each label map, as a bit set of classes per boundary pixel.
The GT bit sets are put in an image; "is there a GT boundary of class c in the disk of radius r
around p" is the bitwise OR of that image over the disk, taken row by row (each disk row is a
horizontal run of length 2*floor(sqrt(r^2 - dy^2)) + 1) with a sparse table of run ORs, and
evaluated only at the predicted boundary pixels (about 5 % of the image). Radii are processed in
increasing order, after cheap passes at radii 0 and 1 where most pixels of a good prediction
match, and a pixel whose classes are all matched is not looked at again (disks are nested); a
class with no boundary pixel in the surrounding cells is dropped before any query. The
full-frame tables and masks are kept from one image to the next (:class:`BoundaryWorkspace`).
Where a C compiler is there, :func:`boundary_fscore` computes the same counts with the compiled
kernel of :mod:`gsbench.metrics.boundary_native` instead (2-3x faster); this vectorised form is
the fallback and the kernel's check.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from typing import NamedTuple

import cv2
import numpy as np

from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError
from gsbench.metrics import boundary_native
from gsbench.metrics._common import (
    ArrayState,
    as_label_map,
    check_num_classes,
    check_same_shape,
)

DEFAULT_RADII = (3, 5, 9, 12)
CONVENTIONS = ("gscnn", "strict")
#: Bit-set words by the number of classes they hold: the fewer classes bound a pixel in an image,
#: the narrower the word, and the less memory the full-frame tables of :class:`_DiskOr` move.
_WORDS = ((8, np.uint8), (16, np.uint16), (32, np.uint32))
#: Radii up to this run in the compiled form (:mod:`gsbench.metrics.boundary_native`) where it
#: is built; its bitmaps are padded by the largest radius, so larger radii (beyond what the
#: papers use) take the vectorised form.
NATIVE_MAX_RADIUS = 64


class ImageBoundaryScores(NamedTuple):
    """Boundary scores of one image: arrays of shape (num_classes, len(radii)) and (num_classes,)."""

    fscore: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    present: np.ndarray  # class present in the zeroed pred or GT mask (used by "strict")


def check_radii(radii: Iterable[int]) -> tuple[int, ...]:
    radii = tuple(radii)
    for radius in radii:
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
            raise GsbenchError(f"boundary radii must be non-negative integers (pixels), got {radii}")
    if len(set(radii)) != len(radii):
        raise GsbenchError(f"boundary radii must be distinct, got {radii}")
    return tuple(int(r) for r in radii)


def _boundary_sets(labels: np.ndarray, workspace: BoundaryWorkspace
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boundary pixels of a label map: rows, cols and the labels of the pixel and its E/S/SE.

    The edge rules of the definition: on the last row S = self and SE = E, on the last column
    E = self and SE = S, the corner has none (as if the last row and column were replicated).
    The comparisons run on the flat map (contiguous, so vectorised) into the workspace's
    buffers; the pairs that wrap from a row's end to the next row are then taken out.
    """
    height, width = labels.shape
    ravel = np.ascontiguousarray(labels).ravel()
    size = ravel.size
    differs, scratch = workspace.differs, workspace.scratch
    np.not_equal(ravel[:-1], ravel[1:], out=differs[:-1])  # east
    differs[width - 1 :: width] = False  # the last column has no east neighbour
    if height > 1:
        np.not_equal(ravel[:-width], ravel[width:], out=scratch[: size - width])  # south
        differs[: size - width] |= scratch[: size - width]
        if width > 1:
            south_east = scratch[: size - width - 1]
            np.not_equal(ravel[: -width - 1], ravel[width + 1 :], out=south_east)
            south_east[width - 1 :: width] = False  # last column: SE is S, counted already
            differs[: size - width - 1] |= south_east
    flat = np.flatnonzero(differs)
    rows, cols = np.divmod(flat, width)
    east = flat + (cols < width - 1)
    south = flat + width * (rows < height - 1)
    south_east = east + (south - flat)
    return rows, cols, np.stack([ravel[flat], ravel[east], ravel[south], ravel[south_east]])


def _class_blocks(label_sets: Iterable[np.ndarray], num_classes: int
                  ) -> list[tuple[np.ndarray, type]]:
    """The classes that bound some pixel of the given boundary sets, in blocks of one bit-set
    word each, with the word's type: one uint8 or uint16 word when 8 or 16 classes suffice,
    else words of 32 bits. Classes that bound no pixel have no boundary in either map; their
    counts stay 0 without a pass."""
    # OpenCV's histogram of the uint8 labels: a third of np.bincount's time, which casts first
    counts = sum(cv2.calcHist([labels.reshape(1, -1)], [0], None, [256], [0, 256]).ravel()
                 for labels in label_sets)
    classes = np.flatnonzero(counts[:num_classes])
    for bits, dtype in _WORDS:
        if classes.size <= bits:
            return [(classes, dtype)] if classes.size else []
    bits, dtype = _WORDS[-1]
    return [(classes[i : i + bits], dtype) for i in range(0, classes.size, bits)]


def _class_bits(neighbour_labels: np.ndarray, classes: np.ndarray, dtype: type) -> np.ndarray:
    """Bit set (``dtype``) of the ``classes`` among the 4 labels at each boundary pixel: bit i
    stands for ``classes[i]``.

    If a pixel differs from any neighbour it is a boundary of its own class and of every
    neighbour class that differs from it; neighbours with the same label add the same bit.
    """
    lut = np.zeros(256, dtype)
    lut[classes] = np.left_shift(dtype(1), np.arange(classes.size, dtype=dtype))
    bits = lut[neighbour_labels[0]]
    for k in range(1, 4):
        bits |= lut[neighbour_labels[k]]
    return bits


_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.int64)


def _bit_counts(bits: np.ndarray, num_bits: int) -> np.ndarray:
    """Number of set bits per position 0..num_bits-1 over an array of unsigned bit sets."""
    width = bits.dtype.itemsize
    counts = np.zeros(8 * width, np.int64)
    if bits.size:
        # A histogram of each byte times the bit table of a byte: no (N, bits) temporary.
        little = bits.astype(bits.dtype.newbyteorder("<"), copy=False)
        as_bytes = little.view(np.uint8).reshape(-1, width)
        for byte in range(width):
            histogram = np.bincount(as_bytes[:, byte], minlength=256)
            counts[8 * byte : 8 * byte + 8] = histogram @ _BYTE_BITS
    return counts[:num_bits]


class _DiskOr:
    """OR of a padded bit image over digital disks, evaluated at chosen pixels (sparse table).

    The tables live in a :class:`BoundaryWorkspace` that is reused from image to image: its
    base level is all zeros between uses (only the scattered pixels are set, then cleared), so
    no full-frame buffer is allocated or cleared per image. The tables are read as words of
    the bits' type (the first elements of each uint32 buffer seen as uint8 or uint16).
    """

    def __init__(self, workspace: BoundaryWorkspace, rows, cols, bits) -> None:
        self.pad, self.width = workspace.pad, workspace.width
        size = workspace.levels[0].size
        self.levels = [level.view(bits.dtype)[:size] for level in workspace.levels]
        self.flat = (rows + self.pad) * self.width + (cols + self.pad)
        # The classes with a pixel in each cell (a power of two not below max_radius) or in
        # one of its 8 neighbours: no disk around a pixel of the cell reaches further.
        self.shift = workspace.cell_shift
        height = size // workspace.width - 2 * workspace.pad
        grid_width = ((self.width - 2 * self.pad) >> self.shift) + 3
        grid = np.zeros(((height >> self.shift) + 3, grid_width), bits.dtype)
        np.bitwise_or.at(grid.ravel(), self._cells(rows, cols, grid_width), bits)
        near = grid.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:
                    near[1:-1, 1:-1] |= grid[1 + dy:grid.shape[0] - 1 + dy,
                                             1 + dx:grid_width - 1 + dx]
        self.near, self.grid_width = near.ravel(), grid_width
        base = self.levels[0]
        base[self.flat] = bits
        # levels[k][i] = OR of base[i : i + 2**k] (within the flat, padded image)
        span = 1
        for k in range(1, len(self.levels)):
            previous, level = self.levels[k - 1], self.levels[k]
            np.bitwise_or(previous[:-span], previous[span:], out=level[:-span])
            level[-span:] = previous[-span:]
            span *= 2

    def release(self) -> None:
        """Clear the scattered pixels, leaving the base level all zeros for the next image."""
        self.levels[0][self.flat] = 0

    def _cells(self, rows: np.ndarray, cols: np.ndarray, grid_width: int) -> np.ndarray:
        return ((rows >> self.shift) + 1) * grid_width + (cols >> self.shift) + 1

    def reachable(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The classes that have a pixel within ``max_radius`` of each pixel, or more (a
        superset, from the cells): classes outside it can be dropped before any query."""
        return self.near[self._cells(rows, cols, self.grid_width)]

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Flat indices of pixels in the padded image (what :meth:`query` takes)."""
        return (rows + self.pad) * self.width + (cols + self.pad)

    def query(self, centre: np.ndarray, radius: int) -> np.ndarray:
        """OR of the bits in the disk of ``radius`` around each pixel of :meth:`centres`: per
        disk row two lookups of the sparse table (one where the run is a power of two)."""
        result = np.zeros(centre.shape, self.levels[0].dtype)
        gathered = np.empty_like(result)
        start = np.empty_like(centre)
        for dy in range(-radius, radius + 1):
            half = math.isqrt(radius * radius - dy * dy)
            run = 2 * half + 1
            k = run.bit_length() - 1
            level = self.levels[k]
            np.add(centre, dy * self.width - half, out=start)
            np.take(level, start, out=gathered)
            result |= gathered
            if run != 1 << k:
                start += run - (1 << k)
                np.take(level, start, out=gathered)
                result |= gathered
        return result


class BoundaryWorkspace:
    """The full-frame buffers of one image size and largest radius, kept from image to image
    (allocating tens of MB per image costs more than the work done in them): the sparse tables
    of :class:`_DiskOr` and the masks of :func:`_boundary_sets`."""

    def __init__(self, height: int, width: int, max_radius: int) -> None:
        self.key = (height, width, max_radius)
        self.pad = max_radius
        self.width = width + 2 * max_radius
        size = (height + 2 * max_radius) * self.width
        levels = max(1, (2 * max_radius + 1).bit_length())  # runs up to 2 * max_radius + 1
        self.levels = [np.zeros(size, np.uint32) for _ in range(levels)]
        self.cell_shift = max(max_radius - 1, 0).bit_length()  # 2**shift >= max_radius
        self.differs = np.zeros(height * width, bool)
        self.scratch = np.zeros(height * width, bool)
        self.zeroed = np.zeros((height, width), np.uint8)


_WORKSPACES = threading.local()


def _workspace(height: int, width: int, max_radius: int, kind: type):
    """This thread's workspace of ``kind`` for the size, the last one kept (images of a split
    share one size, so one workspace serves a whole evaluation)."""
    kept = getattr(_WORKSPACES, "last", None)
    if not isinstance(kept, kind) or kept.key != (height, width, max_radius):
        kept = _WORKSPACES.last = None  # free the old tables before allocating the new
        kept = _WORKSPACES.last = kind(height, width, max_radius)
    return kept


def _matched_counts(query_rows, query_cols, query_bits, target: _DiskOr, radii, num_bits):
    """Per sorted radius, per class: how many query boundary pixels have a target boundary of
    the same class within the disk.

    Disks are nested, so a pixel whose classes are all matched at one radius is matched at
    every larger one and is not looked at again; radii 0 and 1, where most pixels of a good
    prediction are matched, are tried first when smaller than the radii asked for. A class
    with no target pixel near a pixel (:meth:`_DiskOr.reachable`) is never matched there and
    is not asked for."""
    counts = np.zeros((len(radii), num_bits), np.int64)
    carried = np.zeros(num_bits, np.int64)  # pixels fully matched at a smaller radius
    centre = target.centres(query_rows, query_cols)
    need = query_bits & target.reachable(query_rows, query_cols)
    steps = [(radius, None) for radius in (0, 1) if radius < radii[0]] + list(
        zip(radii, range(len(radii))))
    for radius, i in steps:
        matched = target.query(centre, radius) & need
        if i is not None:
            counts[i] = carried + _bit_counts(matched, num_bits)
        done = matched == need
        carried += _bit_counts(need[done], num_bits)
        keep = ~done
        centre, need = centre[keep], need[keep]
    return counts


def _fscore_from_counts(n_pred, n_gt, matched_pred, matched_gt):
    """P, R, F arrays (classes x radii) with the empty cases of the definition."""
    n_pred = n_pred[:, None].astype(np.float64)
    n_gt = n_gt[:, None].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_pred > 0, matched_pred / n_pred, 1.0)
        recall = np.where(n_gt > 0, matched_gt / n_gt, 1.0)
    # Only one map has boundaries: the other one's score is 0 (P=1,R=0 or P=0,R=1).
    precision = np.where((n_pred > 0) & (n_gt == 0), 0.0, precision)
    recall = np.where((n_gt > 0) & (n_pred == 0), 0.0, recall)
    total = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        fscore = np.where(total > 0, 2 * precision * recall / total, 0.0)
    return fscore, precision, recall


def boundary_fscore(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    radii: Iterable[int] = DEFAULT_RADII,
    ignore_index: int = IGNORE_INDEX,
) -> ImageBoundaryScores:
    """Boundary precision, recall and F of every class at every radius for one image."""
    check_num_classes(num_classes, ignore_index)
    radii = check_radii(radii)
    pred = as_label_map(pred, "prediction")
    gt = as_label_map(gt, "ground truth")
    check_same_shape(pred, gt)
    shape = (num_classes, len(radii))
    if not radii:
        empty = np.zeros(shape)
        return ImageBoundaryScores(empty, empty.copy(), empty.copy(), np.zeros(num_classes, bool))
    height, width = gt.shape
    order = np.argsort(radii, kind="stable")
    # A disk as wide as the image's diagonal reaches every pixel: larger radii score the same,
    # so their tables are those of the diagonal (bounded by the image, whatever is asked).
    reach = math.isqrt((height - 1) ** 2 + (width - 1) ** 2) + 1
    sorted_radii = [min(radii[i], reach) for i in order]
    max_radius = sorted_radii[-1]
    library = boundary_native.LIBRARY.get() if max_radius <= NATIVE_MAX_RADIUS else None
    if library is not None:
        workspace = _workspace(height, width, max_radius, boundary_native.NativeWorkspace)
        n_pred, n_gt, matched_sorted_pred, matched_sorted_gt = boundary_native.native_counts(
            library, workspace, pred, gt, ignore_index, num_classes, sorted_radii)
        matched_pred = np.zeros(shape, np.int64)
        matched_gt = np.zeros(shape, np.int64)
        matched_pred[:, order], matched_gt[:, order] = matched_sorted_pred, matched_sorted_gt
        corner_pred = 255 if gt[0, 0] == ignore_index else pred[0, 0]
        return _image_scores(n_pred, n_gt, matched_pred, matched_gt, corner_pred, gt[0, 0])
    workspace = _workspace(height, width, max_radius, BoundaryWorkspace)
    # Zero the ignored pixels in the prediction masks: 255 is never a class (the GT's ignore
    # index is not one either, so the GT masks need nothing).
    np.copyto(workspace.zeroed, pred)
    pred = workspace.zeroed
    np.putmask(pred, gt == ignore_index, np.uint8(255))
    pred_rows, pred_cols, pred_labels = _boundary_sets(pred, workspace)
    gt_rows, gt_cols, gt_labels = _boundary_sets(gt, workspace)

    n_pred = np.zeros(num_classes, np.int64)
    n_gt = np.zeros(num_classes, np.int64)
    matched_pred = np.zeros((num_classes, len(radii)), np.int64)
    matched_gt = np.zeros((num_classes, len(radii)), np.int64)
    for block, dtype in _class_blocks((pred_labels, gt_labels), num_classes):
        num_bits = block.size
        p_bits = _class_bits(pred_labels, block, dtype)
        g_bits = _class_bits(gt_labels, block, dtype)
        p_keep, g_keep = p_bits != 0, g_bits != 0
        p_rows, p_cols, p_bits = pred_rows[p_keep], pred_cols[p_keep], p_bits[p_keep]
        g_rows, g_cols, g_bits = gt_rows[g_keep], gt_cols[g_keep], g_bits[g_keep]
        n_pred[block] = _bit_counts(p_bits, num_bits)
        n_gt[block] = _bit_counts(g_bits, num_bits)
        gt_disks = _DiskOr(workspace, g_rows, g_cols, g_bits)
        block_radii = np.ix_(block, order)
        matched_pred[block_radii] = _matched_counts(p_rows, p_cols, p_bits, gt_disks, sorted_radii, num_bits).T
        gt_disks.release()
        pred_disks = _DiskOr(workspace, p_rows, p_cols, p_bits)
        matched_gt[block_radii] = _matched_counts(g_rows, g_cols, g_bits, pred_disks, sorted_radii, num_bits).T
        pred_disks.release()

    return _image_scores(n_pred, n_gt, matched_pred, matched_gt, pred[0, 0], gt[0, 0])


def _image_scores(n_pred, n_gt, matched_pred, matched_gt, corner_pred, corner_gt
                  ) -> ImageBoundaryScores:
    """The scores from the counts; ``corner_*``: the first pixel of the (zeroed) maps."""
    fscore, precision, recall = _fscore_from_counts(n_pred, n_gt, matched_pred, matched_gt)
    # A mask without boundary pixels is constant, so it is present iff its first pixel is set.
    classes = np.arange(n_pred.size)
    present = (n_pred > 0) | (n_gt > 0) | (classes == corner_pred) | (classes == corner_gt)
    return ImageBoundaryScores(fscore, precision, recall, present)


class BoundaryFScore(ArrayState):
    """Accumulator of per-image boundary F: sums of F and image counts for both conventions.

    State (all summable, so ``merge`` and ``all_reduce`` are additions): ``fscore_sum`` and
    ``images`` over every image ("gscnn"), ``fscore_sum_present`` and ``images_present`` over
    the images where the class is present in the prediction or the GT ("strict").
    """

    def __init__(
        self,
        num_classes: int,
        radii: Iterable[int] = DEFAULT_RADII,
        convention: str = "gscnn",
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        check_num_classes(num_classes, ignore_index)
        if convention not in CONVENTIONS:
            raise GsbenchError(f"fscore convention must be one of {CONVENTIONS}, got '{convention}'")
        self.num_classes = int(num_classes)
        self.radii = check_radii(radii)
        self.convention = convention
        self.ignore_index = int(ignore_index)
        shape = (self.num_classes, len(self.radii))
        self._state = {
            "fscore_sum": np.zeros(shape, np.float64),
            "images": np.zeros((), np.int64),
            "fscore_sum_present": np.zeros(shape, np.float64),
            "images_present": np.zeros(self.num_classes, np.int64),
        }

    def update(self, pred: np.ndarray, gt: np.ndarray) -> ImageBoundaryScores:
        scores = boundary_fscore(pred, gt, self.num_classes, self.radii, self.ignore_index)
        self._state["fscore_sum"] += scores.fscore
        self._state["images"] += 1
        self._state["fscore_sum_present"] += np.where(scores.present[:, None], scores.fscore, 0.0)
        self._state["images_present"] += scores.present
        return scores

    def merge(self, other: BoundaryFScore) -> None:
        if (other.num_classes, other.radii) != (self.num_classes, self.radii):
            raise GsbenchError(
                f"cannot merge boundary F over {other.num_classes} classes, radii {other.radii} "
                f"into one over {self.num_classes} classes, radii {self.radii}"
            )
        for key, value in other._state.items():
            self._state[key] += value

    def per_class(self, convention: str | None = None) -> np.ndarray:
        """Class scores (mean F over images), shape (num_classes, len(radii)); nan if no image."""
        convention = convention or self.convention
        if convention not in CONVENTIONS:
            raise GsbenchError(f"fscore convention must be one of {CONVENTIONS}, got '{convention}'")
        if convention == "gscnn":
            total, count = self._state["fscore_sum"], np.broadcast_to(self._state["images"], (self.num_classes,))
        else:
            total, count = self._state["fscore_sum_present"], self._state["images_present"]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], np.nan)

    def compute(self, convention: str | None = None) -> dict[str, object]:
        """``per_class`` (classes x radii) and ``mean`` (per radius, nanmean over classes)."""
        per_class = self.per_class(convention)
        valid = ~np.isnan(per_class)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(valid.any(axis=0), np.nansum(per_class, axis=0) / valid.sum(axis=0), np.nan)
        return {"per_class": per_class, "mean": mean, "radii": self.radii}


def boundary_match_maps(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    radius: int,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """Where :func:`boundary_fscore` finds its matches at one radius, pixel by pixel (for
    pictures): ``(gt_state, pred_state)``, two HxW int8 maps with 1 at a boundary pixel matched
    within the disk of ``radius`` in every class it bounds, -1 at one that is not (a missed GT
    boundary pixel; a false predicted one), 0 elsewhere. Same boundaries, void handling and
    disks as :func:`boundary_fscore`."""
    check_num_classes(num_classes, ignore_index)
    (radius,) = check_radii([radius])
    pred = as_label_map(pred, "prediction")
    gt = as_label_map(gt, "ground truth")
    check_same_shape(pred, gt)
    height, width = gt.shape
    workspace = BoundaryWorkspace(height, width, radius)  # not the shared one of the scores
    pred = np.where(gt == ignore_index, np.uint8(255), pred)
    sets = (_boundary_sets(gt, workspace), _boundary_sets(pred, workspace))
    states = []
    for (rows, cols, labels), (t_rows, t_cols, t_labels) in (sets, sets[::-1]):
        bounds = np.zeros(len(rows), bool)
        missed = np.zeros(len(rows), bool)
        for block, dtype in _class_blocks((labels, t_labels), num_classes):
            bits = _class_bits(labels, block, dtype)
            disks = _DiskOr(workspace, t_rows, t_cols, _class_bits(t_labels, block, dtype))
            bounds |= bits != 0
            missed |= (disks.query(disks.centres(rows, cols), radius) & bits) != bits
            disks.release()
        state = np.zeros((height, width), np.int8)
        state[rows[bounds], cols[bounds]] = np.where(missed[bounds], -1, 1)
        states.append(state)
    return states[0], states[1]
