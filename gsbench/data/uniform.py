"""Class-uniform crop sampling, the training protocol of Gated-SCNN's Cityscapes test model.

Gated-SCNN (ICCV 2019), Sec. 4 "Cityscapes Benchmark": "We also use a uniform sampling scheme to
retrieve a 800x800 crop that uniformly samples from all classes". The scheme is the class-uniform
sampling of NVIDIA's semantic-segmentation code base, from which Gated-SCNN's code derives
(NVIDIA/semantic-segmentation ``datasets/uniform.py``: ``class_centroids_all`` and
``build_epoch``; the centroid crop of ``RandomCrop`` in ``transforms/joint_transforms.py``, the
same in nv-tlabs/GSCNN): in every epoch a fraction ``p`` of the samples (``class_uniform_pct``,
0.5 in their configs) is drawn class first - a class, then an image that contains it - and
cropped around that class; the others are ordinary random crops.

gsbench, for recipe key ``data.class_uniform = p`` and a training split of ``n`` images:

1. Index, once per split (:func:`build_class_index`): the pixel count of every class in every
   label map, one ``np.bincount`` per map (ignore, 255, and ids >= ``num_classes`` are not
   counted). A class is *present* when some image of the split has a pixel of it.
2. Epoch plan, from ``(seed, epoch)`` only (:func:`plan_epoch`): ``round(p * n)`` positions of
   the epoch, chosen at random, become class-uniform. Their classes are the present classes,
   each ``floor`` or ``ceil`` of ``round(p * n) / K`` times (``K`` present classes), in random
   order; the images of a class are drawn without replacement from the images that contain it,
   wrapping around when it needs more (NVIDIA's ``random_sampling``). Every other position loads
   its own image. The plan changes *what* a position loads, not the order of positions, so the
   sampler and exact resume are untouched, and every dataloader worker and torchrun process
   derives the same plan.
3. Crop (:func:`class_anchor`, then the crop transforms of :mod:`gsbench.data.transforms`): a
   uniformly random pixel of the class in the loaded label map is the anchor; the random scale
   and rotation move it with the image and the crop window is drawn among the windows that
   contain it, clamped into the image as NVIDIA's centroid crop.

Where gsbench deviates from NVIDIA's code, and why:

* Anchor. NVIDIA anchors on the centroid of a class within a 1024x1024 tile (two tiles per
  Cityscapes image; the tiles are there to cover classes that are spread out). The centroid of
  a non-convex region (road, sidewalk, a pole and its sign) can lie off the class, and an image
  smaller than a tile has no whole tile and so no anchor at all. A random pixel of the class
  always lies on it, so the crop contains the class (up to what the rotation and a down-scale
  can move out of a tiny region), and a spread-out class is covered because any of its pixels
  can be drawn.
* Counts. NVIDIA gives every one of the ``num_classes`` classes ``int(n * p / num_classes)``
  crops and skips absent classes, so the class-uniform share is below ``p`` (1,482 of 2,975
  Cityscapes images at 0.5) and an epoch is shorter when a class is absent. gsbench spreads
  exactly ``round(p * n)`` positions over the present classes and keeps ``n`` per epoch.
* Images of a class. NVIDIA draws among (image, tile) centroids, so an image that has the class
  in both tiles is twice as likely; gsbench draws among the images that contain the class.
* Window. NVIDIA draws the window start in ``[c - size, c]``, whose first value leaves the
  anchor one pixel outside; gsbench draws in ``[c - size + 1, c]``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsbench.data.manifest import MANIFEST_NAME, Manifest, Sample
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_bytes, read_label

#: Bump when the content or layout of the index changes, so that older cache files are not read.
INDEX_VERSION = 1
#: Cache files in a prepared folder: ``.class-pixels-<digest>.npy``.
CACHE_PREFIX = ".class-pixels-"


@dataclass(frozen=True, eq=False)
class ClassPixelIndex:
    """Pixels of every class in every image of a split: ``counts[i, c]`` (int64).

    ``cache`` is the file the index was read from or written to, or None when it lives in memory
    only (see :func:`build_class_index`)."""

    counts: np.ndarray
    cache: Path | None = None

    @property
    def present(self) -> np.ndarray:
        """The classes with at least one pixel in the split, ascending."""
        return np.flatnonzero(self.counts.sum(axis=0))

    def images_with(self, class_id: int) -> np.ndarray:
        """Indices of the images that have a pixel of ``class_id``, ascending."""
        return np.flatnonzero(self.counts[:, class_id])


@dataclass(frozen=True, eq=False)
class EpochPlan:
    """What each position of an epoch loads: ``images[i]`` is the sample index, ``classes[i]``
    the class its crop is centred on, or -1 for an ordinary random crop of its own image."""

    classes: np.ndarray
    images: np.ndarray


def class_pixel_counts(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels of each class ``0 .. num_classes-1`` in a uint8 trainId map (255 = ignore and any
    other id >= ``num_classes`` are not counted)."""
    return np.bincount(label.ravel(), minlength=256)[:num_classes].astype(np.int64)


