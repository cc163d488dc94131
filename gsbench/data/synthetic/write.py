"""Writing the synthetic dataset: ``gsbench prepare-data synthetic --out DIR`` writes

    DIR/leftImg8bit/{train,val}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    DIR/gtFine/{split}/{city}/{stem}_gtFine_{labelIds,instanceIds,color}.png + _polygons.json

(or, with ``layout="ade20k"``, ``DIR/ADEChallengeData2016/{images,annotations}/...``), so that
the real-data code paths (prepare-data, training, evaluation) run on it unchanged.

Generation is deterministic: image ``index`` of ``split`` is rendered from its own random
generator seeded by ``(seed, split, index)``, so output bytes do not depend on the number of
worker processes.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gsbench.data.ade20k import ADE20K_CLASS_NAMES
from gsbench.data.cityscapes import CITYSCAPES_LABEL_BY_NAME, CITYSCAPES_LABELS
from gsbench.data.synthetic.render import render_scene
from gsbench.data.synthetic.scene import QUOTA_CLASSES
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_bytes, atomic_write_json, encode_png, read_json

# --- public constants ---------------------------------------------------------------------------

DEFAULT_SIZE = (256, 512)
DEFAULT_N_TRAIN = 32
DEFAULT_N_VAL = 8
DEFAULT_SEED = 0
MIN_SIZE = 64  # smallest height and width: below this the thin classes vanish
MAX_SIZE = 4096
LAYOUTS = ("cityscapes", "ade20k")
#: Marker written into an output folder; its presence allows regenerating into that folder.
MARKER_NAME = "gsbench-synthetic.json"
MARKER_FORMAT = "gsbench-synthetic/1"
#: The folders a synthetic output holds: the raw layouts and the prepared data.
GENERATED_FOLDERS = ("leftImg8bit", "gtFine", "ADEChallengeData2016", "gsbench")

TRAIN_CITIES = ("aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt",
                "hamburg", "hanover", "jena", "krefeld", "strasbourg", "stuttgart", "tubingen",
                "ulm", "weimar", "zurich")
VAL_CITIES = ("frankfurt", "lindau", "munster")
CITIES = {"train": TRAIN_CITIES, "val": VAL_CITIES}
#: Cityscapes numbers its annotated frames ..._000019 (the 20th frame of each 30-frame snippet).
ANNOTATED_FRAME = 19
SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}

#: Cityscapes label -> ADE20K SceneParsing-150 annotation value (1-based; 0 = "other").
#: ADE20K has no rider (a rider is a person there) and no train or rail track (-> other).
CITYSCAPES_TO_ADE20K_NAME = {
    "road": "road", "sidewalk": "sidewalk", "building": "building", "wall": "wall",
    "fence": "fence", "pole": "pole", "traffic light": "traffic light",
    "traffic sign": "signboard", "vegetation": "tree", "terrain": "grass", "sky": "sky",
    "person": "person", "rider": "person", "car": "car", "truck": "truck", "bus": "bus",
    "motorcycle": "minibike", "bicycle": "bicycle", "ground": "earth",
}


def _cityscapes_to_ade20k_lut() -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)
    for name, ade_name in CITYSCAPES_TO_ADE20K_NAME.items():
        lut[CITYSCAPES_LABEL_BY_NAME[name].id] = ADE20K_CLASS_NAMES.index(ade_name) + 1
    return lut


#: Cityscapes labelId -> ADE20K annotation value.
CITYSCAPES_ID_TO_ADE20K = _cityscapes_to_ade20k_lut()


def _label_colour_lut() -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, 3] = 255
    for label in CITYSCAPES_LABELS:
        if label.id >= 0:
            lut[label.id, :3] = label.color
    return lut


#: Cityscapes labelId -> official colour (RGBA, opaque: cityscapesscripts' json2labelImg writes
#: the ``_gtFine_color.png`` files as RGBA), for the ``_gtFine_color.png`` files.
CITYSCAPES_ID_TO_COLOR = _label_colour_lut()


def quota_classes(index: int, n_images: int) -> tuple[str, ...]:
    """The rarer classes image ``index`` of a split with ``n_images`` images must show:
    :data:`QUOTA_CLASSES` dealt round-robin, so the split as a whole shows all of them."""
    return tuple(name for j, name in enumerate(QUOTA_CLASSES) if j % n_images == index % n_images)


def image_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The random stream of one image: depends only on (seed, split, index)."""
    return np.random.SeedSequence([seed, _SPLIT_CODE[split], index])


