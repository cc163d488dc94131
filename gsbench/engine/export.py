"""Cityscapes test-server export: predicted trainIds -> labelId PNGs with the official names.

The server (and ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``) matches a
result to its image by the pattern ``{city}_{seq}_{frame}*.png`` anywhere under the submitted
folder, and reads labelIds (0..33). gsbench writes one flat folder of
``{city}_{seq}_{frame}_leftImg8bit.png`` files (the name of the input image, as mmsegmentation's
``format_results`` does); zip that folder's contents to submit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from gsbench.data.cityscapes import CITYSCAPES_NUM_CLASSES, CITYSCAPES_TRAIN_TO_LABEL
from gsbench.errors import GsbenchError
from gsbench.io import write_png

#: Suffix the result files carry after the ``{city}_{seq}_{frame}`` stem.
CITYSCAPES_RESULT_SUFFIX = "_leftImg8bit.png"
#: Export formats understood by ``gsbench eval --export``.
EXPORT_FORMATS = ("cityscapes",)

_CITYSCAPES_STEM = re.compile(r"^[A-Za-z-]+_\d{6}_\d{6}$")


def cityscapes_result_name(stem: str) -> str:
    """File name of the result for image ``stem`` (``{city}_{seq}_{frame}``)."""
    if not _CITYSCAPES_STEM.match(stem):
        raise GsbenchError(
            f"image stem {stem!r}: not a Cityscapes name {{city}}_{{seq:06}}_{{frame:06}}, "
            "so the test server could not match its result"
        )
    return stem + CITYSCAPES_RESULT_SUFFIX


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Map a uint8 trainId map (0..18, 255 = ignore -> labelId 0) to Cityscapes labelIds."""
    if train_ids.dtype != np.uint8:
        raise GsbenchError(f"trainId map must be uint8, got {train_ids.dtype}")
    bad = (train_ids >= CITYSCAPES_NUM_CLASSES) & (train_ids != 255)
    if bad.any():
        raise GsbenchError(
            f"trainId map holds {int(train_ids[bad][0])}: Cityscapes has trainIds "
            f"0..{CITYSCAPES_NUM_CLASSES - 1} and 255"
        )
    return CITYSCAPES_TRAIN_TO_LABEL[train_ids]


def write_cityscapes_result(out_dir: str | os.PathLike, stem: str, train_ids: np.ndarray) -> Path:
    """Atomically write the labelId PNG of one image into ``out_dir``; returns its path."""
    path = Path(out_dir) / cityscapes_result_name(stem)
    write_png(path, train_ids_to_label_ids(train_ids))
    return path