def build_class_index(manifest: Manifest, split: str, threads: int = 4) -> ClassPixelIndex:
    """The :class:`ClassPixelIndex` of ``manifest``'s ``split``, computed once and cached.

    Caching: when the manifest was written by ``gsbench prepare-data`` (it has a ``prepare``
    section), its folder is gsbench's own output - never the user's raw data - and the index is
    stored there as ``.class-pixels-<digest>.npy``, written atomically. The digest is the sha256
    of ``manifest.json`` (which holds the size and modification time of every prepared label
    file), the split's label paths, the number of classes and :data:`INDEX_VERSION`, so a
    re-prepared label or another split gets its own file and a stale one is never read. A folder
    that cannot be written (a read-only shared copy) keeps the index in memory. A manifest not
    written by ``prepare-data`` may sit in a folder of the user's own, where gsbench writes
    nothing: the index is then computed in memory on every run. Samples without a label (a test
    split) count no pixels. Label maps are read with ``threads`` threads (OpenCV decodes without
    the GIL); the counting itself is one vectorised ``np.bincount`` per map.
    """
    samples = manifest.split(split)
    shape = (len(samples), manifest.num_classes)
    cache = _cache_file(manifest, split, samples)
    if cache is not None and cache.is_file():
        counts = _read_cache(cache, shape)
        if counts is not None:
            return ClassPixelIndex(counts, cache)

    def count(sample: Sample) -> np.ndarray:
        if sample.label is None:
            return np.zeros(manifest.num_classes, np.int64)
        path = manifest.path(sample.label)
        label = read_label(path)
        if label.dtype != np.uint8:
            raise GsbenchError(f"{path}: trainId labels must be uint8, got {label.dtype}")
        return class_pixel_counts(label, manifest.num_classes)

    with ThreadPoolExecutor(max_workers=max(1, min(threads, os.cpu_count() or 1))) as pool:
        rows = list(pool.map(count, samples))
    counts = np.stack(rows) if rows else np.zeros(shape, np.int64)
    if cache is not None:
        buffer = io.BytesIO()
        np.save(buffer, counts, allow_pickle=False)
        try:
            atomic_write_bytes(cache, buffer.getvalue())
        except OSError:  # a read-only prepared folder: the index stays in memory
            cache = None
    return ClassPixelIndex(counts, cache)


def plan_epoch(index: ClassPixelIndex, fraction: float, rng: np.random.Generator) -> EpochPlan:
    """The class-uniform plan of one epoch (see the module docstring, step 2)."""
    n = index.counts.shape[0]
    classes = np.full(n, -1, np.int64)
    images = np.arange(n, dtype=np.int64)
    present = index.present
    count = int(round(fraction * n))
    if count == 0 or present.size == 0:
        return EpochPlan(classes, images)
    positions = rng.permutation(n)[:count]
    rounds = -(-count // present.size)
    # one random order of the present classes per round: each class floor or ceil times
    drawn = rng.permuted(np.tile(present, (rounds, 1)), axis=1).ravel()[:count]
    classes[positions] = drawn
    for class_id in present:  # a loop over classes (at most a few hundred), not pixels
        slots = positions[drawn == class_id]
        if slots.size:
            candidates = index.images_with(class_id)
            order = rng.permutation(candidates.size)
            images[slots] = candidates[order[np.arange(slots.size) % candidates.size]]
    return EpochPlan(classes, images)


def class_anchor(label: np.ndarray, class_id: int, rng: np.random.Generator,
                 where: str | os.PathLike) -> tuple[int, int]:
    """A uniformly random pixel ``(row, col)`` of ``class_id`` in ``label`` (``where`` names the
    file in the error raised when the map has no such pixel)."""
    pixels = np.flatnonzero(label == class_id)
    if pixels.size == 0:
        raise GsbenchError(
            f"{where}: no pixel of class {class_id}, though the class-uniform index of its split "
            "counted some; the label changed after the index was built (re-run gsbench prepare-data)"
        )
    row, col = divmod(int(pixels[rng.integers(pixels.size)]), label.shape[1])
    return row, col


def _cache_file(manifest: Manifest, split: str, samples: list[Sample]) -> Path | None:
    """Where the index of ``split`` is cached, or None when the folder is not gsbench's own."""
    try:
        document = (manifest.root / MANIFEST_NAME).read_bytes()
        prepared = "prepare" in json.loads(document)
    except (OSError, ValueError, TypeError):
        return None
    if not prepared:
        return None
    digest = hashlib.sha256(document)
    key = {"version": INDEX_VERSION, "split": split, "num_classes": manifest.num_classes,
           "labels": [s.label for s in samples]}
    digest.update(json.dumps(key).encode("utf-8"))
    return manifest.root / f"{CACHE_PREFIX}{digest.hexdigest()[:32]}.npy"


def _read_cache(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached counts, or None when the file is unreadable or does not fit the split."""
    try:
        counts = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if counts.shape != shape or counts.dtype != np.int64 or (counts < 0).any():
        return None
    return counts
