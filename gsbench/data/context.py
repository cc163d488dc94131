"""PASCAL Context with 59 classes (Mottaghi et al. 2014): its description
(:data:`PASCAL_CONTEXT`: classes, label table) and the reader of its raw layout, the input of
``prepare-data context``.

Accepted layout under ``ROOT`` (the 59-class labels as mmsegmentation's ``pascal_context.py``
converter writes them next to the VOC 2010 images):

    VOCdevkit/VOC2010/JPEGImages/{stem}.jpg
    VOCdevkit/VOC2010/SegmentationClassContext/{stem}.png     0 = background, 1..59 the classes
    VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt   (4,996 / 5,104 images)

``ROOT`` may also be the ``VOCdevkit`` or ``VOC2010`` folder itself. ``JPEGImages`` may instead
come from the official archive ``VOCtrainval_03-May-2010.tar`` in ``ROOT`` (extracted into
``OUT/raw/``). The raw 459-class ``trainval_merged.json`` is not read: converting it needs the
Detail API, so convert it with mmsegmentation first.

The 59-class setting ignores background: trainId = label - 1, and 0 -> 255.
"""

from __future__ import annotations

import re
from pathlib import Path

from gsbench.data.description import DatasetDescription, RawDataset
from gsbench.data.labels import LabelTable
from gsbench.data.raw import (
    RawSample, extract_tar, files_with_suffix, listed_samples, read_split_list,
)
from gsbench.errors import GsbenchError

VOC2010_ARCHIVE = "VOCtrainval_03-May-2010.tar"
LABEL_DIRNAME = "SegmentationClassContext"
LISTS_DIRNAME = "ImageSets/SegmentationContext"
RAW_JSON_NAME = "trainval_merged.json"
STEM_PATTERN = re.compile(r"\d{4}_\d{6}")
SPLITS = ("train", "val")

#: Class names in trainId order (label values 1..59 of the 59-class setting).
# fmt: off
CONTEXT_CLASS_NAMES: tuple[str, ...] = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow",
    "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground",
    "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate",
    "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water",
    "window", "wood",
)
# fmt: on

_EXPECTED = (f"VOCdevkit/VOC2010/ with JPEGImages/, {LABEL_DIRNAME}/ (59-class PNGs) and "
             f"{LISTS_DIRNAME}/{{train,val}}.txt")


def _voc2010_folder(root: Path) -> Path:
    for candidate in (root, root / "VOC2010", root / "VOCdevkit" / "VOC2010"):
        if (candidate / LABEL_DIRNAME).is_dir():
            return candidate
    for candidate in (root, root / "VOC2010", root / "VOCdevkit" / "VOC2010"):
        if (candidate / RAW_JSON_NAME).is_file():
            raise GsbenchError(
                f"{candidate / RAW_JSON_NAME}: the raw 459-class labels need the Detail API; "
                f"convert them to {LABEL_DIRNAME}/ (mmsegmentation's pascal_context.py) and give "
                f"{_EXPECTED}"
            )
    raise GsbenchError(f"{root}: missing {_EXPECTED}")


def _image_folder(root: Path, base: Path, out: Path, progress: bool) -> Path:
    folder = base / "JPEGImages"
    if folder.is_dir():
        return folder
    archive = root / VOC2010_ARCHIVE
    if archive.is_file():
        extract_tar(archive, out / "raw", only_under=["VOCdevkit/VOC2010/JPEGImages"],
                    progress=progress)
        return out / "raw" / "VOCdevkit" / "VOC2010" / "JPEGImages"
    raise GsbenchError(f"{folder}: missing folder (or the archive {VOC2010_ARCHIVE} in {root})")


def find_context(root: str | Path, out: str | Path, *, progress: bool = False) -> RawDataset:
    """Find and pair the PASCAL Context 59 files under ``root``; see the module docstring."""
    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise GsbenchError(f"{root}: no such folder")
    base = _voc2010_folder(root)
    image_folder = _image_folder(root, base, out, progress)
    images = files_with_suffix(image_folder, ".jpg")
    labels = files_with_suffix(base / LABEL_DIRNAME, ".png")
    samples: list[RawSample] = []
    for split in SPLITS:
        listing = base / LISTS_DIRNAME / f"{split}.txt"
        samples += listed_samples(split, listing, read_split_list(listing, STEM_PATTERN), images,
                                  labels, image_folder, base / LABEL_DIRNAME)
    return RawDataset(PASCAL_CONTEXT, tuple(samples))


# --- the description ----------------------------------------------------------------------------

PASCAL_CONTEXT = DatasetDescription(
    name="pascal_context",
    class_names=CONTEXT_CLASS_NAMES,
    # label value v -> trainId v - 1 for the classes 1..59; 0 (background) is void
    labels=LabelTable(values=tuple(range(1, len(CONTEXT_CLASS_NAMES) + 1)), void=(0,)),
    find=find_context,
)
