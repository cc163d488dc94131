"""ADE20K SceneParsing (ADEChallengeData2016): its description (:data:`ADE20K`: classes, label
table) and the reader of its raw layout, the input of ``prepare-data ade20k``.

    ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_{8 digits}.jpg
    ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_{8 digits}.png

or the archive ``ADEChallengeData2016.zip`` (extracted into ``OUT/raw/``). Annotation value 0 is
"other" and 1..150 are the classes, so trainId = value - 1 and 0 -> 255 (ignore), the usual
``reduce_zero_label`` convention of the PSANet/GFF/GPSNet ADE20K results.
"""

from __future__ import annotations

import re
from pathlib import Path

from gsbench.data.description import DatasetDescription, RawDataset
from gsbench.data.labels import LabelTable
from gsbench.data.raw import (
    RawSample, extract_zip, files_with_suffix, flat_sample, paired_stems,
)
from gsbench.errors import GsbenchError

DATASET_DIRNAME = "ADEChallengeData2016"
ARCHIVE_NAME = "ADEChallengeData2016.zip"
#: raw folder name -> manifest split name
SPLITS = {"training": "train", "validation": "val"}
STEM_PATTERN = re.compile(r"ADE_(?P<split>train|val)_\d{8}")

#: Class names in trainId order (objectInfo150.txt, first name of each entry).
# fmt: off
ADE20K_CLASS_NAMES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step",
    "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
# fmt: on


def _dataset_folder(root: Path, out: Path, progress: bool) -> Path:
    if (root / "images").is_dir() or (root / "annotations").is_dir():
        return root
    if (root / DATASET_DIRNAME).is_dir():
        return root / DATASET_DIRNAME
    archive = root / ARCHIVE_NAME
    if archive.is_file():
        extract_zip(archive, out / "raw", only_under=[DATASET_DIRNAME], progress=progress)
        return out / "raw" / DATASET_DIRNAME
    raise GsbenchError(f"{root}: missing folders images/ and annotations/ (or {ARCHIVE_NAME})")


def _split_files(folder: Path, suffix: str, split: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise GsbenchError(f"{folder}: missing folder")
    found = files_with_suffix(folder, suffix)
    for stem, path in sorted(found.items()):
        match = STEM_PATTERN.fullmatch(stem)
        if match is None or match["split"] != split:
            raise GsbenchError(f"{path}: file name does not follow ADE_{split}_<8 digits>{suffix}")
    return found


def find_ade20k(root: str | Path, out: str | Path, *, progress: bool = False) -> RawDataset:
    """Find and pair the raw ADE20K files under ``root`` (extracting the archive into ``out``)."""
    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise GsbenchError(f"{root}: no such folder")
    base = _dataset_folder(root, out, progress)
    samples: list[RawSample] = []
    for folder, split in SPLITS.items():
        images = _split_files(base / "images" / folder, ".jpg", split)
        labels = _split_files(base / "annotations" / folder, ".png", split)
        if not images:
            raise GsbenchError(f"{base / 'images' / folder}: no .jpg images")
        for stem in paired_stems(images, labels):
            samples.append(flat_sample(split, stem, images[stem], labels[stem]))
    return RawDataset(ADE20K, tuple(samples))


# --- the description ----------------------------------------------------------------------------

ADE20K = DatasetDescription(
    name="ade20k",
    class_names=ADE20K_CLASS_NAMES,
    # annotation value v -> trainId v - 1 for the classes 1..150; 0 ("other") is void
    labels=LabelTable(values=tuple(range(1, len(ADE20K_CLASS_NAMES) + 1)), void=(0,)),
    find=find_ade20k,
)
