"""Reader of the raw Cityscapes layout, the input of ``prepare-data cityscapes``.

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

import numpy as np

from gsbench.data.labels import CITYSCAPES_CLASS_NAMES, CITYSCAPES_LABEL_TO_TRAIN, CITYSCAPES_LABELS
from gsbench.data.raw import RawDataset, RawSample, extract_zip, files_with_suffix
from gsbench.errors import GsbenchError

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


def _known_label_ids() -> np.ndarray:
    known = np.zeros(256, dtype=bool)
    known[[lab.id for lab in CITYSCAPES_LABELS if 0 <= lab.id < 256]] = True
    return known


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
    return RawDataset(
        name="cityscapes",
        class_names=CITYSCAPES_CLASS_NAMES,
        label_to_train=CITYSCAPES_LABEL_TO_TRAIN,
        known_label_ids=_known_label_ids(),
        samples=tuple(samples),
    )
