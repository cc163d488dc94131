"""Label tables of the datasets gsbench knows.

Inside gsbench labels are trainIds in uint8 with 255 = ignore; labelIds (Cityscapes) and raw
ADE20K indices appear only at the edges (prepare-data, export). The Cityscapes table below is
the official one (``cityscapesscripts.helpers.labels``); ``tests/test_labels.py`` checks it
against that package.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

IGNORE_INDEX = 255


class CityscapesLabel(NamedTuple):
    name: str
    id: int
    train_id: int
    category: str
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


# fmt: off
CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled",             0, 255, "void",         False, True,  (0, 0, 0)),
    CityscapesLabel("ego vehicle",           1, 255, "void",         False, True,  (0, 0, 0)),
    CityscapesLabel("rectification border",  2, 255, "void",         False, True,  (0, 0, 0)),
    CityscapesLabel("out of roi",            3, 255, "void",         False, True,  (0, 0, 0)),
    CityscapesLabel("static",                4, 255, "void",         False, True,  (0, 0, 0)),
    CityscapesLabel("dynamic",               5, 255, "void",         False, True,  (111, 74, 0)),
    CityscapesLabel("ground",                6, 255, "void",         False, True,  (81, 0, 81)),
    CityscapesLabel("road",                  7,   0, "flat",         False, False, (128, 64, 128)),
    CityscapesLabel("sidewalk",              8,   1, "flat",         False, False, (244, 35, 232)),
    CityscapesLabel("parking",               9, 255, "flat",         False, True,  (250, 170, 160)),
    CityscapesLabel("rail track",           10, 255, "flat",         False, True,  (230, 150, 140)),
    CityscapesLabel("building",             11,   2, "construction", False, False, (70, 70, 70)),
    CityscapesLabel("wall",                 12,   3, "construction", False, False, (102, 102, 156)),
    CityscapesLabel("fence",                13,   4, "construction", False, False, (190, 153, 153)),
    CityscapesLabel("guard rail",           14, 255, "construction", False, True,  (180, 165, 180)),
    CityscapesLabel("bridge",               15, 255, "construction", False, True,  (150, 100, 100)),
    CityscapesLabel("tunnel",               16, 255, "construction", False, True,  (150, 120, 90)),
    CityscapesLabel("pole",                 17,   5, "object",       False, False, (153, 153, 153)),
    CityscapesLabel("polegroup",            18, 255, "object",       False, True,  (153, 153, 153)),
    CityscapesLabel("traffic light",        19,   6, "object",       False, False, (250, 170, 30)),
    CityscapesLabel("traffic sign",         20,   7, "object",       False, False, (220, 220, 0)),
    CityscapesLabel("vegetation",           21,   8, "nature",       False, False, (107, 142, 35)),
    CityscapesLabel("terrain",              22,   9, "nature",       False, False, (152, 251, 152)),
    CityscapesLabel("sky",                  23,  10, "sky",          False, False, (70, 130, 180)),
    CityscapesLabel("person",               24,  11, "human",        True,  False, (220, 20, 60)),
    CityscapesLabel("rider",                25,  12, "human",        True,  False, (255, 0, 0)),
    CityscapesLabel("car",                  26,  13, "vehicle",      True,  False, (0, 0, 142)),
    CityscapesLabel("truck",                27,  14, "vehicle",      True,  False, (0, 0, 70)),
    CityscapesLabel("bus",                  28,  15, "vehicle",      True,  False, (0, 60, 100)),
    CityscapesLabel("caravan",              29, 255, "vehicle",      True,  True,  (0, 0, 90)),
    CityscapesLabel("trailer",              30, 255, "vehicle",      True,  True,  (0, 0, 110)),
    CityscapesLabel("train",                31,  16, "vehicle",      True,  False, (0, 80, 100)),
    CityscapesLabel("motorcycle",           32,  17, "vehicle",      True,  False, (0, 0, 230)),
    CityscapesLabel("bicycle",              33,  18, "vehicle",      True,  False, (119, 11, 32)),
    CityscapesLabel("license plate",        -1,  -1, "vehicle",      False, True,  (0, 0, 142)),
)
# fmt: on

CITYSCAPES_NUM_CLASSES = 19
CITYSCAPES_CLASS_NAMES: tuple[str, ...] = tuple(
    label.name for label in sorted(
        (lab for lab in CITYSCAPES_LABELS if 0 <= lab.train_id < 255), key=lambda lab: lab.train_id
    )
)
CITYSCAPES_LABEL_BY_NAME = {label.name: label for label in CITYSCAPES_LABELS}


def _label_to_train_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in CITYSCAPES_LABELS:
        if label.id >= 0 and 0 <= label.train_id < 255:
            lut[label.id] = label.train_id
    return lut


def _train_to_label_lut() -> np.ndarray:
    # trainId 255 (ignore) exports as labelId 0 ("unlabeled"), as the official scripts expect.
    lut = np.zeros(256, dtype=np.uint8)
    for label in CITYSCAPES_LABELS:
        if 0 <= label.train_id < 255:
            lut[label.train_id] = label.id
    return lut


#: labelId -> trainId lookup table (uint8, 256 entries; unknown ids map to 255).
CITYSCAPES_LABEL_TO_TRAIN = _label_to_train_lut()
#: trainId -> labelId lookup table (uint8, 256 entries; 255 and unknown ids map to 0).
CITYSCAPES_TRAIN_TO_LABEL = _train_to_label_lut()
#: trainId -> RGB colour (19 x 3, uint8), for colour visualisations.
CITYSCAPES_PALETTE = np.array(
    [CITYSCAPES_LABEL_BY_NAME[name].color for name in CITYSCAPES_CLASS_NAMES], dtype=np.uint8
)
#: trainIds of the classes that have instances and are evaluated (iIoU classes).
CITYSCAPES_INSTANCE_TRAIN_IDS: tuple[int, ...] = tuple(
    label.train_id for label in CITYSCAPES_LABELS
    if label.has_instances and not label.ignore_in_eval
)
