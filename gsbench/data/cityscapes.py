"""Cityscapes: its description (:data:`CITYSCAPES`: the official label table, classes, palette,
evaluation defaults) and the reader of its raw layout, the input of ``prepare-data cityscapes``.

The label table is the official one (``cityscapesscripts.helpers.labels``; the tests check it
against that package): labelIds become trainIds at prepare-data and go back to labelIds only for
the test-server export. The raw layout:

    leftImg8bit/{train,val,test}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/{train,val,test}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png   (+ _instanceIds.png)

or the two official archives ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``
(extracted into ``OUT/raw/``). The test split's gtFine files are dummies, so test images are
listed without ground truth (for test-server export only).

Coarse annotations, when the root also holds them (both parts, as folders or archives):

    leftImg8bit/train_extra/{city}/{stem}_leftImg8bit.png      (leftImg8bit_trainextra.zip)
    gtCoarse/train_extra/{city}/{stem}_gtCoarse_labelIds.png   (gtCoarse.zip)

give the split ``train_extra``: the 19,998 extra images with their coarse labels, mapped to
trainIds with the same official table as the fine ones (the unlabelled gaps between coarse
polygons are labelId 0, so ignore). Its edge targets follow the coarse polygon outlines; Gated-SCNN
trains without coarse data for that reason (its shape stream needs fine boundaries). Only
``gtCoarse/train_extra`` is read: the coarse labels of train and val are of the same images as
the fine ones. No instance maps are listed. ``find_cityscapes(..., coarse=False)``
(``prepare-data cityscapes --no-coarse``) prepares the fine annotations only.

How the papers use it: PSANet Table 6 reports a result "trained using both fine and coarse data"
(PSANet†, 81.4 on test) and RANet Table 5 trains "with the fine annotations along with the extra
coarse annotations" (84.0, on an HRNetV2-W48+ASPP baseline); neither paper says how (no schedule,
no separate coarse pre-training stage is described). Split unions
(:meth:`gsbench.data.manifest.Manifest.split`) let a recipe name ``train+val+train_extra`` (every
labelled image at once) or ``train_extra`` alone (a coarse-only stage).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gsbench.data.description import DatasetDescription, RawDataset
from gsbench.data.labels import LabelTable
from gsbench.data.raw import RawSample, extract_zip, files_with_suffix
from gsbench.errors import GsbenchError

# --- the official label table -------------------------------------------------------------------

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

#: The evaluated labels in trainId order (their trainIds are 0..18).
_EVALUATED = tuple(sorted((lab for lab in CITYSCAPES_LABELS if 0 <= lab.train_id < 255),
                          key=lambda lab: lab.train_id))
#: labelId -> trainId: the evaluated labels in trainId order; every other labelId is void.
_LABELS = LabelTable(
    values=tuple(lab.id for lab in _EVALUATED),
    void=tuple(lab.id for lab in CITYSCAPES_LABELS if lab.id >= 0 and lab not in _EVALUATED),
)

CITYSCAPES_CLASS_NAMES: tuple[str, ...] = tuple(lab.name for lab in _EVALUATED)
CITYSCAPES_NUM_CLASSES = len(CITYSCAPES_CLASS_NAMES)  # 19
CITYSCAPES_LABEL_BY_NAME = {label.name: label for label in CITYSCAPES_LABELS}
#: labelId -> trainId lookup table (uint8, 256 entries; unknown ids map to 255).
CITYSCAPES_LABEL_TO_TRAIN = _LABELS.to_train
#: trainId -> labelId lookup table (uint8, 256 entries): trainId 255 (ignore) and unknown ids
#: export as labelId 0 ("unlabeled"), as the official scripts expect.
CITYSCAPES_TRAIN_TO_LABEL = np.zeros(256, dtype=np.uint8)
CITYSCAPES_TRAIN_TO_LABEL[:CITYSCAPES_NUM_CLASSES] = _LABELS.values
#: trainIds of the classes that have instances and are evaluated (iIoU classes).
CITYSCAPES_INSTANCE_TRAIN_IDS: tuple[int, ...] = tuple(
    label.train_id for label in CITYSCAPES_LABELS
    if label.has_instances and not label.ignore_in_eval
)

# --- the raw layout -----------------------------------------------------------------------------

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
#: Splits with usable ground truth (required), and the test split (optional, images only).
LABELLED_SPLITS = ("train", "val")
TEST_SPLIT = "test"
ARCHIVES = {"leftImg8bit": "leftImg8bit_trainvaltest.zip", "gtFine": "gtFine_trainvaltest.zip"}
#: The coarse set: its split, label files and the official archives of its two parts.
COARSE_SPLIT = "train_extra"
COARSE_LABEL_SUFFIX = "_gtCoarse_labelIds.png"
COARSE_IMAGES_ARCHIVE = "leftImg8bit_trainextra.zip"
COARSE_LABELS_ARCHIVE = "gtCoarse.zip"
#: ``{city}_{seq:06d}_{frame:06d}``; city names are lower case, possibly with underscores or
#: hyphens (train_extra has ``bad-honnef`` and ``muhlheim-ruhr``).
STEM_PATTERN = re.compile(r"(?P<city>[a-z]+(?:[_-][a-z]+)*)_\d{6}_\d{6}")


def _component_folder(root: Path, out: Path, name: str, progress: bool) -> Path:
    """``root/name`` if extracted there, else the official archive in ``root`` extracted into
    ``out/raw/name``."""
    folder = root / name
    if folder.is_dir():
        return folder
    archive = root / ARCHIVES[name]
    if archive.is_file():
        return extract_zip(archive, out / "raw", only_under=[name], progress=progress) / name
    raise GsbenchError(f"{root}: missing folder {name}/ (or the archive {ARCHIVES[name]})")


def _city_files(split_dir: Path, suffix: str) -> dict[str, Path]:
    """``{stem: path}`` over the city folders of one split, checking the file naming."""
    found: dict[str, Path] = {}
    for city_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for stem, path in files_with_suffix(city_dir, suffix).items():
            match = STEM_PATTERN.fullmatch(stem)
            if match is None or match["city"] != city_dir.name:
                raise GsbenchError(
                    f"{path}: file name does not follow {city_dir.name}_<seq>_<frame>{suffix}"
                )
            found[stem] = path
    return found


def _split_dir(component: Path, split: str) -> Path:
    folder = component / split
    if not folder.is_dir():
        raise GsbenchError(f"{component}: missing split folder {split}/")
    return folder


def _paired_files(images_dir: Path, labels_dir: Path, split: str,
                  label_suffix: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """The images and labels of one split, ``{stem: path}`` each, once every image has its label
    and every label its image; otherwise raise naming the first file without its partner."""
    images = _city_files(_split_dir(images_dir, split), IMAGE_SUFFIX)
    if not images:
        raise GsbenchError(f"{images_dir / split}: no city folders with *{IMAGE_SUFFIX} files")
    labels = _city_files(_split_dir(labels_dir, split), label_suffix)
    if unpaired := sorted(images.keys() - labels.keys()):
        stem = unpaired[0]
        raise GsbenchError(f"{images[stem]}: image without its label {stem}{label_suffix}")
    if unpaired := sorted(labels.keys() - images.keys()):
        stem = unpaired[0]
        raise GsbenchError(f"{labels[stem]}: label without its image {stem}{IMAGE_SUFFIX}")
    return images, labels


def _labelled_sample(split: str, stem: str, image: Path, label: Path,
                     instance: Path | None) -> RawSample:
    city = label.parent.name
    return RawSample(
        split=split, stem=stem, image=image, raw_label=label, instance=instance,
        label_out=f"labels/{split}/{city}/{stem}_trainIds.png",
        edge_out=f"edges/{split}/{city}/{stem}_edge.png",
    )


def _coarse_folders(root: Path, out: Path, images_dir: Path,
                    progress: bool) -> tuple[Path, Path] | None:
    """``(leftImg8bit folder, gtCoarse folder)`` holding ``train_extra/``, extracting the
    official archives into ``out/raw`` where needed; None when the root has neither part."""
    image_folder = images_dir / COARSE_SPLIT
    images_archive = root / COARSE_IMAGES_ARCHIVE
    labels_folder = root / "gtCoarse"
    labels_archive = root / COARSE_LABELS_ARCHIVE
    has_images = image_folder.is_dir() or images_archive.is_file()
    has_labels = labels_folder.is_dir() or labels_archive.is_file()
    if not has_images and not has_labels:
        return None
    if not has_images:
        found = labels_folder if labels_folder.is_dir() else labels_archive
        raise GsbenchError(
            f"{found}: coarse labels without their images {image_folder}/ (or the archive "
            f"{images_archive}); add them, or prepare the fine annotations only (--no-coarse)"
        )
    if not has_labels:
        found = image_folder if image_folder.is_dir() else images_archive
        raise GsbenchError(
            f"{found}: coarse images without their labels {labels_folder}/ (or the archive "
            f"{labels_archive}); add them, or prepare the fine annotations only (--no-coarse)"
        )
    if not image_folder.is_dir():
        extract_zip(images_archive, out / "raw", only_under=[f"leftImg8bit/{COARSE_SPLIT}"],
                    progress=progress)
        image_folder = out / "raw" / "leftImg8bit" / COARSE_SPLIT
    if not labels_folder.is_dir():
        extract_zip(labels_archive, out / "raw", only_under=[f"gtCoarse/{COARSE_SPLIT}"],
                    progress=progress)
        labels_folder = out / "raw" / "gtCoarse"
    return image_folder.parent, labels_folder


def find_cityscapes(root: str | Path, out: str | Path, *, progress: bool = False,
                    coarse: bool = True) -> RawDataset:
    """Find and pair the raw Cityscapes files under ``root`` (extracting archives into ``out``).

    With ``coarse`` (the default) the coarse set, when present, becomes the split
    ``train_extra`` (see the module docstring); a root with only one of its two parts is an error.
    Raises :class:`GsbenchError` naming the file for missing folders, unpaired images or
    labels, missing instance files and names that do not follow ``city_seq_frame``.
    """
    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise GsbenchError(f"{root}: no such folder")
    images_dir = _component_folder(root, out, "leftImg8bit", progress)
    gt_dir = _component_folder(root, out, "gtFine", progress)
    samples: list[RawSample] = []
    for split in LABELLED_SPLITS:
        images, labels = _paired_files(images_dir, gt_dir, split, LABEL_SUFFIX)
        instances = _city_files(gt_dir / split, INSTANCE_SUFFIX)
        for stem in sorted(images):
            if stem not in instances:
                raise GsbenchError(
                    f"{labels[stem]}: missing its instance file {stem}{INSTANCE_SUFFIX}"
                )
            samples.append(_labelled_sample(split, stem, images[stem], labels[stem],
                                            instances[stem]))
    test_dir = images_dir / TEST_SPLIT
    if test_dir.is_dir():
        for stem, path in sorted(_city_files(test_dir, IMAGE_SUFFIX).items()):
            samples.append(RawSample(split=TEST_SPLIT, stem=stem, image=path, raw_label=None,
                                     instance=None, label_out=None, edge_out=None))
    folders = _coarse_folders(root, out, images_dir, progress) if coarse else None
    if folders is not None:
        images, labels = _paired_files(*folders, COARSE_SPLIT, COARSE_LABEL_SUFFIX)
        for stem in sorted(images):
            samples.append(_labelled_sample(COARSE_SPLIT, stem, images[stem], labels[stem], None))
    return RawDataset(CITYSCAPES, tuple(samples))


# --- the description ----------------------------------------------------------------------------

CITYSCAPES = DatasetDescription(
    name="cityscapes",
    class_names=CITYSCAPES_CLASS_NAMES,
    labels=_LABELS,
    find=find_cityscapes,
    distance_crops=True,
    iiou=True,
    palette=np.array([lab.color for lab in _EVALUATED], dtype=np.uint8),
)
