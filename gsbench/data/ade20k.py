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

import numpy as np

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

#: The colour of each class (trainId order) as RRGGBB: the SceneParsing benchmark's colour
#: coding (``color150.mat`` of the MIT scene-parsing code, the palette mmsegmentation uses too).
_ADE20K_COLOURS = (
    "787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d "
    "787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 "
    "0907e6 dcdcdc ff095c 7009ff 08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 "
    "ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f 14ff00 1fff00 "
    "ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff 0bc8c8 ff5200 00fff5 003dff 00ff70 "
    "00ff85 ff0000 ffa300 ff6600 c2ff00 008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 "
    "ff5c00 ff00ff ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52 "
    "000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 "
    "08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff "
    "9900ff 47ff00 ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00 "
    "00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8 "
    "005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff"
)


ADE20K = DatasetDescription(
    name="ade20k",
    class_names=ADE20K_CLASS_NAMES,
    # annotation value v -> trainId v - 1 for the classes 1..150; 0 ("other") is void
    labels=LabelTable(values=tuple(range(1, len(ADE20K_CLASS_NAMES) + 1)), void=(0,)),
    find=find_ade20k,
    palette=np.frombuffer(bytes.fromhex(_ADE20K_COLOURS.replace(" ", "")), np.uint8).reshape(-1, 3),
)
