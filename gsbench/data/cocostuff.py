"""COCO-Stuff 164k (Caesar et al. 2018) with its 171 classes: its description
(:data:`COCO_STUFF`: classes, label table) and the reader of its raw layout, the input of
``prepare-data cocostuff``. (COCO-Stuff 10k, the set of GFF Table 9 and RANet Tables 4 and 6, is
:mod:`gsbench.data.cocostuff10k`; it reuses this module's classes and used ids.)

Accepted layout under ``ROOT`` (the official ``stuffthingmaps`` next to the COCO 2017 images):

    images/{train2017,val2017}/{12 digits}.jpg
    annotations/{train2017,val2017}/{12 digits}.png     grey PNG: 0..181, 255 = unlabeled

or the official archives ``train2017.zip``, ``val2017.zip`` and ``stuffthingmaps_trainval2017.zip``
in ``ROOT`` (extracted into ``OUT/raw/images`` and ``OUT/raw/annotations``). Files
``*_labelTrainIds.png`` that mmsegmentation's converter writes beside the maps are skipped.

Label values are the COCO-Stuff ids minus one: 0..90 the 91 thing ids (11 of them unused by COCO),
91..181 the 91 stuff ids. The 171 used values map, in order, to trainIds 0..170; 255 stays
ignore, and a value of an unused id is refused as outside the table.
"""

from __future__ import annotations

import re
from pathlib import Path

from gsbench.data.description import DatasetDescription, RawDataset
from gsbench.data.labels import IGNORE_INDEX, LabelTable
from gsbench.data.raw import (
    RawSample, extract_zip, files_with_suffix, flat_sample, paired_stems,
)
from gsbench.errors import GsbenchError

#: raw folder name -> manifest split name
SPLITS = {"train2017": "train", "val2017": "val"}
LABELS_ARCHIVE = "stuffthingmaps_trainval2017.zip"
STEM_PATTERN = re.compile(r"\d{12}")
#: written by mmsegmentation's coco_stuff164k.py beside the raw maps; not raw data
MMSEG_OUTPUT_SUFFIX = "_labelTrainIds.png"

# fmt: off
#: COCO-Stuff names of ids 1..182 (``labels.txt`` of the cocostuff repository; id 0 "unlabeled"
#: is stored as 255 in the maps). Things 1..91 include 11 ids that COCO never used.
COCOSTUFF_ID_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird",
    "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "hat",
    "backpack", "umbrella", "shoe", "eye glasses", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "mirror", "dining table", "window",
    "desk", "toilet", "door", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "blender", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush", "hair brush",
    # stuff, ids 92..182
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other",
    "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves",
    "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf",
    "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
# fmt: on
#: COCO thing ids without annotations (their names exist only in the 2014 category list).
COCOSTUFF_UNUSED_IDS: tuple[int, ...] = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
#: label values (id - 1) of the 171 used classes, in trainId order.
COCOSTUFF_USED_VALUES: tuple[int, ...] = tuple(
    i - 1 for i in range(1, len(COCOSTUFF_ID_NAMES) + 1) if i not in COCOSTUFF_UNUSED_IDS
)
#: Class names in trainId order (80 things, then 91 stuff).
COCOSTUFF_CLASS_NAMES: tuple[str, ...] = tuple(COCOSTUFF_ID_NAMES[v] for v in COCOSTUFF_USED_VALUES)


def _component_folder(root: Path, out: Path, name: str, progress: bool) -> Path:
    """``root/images`` or ``root/annotations``, else the folder extracted from the archives."""
    folder = root / name
    if folder.is_dir():
        return folder
    if name == "images":
        archives = {split: root / f"{split}.zip" for split in SPLITS}
    else:
        archives = {split: root / LABELS_ARCHIVE for split in SPLITS}
    if all(a.is_file() for a in archives.values()):
        for split, archive in archives.items():
            extract_zip(archive, out / "raw" / name, only_under=[split], progress=progress)
        return out / "raw" / name
    wanted = " and ".join(sorted({a.name for a in archives.values()}))
    raise GsbenchError(f"{root}: missing folder {name}/ (or the archives {wanted})")


def _split_files(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise GsbenchError(f"{folder}: missing folder")
    found = files_with_suffix(folder, suffix)
    if suffix == ".png":
        found = {s: p for s, p in found.items() if not p.name.endswith(MMSEG_OUTPUT_SUFFIX)}
    for stem, path in sorted(found.items()):
        if STEM_PATTERN.fullmatch(stem) is None:
            raise GsbenchError(f"{path}: file name is not a 12-digit COCO image id{suffix}")
    return found


def find_cocostuff(root: str | Path, out: str | Path, *, progress: bool = False) -> RawDataset:
    """Find and pair the COCO-Stuff 164k files under ``root``; see the module docstring."""
    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise GsbenchError(f"{root}: no such folder")
    image_root = _component_folder(root, out, "images", progress)
    label_root = _component_folder(root, out, "annotations", progress)
    samples: list[RawSample] = []
    for folder, split in SPLITS.items():
        images = _split_files(image_root / folder, ".jpg")
        labels = _split_files(label_root / folder, ".png")
        if not images:
            raise GsbenchError(f"{image_root / folder}: no .jpg images")
        for stem in paired_stems(images, labels):
            samples.append(flat_sample(split, stem, images[stem], labels[stem]))
    return RawDataset(COCO_STUFF, tuple(samples))


# --- the description ----------------------------------------------------------------------------

COCO_STUFF = DatasetDescription(
    name="coco_stuff",
    class_names=COCOSTUFF_CLASS_NAMES,
    # label value -> trainId: the 171 used values in order -> 0..170; 255 (unlabeled) is void
    labels=LabelTable(values=COCOSTUFF_USED_VALUES, void=(IGNORE_INDEX,)),
    find=find_cocostuff,
)
