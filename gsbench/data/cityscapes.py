"""Reader of the raw Cityscapes layout (fine annotations), the input of ``prepare-data cityscapes``.

    leftImg8bit/{train,val,test}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/{train,val,test}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png   (+ _instanceIds.png)

or the two official archives ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``
(extracted into ``OUT/raw/``). The test split's gtFine files are dummies, so test images are
listed without ground truth (for test-server export only).
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
#: ``{city}_{seq:06d}_{frame:06d}``; city names are lower case, possibly with underscores.
STEM_PATTERN = re.compile(r"(?P<city>[a-z]+(?:_[a-z]+)*)_\d{6}_\d{6}")


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


def find_cityscapes(root: str | Path, out: str | Path, *, progress: bool = False) -> RawDataset:
    """Find and pair the raw Cityscapes files under ``root`` (extracting archives into ``out``).

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
        images = _city_files(_split_dir(images_dir, split), IMAGE_SUFFIX)
        if not images:
            raise GsbenchError(f"{images_dir / split}: no city folders with *{IMAGE_SUFFIX} files")
        labels = _city_files(_split_dir(gt_dir, split), LABEL_SUFFIX)
        instances = _city_files(gt_dir / split, INSTANCE_SUFFIX)
        if unpaired := sorted(images.keys() - labels.keys()):
            stem = unpaired[0]
            raise GsbenchError(f"{images[stem]}: image without its label {stem}{LABEL_SUFFIX}")
        if unpaired := sorted(labels.keys() - images.keys()):
            stem = unpaired[0]
            raise GsbenchError(f"{labels[stem]}: label without its image {stem}{IMAGE_SUFFIX}")
        for stem in sorted(images):
            city = labels[stem].parent.name
            if stem not in instances:
                raise GsbenchError(
                    f"{labels[stem]}: missing its instance file {stem}{INSTANCE_SUFFIX}"
                )
            samples.append(RawSample(
                split=split, stem=stem, image=images[stem], raw_label=labels[stem],
                instance=instances[stem],
                label_out=f"labels/{split}/{city}/{stem}_trainIds.png",
                edge_out=f"edges/{split}/{city}/{stem}_edge.png",
            ))
    test_dir = images_dir / TEST_SPLIT
    if test_dir.is_dir():
        for stem, path in sorted(_city_files(test_dir, IMAGE_SUFFIX).items()):
            samples.append(RawSample(split=TEST_SPLIT, stem=stem, image=path, raw_label=None,
                                     instance=None, label_out=None, edge_out=None))
    return RawDataset(
        name="cityscapes",
        class_names=CITYSCAPES_CLASS_NAMES,
        label_to_train=CITYSCAPES_LABEL_TO_TRAIN,
        known_label_ids=_known_label_ids(),
        samples=tuple(samples),
    )