def cityscapes_stem(split: str, index: int) -> tuple[str, str]:
    """(city, stem) of image ``index`` of ``split``: cities in turn, sequence numbers counting up."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_{ANNOTATED_FRAME:06d}"


def _encode_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise GsbenchError(f"could not encode an image of shape {rgb.shape} as JPEG")
    return buf.tobytes()


def _write_image(job: tuple) -> tuple[str, int, list[int]]:
    out, layout, split, index, n_split, seed, height, width = job
    out = Path(out)
    rng = np.random.default_rng(image_seed(seed, split, index))
    scene = render_scene(rng, height, width, required=quota_classes(index, n_split))
    if layout == "cityscapes":
        city, stem = cityscapes_stem(split, index)
        image_dir = out / "leftImg8bit" / split / city
        gt_dir = out / "gtFine" / split / city
        atomic_write_bytes(image_dir / f"{stem}_leftImg8bit.png", encode_png(scene.rgb))
        atomic_write_bytes(gt_dir / f"{stem}_gtFine_labelIds.png", encode_png(scene.label_ids))
        atomic_write_bytes(gt_dir / f"{stem}_gtFine_instanceIds.png", encode_png(scene.instance_ids))
        atomic_write_bytes(gt_dir / f"{stem}_gtFine_color.png",
                           encode_png(CITYSCAPES_ID_TO_COLOR[scene.label_ids]))
        atomic_write_json(gt_dir / f"{stem}_gtFine_polygons.json", {
            "imgHeight": height, "imgWidth": width,
            "objects": [dict(obj, id=i, deleted=0, verified=0, date="", user="gsbench-synthetic")
                        for i, obj in enumerate(scene.polygons)],
        })
    else:
        folder = {"train": "training", "val": "validation"}[split]
        stem = f"ADE_{split}_{index + 1:08d}"
        base = out / "ADEChallengeData2016"
        atomic_write_bytes(base / "images" / folder / f"{stem}.jpg", _encode_jpeg(scene.rgb))
        atomic_write_bytes(base / "annotations" / folder / f"{stem}.png",
                           encode_png(CITYSCAPES_ID_TO_ADE20K[scene.label_ids]))
    counts = np.bincount(scene.label_ids.ravel(), minlength=256)[:34]
    return split, index, counts.tolist()


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _run(jobs: list[tuple], workers: int) -> Iterator[tuple[str, int, list[int]]]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _write_image(job)
        return
    # forkserver: children do not inherit the parent's threads (torch, OpenCV) as fork would
    context = multiprocessing.get_context("forkserver")
    with context.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_write_image, jobs)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HEIGHTxWIDTH`` (e.g. ``256x512``) or raise a one-line GsbenchError."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise GsbenchError(f"--size {text!r}: expected HEIGHTxWIDTH, e.g. 256x512")
    height, width = (int(p) for p in parts)
    check_size((height, width))
    return height, width


def check_size(size: tuple[int, int]) -> None:
    height, width = size
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        raise GsbenchError(f"--size {height}x{width}: height and width must be between "
                           f"{MIN_SIZE} and {MAX_SIZE}")


def _claim_output(out: Path, settings: dict[str, Any]) -> None:
    """Make ``out`` ready for writing: an empty or new folder, or an earlier synthetic output
    (recognised by its marker file), whose generated sub-folders are removed first. Any of
    those names that is a symbolic link or not a folder is refused before anything changes:
    gsbench never deletes or writes through a link to data elsewhere."""
    if out.exists() and not out.is_dir():
        raise GsbenchError(f"{out}: exists and is not a folder")
    marker = out / MARKER_NAME
    if out.is_dir() and any(out.iterdir()):
        previous = read_json(marker) if marker.is_file() else None
        if not isinstance(previous, dict) or previous.get("format") != MARKER_FORMAT:
            raise GsbenchError(f"{out}: folder is not empty and is not a synthetic dataset "
                               f"(no {MARKER_NAME}); choose an empty or new --out")
        generated = [out / name for name in GENERATED_FOLDERS if os.path.lexists(out / name)]
        for path in generated:
            if path.is_symlink() or not path.is_dir():
                kind = "a symbolic link" if path.is_symlink() else "not a folder"
                raise GsbenchError(f"{path}: is {kind}, where gsbench writes a generated "
                                   f"folder; remove it or choose another --out")
        for path in generated:
            shutil.rmtree(path)
    # the marker goes first (complete: false), so an interrupted run can be regenerated in place
    atomic_write_json(marker, {"format": MARKER_FORMAT, **settings, "complete": False})


def generate_synthetic(
    out: str | os.PathLike,
    *,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    layout: str = "cityscapes",
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """Write a synthetic dataset in the raw Cityscapes (or ADE20K) layout into ``out``.

    Returns the raw dataset root to prepare: ``out`` for Cityscapes, ``out/ADEChallengeData2016``
    for ADE20K. Every split contains all 19 Cityscapes evaluation classes. The same arguments
    give byte-identical files whatever ``workers`` is.
    """
    if layout not in LAYOUTS:
        raise GsbenchError(f"--layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if n_train < 1:
        raise GsbenchError(f"--n-train {n_train}: need at least 1 training image")
    if n_val < 1:
        raise GsbenchError(f"--n-val {n_val}: need at least 1 validation image")
    if seed < 0:
        raise GsbenchError(f"--seed {seed}: must be >= 0")
    if workers < 1:
        raise GsbenchError(f"--workers {workers}: must be >= 1")
    height, width = (int(s) for s in size)
    check_size((height, width))
    out = Path(out).expanduser()
    settings = {"layout": layout, "n_train": n_train, "n_val": n_val,
                "size": [height, width], "seed": seed}
    _claim_output(out, settings)
    counts = {"train": n_train, "val": n_val}
    jobs = [(str(out), layout, split, i, counts[split], seed, height, width)
            for split in SPLITS for i in range(counts[split])]
    results = []
    with _progress_bar(progress, len(jobs), "synthetic images") as advance:
        for result in _run(jobs, workers):
            results.append(result)
            advance()
    pixels = {split: np.zeros(34, np.int64) for split in SPLITS}
    for split, _, class_counts in results:
        pixels[split] += np.asarray(class_counts, np.int64)
    atomic_write_json(out / MARKER_NAME, {
        "format": MARKER_FORMAT, **settings, "complete": True,
        "label_id_pixels": {split: pixels[split].tolist() for split in SPLITS},
    })
    return out if layout == "cityscapes" else out / "ADEChallengeData2016"


def prepare_synthetic(
    out: str | os.PathLike,
    *,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    layout: str = "cityscapes",
    workers: int = 2,
    progress: bool = True,
):
    """Generate the synthetic dataset into ``out`` and prepare it like the real one, leaving
    ready-to-train data in ``<raw root>/gsbench`` (see :func:`generate_synthetic`). Returns the
    :class:`~gsbench.data.manifest.Manifest` of the prepared data."""
    from gsbench.data.prepare import prepare_raw

    root = generate_synthetic(out, n_train=n_train, n_val=n_val, size=size, seed=seed,
                              layout=layout, workers=workers, progress=progress)
    # a layout is named after the dataset whose raw layout it writes
    return prepare_raw(layout, root, None, workers=workers, progress=progress).manifest


class _progress_bar:
    """A rich progress bar on stderr when asked for and stderr is a terminal; else silent."""

    def __init__(self, enabled: bool, total: int, description: str):
        self.enabled = enabled and sys.stderr.isatty()
        self.total, self.description = total, description
        self._progress = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        task = self._progress.add_task(self.description, total=self.total)
        return lambda: self._progress.advance(task)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
        return False
