"""PASCAL VOC 2012 with the SBD augmented set: its description (:data:`VOC2012`: classes, label
table) and the reader of its raw layout, the input of ``prepare-data voc``.

Accepted layouts under ``ROOT`` (the folder given as ``--root``):

    VOCdevkit/VOC2012/JPEGImages/{stem}.jpg
    VOCdevkit/VOC2012/SegmentationClass/{stem}.png          palette PNG: 0..20, 255 = void
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
    benchmark_RELEASE/dataset/cls/{stem}.mat                optional SBD (Hariharan et al. 2011):
    benchmark_RELEASE/dataset/{train,val}.txt               GTcls.Segmentation, uint8 0..20
    benchmark_RELEASE/dataset/img/{stem}.jpg                (used where JPEGImages lacks an image)

``ROOT`` may also be the ``VOCdevkit`` or ``VOC2012`` folder itself (SBD is then looked for in
``ROOT`` only). Instead of the folders, the official archives ``VOCtrainval_11-May-2012.tar`` and
``benchmark.tgz`` may lie in ``ROOT``; the parts used are extracted into ``OUT/raw/``.

Splits: ``train`` (1,464 images) and ``val`` (1,449) from ``ImageSets/Segmentation``, and, when
SBD is present, ``trainaug``: (SBD train + SBD val + VOC train) minus VOC val, the 10,582 images
of the usual augmented training set. A ``trainaug`` image keeps its VOC annotation where it has
one (the VOC train images; it has the 255 void band that SBD lacks) and takes its SBD ``.mat``
otherwise. trainIds are the VOC indices: 0 = background, 1..20 the classes, 255 = ignore.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gsbench.data.description import DatasetDescription, RawDataset
from gsbench.data.labels import IGNORE_INDEX, LabelTable
from gsbench.data.raw import (
    RawSample, extract_tar, files_with_suffix, flat_sample, listed_samples,
    read_split_list,
)
from gsbench.errors import GsbenchError

VOC_ARCHIVE = "VOCtrainval_11-May-2012.tar"
SBD_ARCHIVE = "benchmark.tgz"
SBD_DIRNAME = "benchmark_RELEASE"
#: VOC image names: ``{year}_{six digits}``, e.g. ``2007_000032``.
STEM_PATTERN = re.compile(r"\d{4}_\d{6}")
VOC_SPLITS = ("train", "val")
TRAINAUG_SPLIT = "trainaug"

#: Class names in trainId order (the VOC devkit's order, background first).
VOC_CLASS_NAMES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def _voc_folder(root: Path, out: Path, progress: bool) -> Path:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() or (candidate / "SegmentationClass").is_dir():
            return candidate
    archive = root / VOC_ARCHIVE
    if archive.is_file():
        used = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")
        extract_tar(archive, out / "raw", only_under=[f"VOCdevkit/VOC2012/{d}" for d in used],
                    progress=progress)
        return out / "raw" / "VOCdevkit" / "VOC2012"
    raise GsbenchError(
        f"{root}: missing VOCdevkit/VOC2012/ with JPEGImages/ and SegmentationClass/ "
        f"(or the archive {VOC_ARCHIVE})"
    )


def _sbd_folder(root: Path, out: Path, progress: bool) -> Path | None:
    """``benchmark_RELEASE/dataset`` if SBD is present (as a folder or ``benchmark.tgz``)."""
    folder = root / SBD_DIRNAME / "dataset"
    if folder.is_dir():
        return folder
    archive = root / SBD_ARCHIVE
    if archive.is_file():
        # Class masks and lists only; the images are VOC 2012's JPEGImages.
        used = ("cls", "train.txt", "val.txt")
        extract_tar(archive, out / "raw", only_under=[f"{SBD_DIRNAME}/dataset/{d}" for d in used],
                    progress=progress)
        return out / "raw" / SBD_DIRNAME / "dataset"
    return None


def _folder_files(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise GsbenchError(f"{folder}: missing folder")
    return files_with_suffix(folder, suffix)


def trainaug_stems(voc_train: list[str], voc_val: list[str], sbd_train: list[str],
                   sbd_val: list[str]) -> list[str]:
    """The usual augmented training set: (SBD train + SBD val + VOC train) minus VOC val, sorted
    (10,582 images with the official lists)."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def find_voc(root: str | Path, out: str | Path, *, progress: bool = False) -> RawDataset:
    """Find and pair the raw VOC 2012 (and SBD) files under ``root`` (extracting archives into
    ``out``); see the module docstring for the layouts and the ``trainaug`` rule."""
    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise GsbenchError(f"{root}: no such folder")
    voc = _voc_folder(root, out, progress)
    images = _folder_files(voc / "JPEGImages", ".jpg")
    labels = _folder_files(voc / "SegmentationClass", ".png")
    if unpaired := sorted(labels.keys() - images.keys()):
        raise GsbenchError(f"{labels[unpaired[0]]}: label without its image {unpaired[0]}.jpg")
    lists = voc / "ImageSets" / "Segmentation"
    stems = {split: read_split_list(lists / f"{split}.txt", STEM_PATTERN) for split in VOC_SPLITS}

    samples: list[RawSample] = []
    for split in VOC_SPLITS:
        samples += listed_samples(split, lists / f"{split}.txt", stems[split], images, labels,
                                  voc / "JPEGImages", voc / "SegmentationClass")

    sbd = _sbd_folder(root, out, progress)
    if sbd is not None:
        sbd_lists = {split: read_split_list(sbd / f"{split}.txt", STEM_PATTERN)
                     for split in ("train", "val")}
        masks = _folder_files(sbd / "cls", ".mat")
        sbd_images = files_with_suffix(sbd / "img", ".jpg") if (sbd / "img").is_dir() else {}
        for stem in trainaug_stems(stems["train"], stems["val"], sbd_lists["train"],
                                   sbd_lists["val"]):
            image = images.get(stem) or sbd_images.get(stem)
            if image is None:
                raise GsbenchError(f"{voc / 'JPEGImages'}/{stem}.jpg: missing image of the "
                                   f"{TRAINAUG_SPLIT} sample {stem}")
            label = labels.get(stem) or masks.get(stem)
            if label is None:
                raise GsbenchError(f"{sbd / 'cls'}/{stem}.mat: missing SBD label of the "
                                   f"{TRAINAUG_SPLIT} sample {stem}")
            samples.append(flat_sample(TRAINAUG_SPLIT, stem, image, label))

    return RawDataset(VOC2012, tuple(samples))


# --- the description ----------------------------------------------------------------------------


def voc_colormap(count: int) -> np.ndarray:
    """The PASCAL VOC colour map (``labelcolormap.m`` of the VOC devkit): index i's bits 0, 1, 2
    go to the red, green and blue values' bits 7, 6, ... in turn (0 black, 1 (128, 0, 0),
    2 (0, 128, 0), ..., 255 (224, 224, 192)). ``count`` x 3 uint8."""
    index = np.arange(count)
    colours = np.zeros((count, 3), np.uint8)
    for shift in range(8):
        for channel in range(3):
            colours[:, channel] |= (((index >> (3 * shift + channel)) & 1) << (7 - shift)).astype(np.uint8)
    return colours


VOC2012 = DatasetDescription(
    name="voc2012",
    class_names=VOC_CLASS_NAMES,
    # VOC/SBD index -> trainId: the identity on 0..20; the 255 void band (VOC only) stays 255
    labels=LabelTable(values=tuple(range(len(VOC_CLASS_NAMES))), void=(IGNORE_INDEX,)),
    find=find_voc,  # SBD .mat labels are read by read_raw_label, the default label reader
    palette=voc_colormap(len(VOC_CLASS_NAMES)),  # the colours of the SegmentationClass PNGs
)
