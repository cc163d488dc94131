"""COCO-Stuff 10k (cocostuff-10k-v1.1, Caesar et al. 2018) with the 171 classes of COCO-Stuff:
its description (:data:`COCO_STUFF10K`: classes, label table, ``.mat`` label reader) and the
reader of its raw layout, the input of ``prepare-data cocostuff10k``.

This is the dataset of GFF Table 9 ("10000 images ... 9000 images are for training and 1000
images for testing") and RANet Tables 4 and 6 ("9,000 training and 1,000 validation images"),
not the 164k set of :mod:`gsbench.data.cocostuff`. Accepted layout under ``ROOT``:

    images/COCO_{train,val}2014_{12 digits}.jpg
    annotations/<same stem>.mat          MATLAB v5: ``S`` the label map (uint8 or uint16),
                                         0 = unlabeled, 1..182 the COCO-Stuff ids; ``names``...
    imageLists/train.txt                 9,000 stems, one per line
    imageLists/test.txt                  1,000 stems

or the official archive ``cocostuff-10k-v1.1.zip`` in ``ROOT`` (it holds those three folders;
they are extracted into ``OUT/raw/``).

Splits: ``train`` (``train.txt``, 9,000 images) and ``val`` (``test.txt``, 1,000 images). The
official "test" list has public ground truth; it is the set the papers call "testing" (GFF) or
"validation" (RANet), so gsbench names it ``val``, the split that evaluation scores by default.

Labels: ``S - 1`` is the id space of the 164k ``stuffthingmaps`` PNGs (0..181, with unlabeled 0
becoming 255), and the 164k table then maps it to trainIds (the 171 used ids in order -> 0..170,
255 -> ignore). This module's label table is that composition, indexed by ``S``; an id of the 11
thing ids that COCO never used is refused as outside the table, as in the 164k set.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gsbench.data.cocostuff import (
    COCOSTUFF_CLASS_NAMES, COCOSTUFF_ID_NAMES, COCOSTUFF_USED_VALUES,
)
from gsbench.data.description import DatasetDescription, RawDataset
from gsbench.data.labels import LabelTable
from gsbench.data.raw import (
    RawSample, extract_zip, files_with_suffix, listed_samples, read_split_list,
)
from gsbench.errors import GsbenchError

ARCHIVE = "cocostuff-10k-v1.1.zip"
FOLDERS = ("images", "annotations", "imageLists")
#: official list file -> manifest split name
SPLITS = {"train.txt": "train", "test.txt": "val"}
#: COCO 2014 image names, e.g. ``COCO_train2014_000000000077``
STEM_PATTERN = re.compile(r"COCO_(?:train|val)2014_\d{12}")
#: the variable of the label map in each annotation file
LABEL_VARIABLE = "S"
#: the largest value of ``S``: 182 COCO-Stuff ids (0 is unlabeled)
MAX_LABEL_ID = len(COCOSTUFF_ID_NAMES)


def read_cocostuff10k_mat(path: Path) -> np.ndarray:
    """The label map ``S`` of one annotation file as uint8 COCO-Stuff ids (0 = unlabeled); raise
    naming the file if it is unreadable, has no ``S``, or ``S`` is not a 2-D map of 0..182."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise GsbenchError(f"{path}: file not found")
    try:
        document = loadmat(str(path), variable_names=[LABEL_VARIABLE])
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError... for bad files
        raise GsbenchError(f"{path}: not a readable MATLAB file ({exc})") from None
    if LABEL_VARIABLE not in document:
        raise GsbenchError(f"{path}: no variable {LABEL_VARIABLE} (the label map)")
    labels = np.asarray(document[LABEL_VARIABLE])
    if labels.ndim != 2 or labels.dtype.kind not in "ui":
        raise GsbenchError(
            f"{path}: {LABEL_VARIABLE} must be a 2-D integer label map, got {labels.dtype} of "
            f"shape {labels.shape}"
        )
    outside = (labels < 0) | (labels > MAX_LABEL_ID)
    if outside.any():
        ids = np.unique(labels[outside]).tolist()
        raise GsbenchError(
            f"{path}: {LABEL_VARIABLE} holds ids {ids[:5]}{'...' if len(ids) > 5 else ''} "
            f"outside 0..{MAX_LABEL_ID} (0 = unlabeled, 1..{MAX_LABEL_ID} the COCO-Stuff ids)"
        )
    return labels.astype(np.uint8)


def _folders(root: Path, out: Path, progress: bool) -> Path:
    """The folder holding images/, annotations/ and imageLists/: ``root`` itself, or ``OUT/raw``
    with the three extracted from the official archive."""
    if all((root / name).is_dir() for name in FOLDERS):
        return root
    archive = root / ARCHIVE
    if archive.is_file():
        return extract_zip(archive, out / "raw", only_under=FOLDERS, progress=progress)
    missing = " and ".join(f"{name}/" for name in FOLDERS if not (root / name).is_dir())
    raise GsbenchError(f"{root}: missing {missing} (or the archive {ARCHIVE})")


def find_cocostuff10k(root: str | Path, out: str | Path, *, progress: bool = False) -> RawDataset:
    """Find and pair the COCO-Stuff 10k files under ``root``; see the module docstring.

    Raises :class:`GsbenchError` naming the file for a missing folder or list, a malformed or
    repeated stem in a list, and a listed stem without its image or its ``.mat`` file.
    """
    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise GsbenchError(f"{root}: no such folder")
    base = _folders(root, out, progress)
    for name in FOLDERS:
        if not (base / name).is_dir():  # an archive without one of them
            raise GsbenchError(f"{root / ARCHIVE}: holds no folder {name}/")
    images = files_with_suffix(base / "images", ".jpg")
    labels = files_with_suffix(base / "annotations", ".mat")
    samples: list[RawSample] = []
    for listing, split in SPLITS.items():
        path = base / "imageLists" / listing
        samples += listed_samples(split, path, read_split_list(path, STEM_PATTERN), images,
                                  labels, base / "images", base / "annotations")
    return RawDataset(COCO_STUFF10K, tuple(samples))


# --- the description ----------------------------------------------------------------------------

COCO_STUFF10K = DatasetDescription(
    name="coco_stuff10k",
    class_names=COCOSTUFF_CLASS_NAMES,
    # ``S`` value -> trainId: the 164k table shifted by one (``S - 1`` is a value of the 164k
    # maps), so the 171 used COCO-Stuff ids in order -> 0..170; 0 (unlabeled) is void
    labels=LabelTable(values=tuple(v + 1 for v in COCOSTUFF_USED_VALUES), void=(0,)),
    find=find_cocostuff10k,
    label_reader=read_cocostuff10k_mat,
)
