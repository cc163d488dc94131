"""Cityscapes instance-level IoU (iIoU), as ``evalPixelLevelSemanticLabeling`` computes it.

iIoU_c = iTP_c / (iTP_c + FP_c + iFN_c) (Cordts et al., Cityscapes, Sec. 3.2): every GT instance
of class c (an instanceIds value ``labelId * 1000 + k`` greater than 1000) weighs its true
positive and false negative pixels by ``avg_class_size[c] / instance_size``, so large instances
do not dominate; false positives are not weighted and come from the confusion matrix (pixels
predicted as c whose GT is another evaluated class). The mean over the 8 instance classes
ignores classes whose denominator is 0, like mIoU.
"""

from __future__ import annotations

import ctypes

import numpy as np

from gsbench.data.cityscapes import (
    CITYSCAPES_INSTANCE_TRAIN_IDS,
    CITYSCAPES_LABELS,
    CITYSCAPES_NUM_CLASSES,
)
from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError
from gsbench.metrics._common import (
    ArrayState,
    as_label_map,
    check_same_shape,
)
from gsbench.metrics.confusion import confusion_matrix
from gsbench.native import NativeLibrary

#: Average instance size in pixels per class, the weights of the official evaluator
#: (``args.avgClassSize`` in cityscapesscripts; caravan and trailer are not evaluated).
CITYSCAPES_AVG_CLASS_SIZE: dict[str, float] = {
    "bicycle": 4672.3249222261,
    "caravan": 36771.8241758242,
    "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "car": 12794.0202738185,
    "person": 3462.4756337644,
    "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}

_INSTANCE_ID_DIVISOR = 1000
_MAX_LABEL_ID = max(label.id for label in CITYSCAPES_LABELS)


def _instance_tables() -> tuple[np.ndarray, np.ndarray]:
    """labelId -> index into CITYSCAPES_INSTANCE_TRAIN_IDS (-1 if not an iIoU class), and weights."""
    slot = np.full(_MAX_LABEL_ID + 1, -1, np.int64)
    weight = np.zeros(_MAX_LABEL_ID + 1, np.float64)
    for label in CITYSCAPES_LABELS:
        if label.id >= 0 and label.train_id in CITYSCAPES_INSTANCE_TRAIN_IDS:
            slot[label.id] = CITYSCAPES_INSTANCE_TRAIN_IDS.index(label.train_id)
            weight[label.id] = CITYSCAPES_AVG_CLASS_SIZE[label.name]
    return slot, weight


_SLOT_OF_LABEL_ID, _AVG_SIZE_OF_LABEL_ID = _instance_tables()
_MAX_INSTANCE_ID = (_MAX_LABEL_ID + 1) * _INSTANCE_ID_DIVISOR - 1
#: instanceId -> trainId of its class if the class has iIoU, else 255 (a table over every id)
_TRAIN_ID_OF_INSTANCE_ID = np.where(
    _SLOT_OF_LABEL_ID >= 0,
    np.array(CITYSCAPES_INSTANCE_TRAIN_IDS + (IGNORE_INDEX,), np.uint8)[_SLOT_OF_LABEL_ID],
    np.uint8(IGNORE_INDEX)).repeat(_INSTANCE_ID_DIVISOR)


_COUNTS_SOURCE = r"""
#include <stdint.h>

/* Pixels and correctly predicted pixels of every instance id above `floor` and up to max_id
   (tables of max_id + 1 entries): pred[p] == train_of[id] is a hit. Returns the largest id
   above max_id seen (0 if none; those pixels are not counted). */
int64_t instance_counts(const uint16_t *ids, const uint8_t *pred, int64_t n, int floor,
                        int max_id, const uint8_t *train_of, int64_t *size, int64_t *hits) {
    int64_t beyond = 0;
    for (int64_t p = 0; p < n; p++) {
        int id = ids[p];
        if (id <= floor) continue;
        if (id > max_id) { if (id > beyond) beyond = id; continue; }
        size[id]++;
        hits[id] += pred[p] == train_of[id];
    }
    return beyond;
}
"""


def _declare(library: ctypes.CDLL) -> None:
    p = ctypes.c_void_p
    library.instance_counts.argtypes = [p, p, ctypes.c_int64, ctypes.c_int, ctypes.c_int, p, p, p]
    library.instance_counts.restype = ctypes.c_int64


_COUNTS = NativeLibrary("instance_counts", _COUNTS_SOURCE, _declare, purpose="iIoU pixel counts")


def _instance_pixel_counts(pred: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per instance id (ids above 1000): its pixels and those predicted as its class (a table
    indexed by id), or None when the image has no instance pixel. One pass of a compiled loop
    over uint16 ids (what instanceIds PNGs decode to) where it is built, else only the instance
    pixels (a few per cent of a street scene) through NumPy."""
    library = _COUNTS.get() if ids.dtype == np.uint16 else None
    if library is not None:
        size = np.zeros(_MAX_INSTANCE_ID + 1, np.int64)
        tp = np.zeros(_MAX_INSTANCE_ID + 1, np.int64)
        pred, ids = np.ascontiguousarray(pred), np.ascontiguousarray(ids)
        beyond = library.instance_counts(ids.ctypes.data, pred.ctypes.data, ids.size,
                                         _INSTANCE_ID_DIVISOR, _MAX_INSTANCE_ID,
                                         _TRAIN_ID_OF_INSTANCE_ID.ctypes.data, size.ctypes.data,
                                         tp.ctypes.data)
        if beyond:
            raise GsbenchError(f"instance map holds id {beyond}, whose labelId is not a Cityscapes label")
        return (size, tp) if size.any() else None
    where = np.flatnonzero(ids > _INSTANCE_ID_DIVISOR)
    if where.size == 0:
        return None
    ids = ids[where]
    if ids.max() > _MAX_INSTANCE_ID:
        raise GsbenchError(f"instance map holds id {int(ids.max())}, whose labelId is not a Cityscapes label")
    # trainId of each pixel's instance class from a table over all ids (no division per pixel);
    # ids of classes without iIoU (caravan, trailer) are dropped per instance by the caller.
    hits = pred[where] == _TRAIN_ID_OF_INSTANCE_ID[ids]
    # Per-instance pixel counts and hits via bincount over the id value (no sort needed).
    size = np.bincount(ids)
    return size, np.bincount(ids[hits], minlength=size.size)


def instance_weighted_counts(pred: np.ndarray, instance_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted TP and FN sums of one image for the 8 instance classes (order of
    ``CITYSCAPES_INSTANCE_TRAIN_IDS``); ``pred`` in trainIds, ``instance_ids`` raw instanceIds."""
    pred = as_label_map(pred, "prediction")
    instance_ids = np.asarray(instance_ids)
    if instance_ids.ndim != 2 or not np.issubdtype(instance_ids.dtype, np.integer):
        raise GsbenchError(
            f"instance map must be a 2-D integer array, got shape {instance_ids.shape}, dtype {instance_ids.dtype}"
        )
    if instance_ids.shape != pred.shape:
        raise GsbenchError(f"instance map shape {instance_ids.shape} does not match prediction shape {pred.shape}")
    num_slots = len(CITYSCAPES_INSTANCE_TRAIN_IDS)
    tp_weighted, fn_weighted = np.zeros(num_slots), np.zeros(num_slots)
    counts = _instance_pixel_counts(pred.ravel(), instance_ids.ravel())
    if counts is None:
        return tp_weighted, fn_weighted
    size, tp = counts
    present = np.flatnonzero(size)
    present = present[_SLOT_OF_LABEL_ID[present // _INSTANCE_ID_DIVISOR] >= 0]
    weight = _AVG_SIZE_OF_LABEL_ID[present // _INSTANCE_ID_DIVISOR] / size[present]
    instance_slot = _SLOT_OF_LABEL_ID[present // _INSTANCE_ID_DIVISOR]
    tp_weighted += np.bincount(instance_slot, weights=tp[present] * weight, minlength=num_slots)
    fn_weighted += np.bincount(instance_slot, weights=(size[present] - tp[present]) * weight, minlength=num_slots)
    return tp_weighted, fn_weighted


class InstanceIoU(ArrayState):
    """Accumulator of Cityscapes iIoU over images (19 trainId classes, 8 with instances)."""

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        self.ignore_index = int(ignore_index)
        slots = len(CITYSCAPES_INSTANCE_TRAIN_IDS)
        self._state = {
            "tp_weighted": np.zeros(slots, np.float64),
            "fn_weighted": np.zeros(slots, np.float64),
            "fp": np.zeros(slots, np.int64),
        }

    def update(
        self,
        pred: np.ndarray,
        gt: np.ndarray,
        instance_ids: np.ndarray,
        matrix: np.ndarray | None = None,
    ) -> None:
        """Add one image. ``matrix``: its (19, 20) confusion matrix if already computed."""
        pred = as_label_map(pred, "prediction")
        gt = as_label_map(gt, "ground truth")
        check_same_shape(pred, gt)
        if matrix is None:
            matrix = confusion_matrix(pred, gt, CITYSCAPES_NUM_CLASSES, self.ignore_index)
        tp_weighted, fn_weighted = instance_weighted_counts(pred, instance_ids)
        columns = matrix[:, :CITYSCAPES_NUM_CLASSES].sum(axis=0) - np.diagonal(matrix[:, :CITYSCAPES_NUM_CLASSES])
        self._state["tp_weighted"] += tp_weighted
        self._state["fn_weighted"] += fn_weighted
        self._state["fp"] += columns[list(CITYSCAPES_INSTANCE_TRAIN_IDS)]

    def merge(self, other: InstanceIoU) -> None:
        for key, value in other._state.items():
            self._state[key] += value

    def compute(self) -> dict[str, object]:
        """``per_class_iiou`` {trainId: fraction or nan} and ``iiou`` (nanmean)."""
        tp, fn, fp = self._state["tp_weighted"], self._state["fn_weighted"], self._state["fp"]
        denominator = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            iiou = np.where(denominator > 0, tp / denominator, np.nan)
        finite = iiou[~np.isnan(iiou)]
        return {
            "per_class_iiou": dict(zip(CITYSCAPES_INSTANCE_TRAIN_IDS, iiou.tolist())),
            "iiou": float(finite.mean()) if finite.size else float("nan"),
        }
