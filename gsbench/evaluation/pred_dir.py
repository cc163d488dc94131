"""Score a folder of predicted label maps against a prepared dataset (``gsbench eval --pred-dir``).

The pipeline has three steps, each usable on its own:

1. :func:`match_prediction_files` pairs every prediction file with the sample whose stem appears
   in its file name (Cityscapes ``city_seq_frame``, ADE20K ``ADE_val_00000001``), so the naming
   of gsbench, mmsegmentation (``{stem}_leftImg8bit.png``) and the official Cityscapes tools
   (``{stem}_gtFine_labelIds.png``) all work, and refuses missing, duplicate, ambiguous and stray
   files with a one-line message.
2. :func:`read_prediction` and :func:`prediction_to_train_ids` bring a prediction into the
   gsbench convention (uint8 trainIds; everything that is not an evaluated class becomes 255,
   which the metrics count as a wrong prediction, exactly as the official Cityscapes evaluator
   does). Palette PNGs give their indices; ``labelid`` predictions go through the dataset's
   table (:func:`prediction_lut`).
3. :func:`accumulate_metrics` feeds the pairs to :class:`SegmentationMetrics` accumulators in
   worker processes and merges them; :func:`evaluate_prediction_dir` ties the three together.

The metrics computed (radii, crop factors, F convention) are :mod:`.metrics_config`'s, shared
with scoring a model.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gsbench.data.labels import IGNORE_INDEX
from gsbench.data.manifest import Manifest, Sample
from gsbench.data.registry import DATASETS
from gsbench.errors import GsbenchError
from gsbench.evaluation.metrics_config import MetricsConfig, check_fscore_convention, new_metrics
from gsbench.io import image_kind, png_header, png_size, read_label, read_label_indices
from gsbench.metrics.boundary import DEFAULT_RADII

PRED_FORMATS = ("trainid", "labelid")
#: Files with these suffixes are predictions; anything else in the folder (logs, JSON) is skipped.
IMAGE_SUFFIXES = frozenset(
    {".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".jpg", ".jpeg", ".webp"}
)
#: Images per unit of work. Fixed (not derived from the worker count) so that the accumulators
#: are merged in the same order whatever ``--workers`` is, which keeps float sums bit-identical.
CHUNK_SIZE = 4
#: How many file names an error message lists before summarising the rest.
_NAMES_IN_MESSAGE = 3

ProgressCallback = Callable[[int, int], None]
"""Called as ``on_progress(images_done, images_total)`` after each chunk of images is scored."""


@dataclass(frozen=True)
class PredictionPair:
    """One image to score: the prediction file and the ground-truth files of its sample."""

    stem: str
    prediction: Path
    label: Path
    instance: Path | None
    height: int | None = None  # the sample's size from the manifest, for the early size check
    width: int | None = None


# --- matching -----------------------------------------------------------------------------------
def _list_names(names: Sequence[str], more: int = 0) -> str:
    shown = ", ".join(names[:_NAMES_IN_MESSAGE])
    rest = len(names) - _NAMES_IN_MESSAGE + more
    return shown + (f" (and {rest} more)" if rest > 0 else "")


class StemFinder:
    """Finds which of a set of stems occur as substrings of a file name.

    A slice of the name is looked up for every stem length, so a name costs
    ``len(name) x distinct stem lengths`` dict lookups, independent of the number of stems
    (5000 files x 5000 stems takes well under a second). An occurrence lying inside a longer
    occurrence is dropped, so stem ``a_000001_000002`` does not also match ``ba_000001_000002``.
    """

    def __init__(self, stems: Iterable[str]):
        self._stems = frozenset(stems)
        if "" in self._stems:
            raise GsbenchError("the manifest has a sample with an empty stem")
        self._lengths = sorted({len(stem) for stem in self._stems}, reverse=True)

    def find(self, name: str) -> list[str]:
        spans: list[tuple[int, int, str]] = []
        for length in self._lengths:
            for start in range(len(name) - length + 1):
                piece = name[start : start + length]
                if piece in self._stems:
                    spans.append((start, start + length, piece))
        outermost = {
            stem for start, end, stem in spans
            if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans)
        }
        return sorted(outermost)


def list_prediction_files(pred_dir: str | os.PathLike) -> list[Path]:
    """Image files under ``pred_dir`` (recursively, skipping hidden files and folders), sorted."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise GsbenchError(f"{pred_dir}: no such folder of predictions")
    files = []
    for dirpath, dirnames, filenames in os.walk(pred_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if not filename.startswith(".") and Path(filename).suffix.lower() in IMAGE_SUFFIXES:
                files.append(Path(dirpath) / filename)
    return sorted(files)


def match_prediction_files(
    files: Sequence[Path], stems: Sequence[str], *, where: str = "the predictions"
) -> dict[str, Path]:
    """Map each stem to the one file whose name contains it.

    Raises :class:`GsbenchError` for a file matching two samples, two files for one sample,
    files matching no sample (named, the first few) and samples without a file. ``where``
    names the folder and split in the messages.
    """
    finder = StemFinder(stems)
    matched: dict[str, Path] = {}
    stray: list[str] = []
    for file in files:
        found = finder.find(file.name)
        if len(found) > 1:
            raise GsbenchError(
                f"{file}: file name matches {len(found)} samples ({', '.join(found)})"
            )
        if not found:
            stray.append(str(file))
            continue
        stem = found[0]
        if stem in matched:
            raise GsbenchError(f"two predictions for sample {stem}: {matched[stem]} and {file}")
        matched[stem] = file
    if stray:
        raise GsbenchError(
            f"{len(stray)} prediction file(s) in {where} match no sample: {_list_names(stray)}"
        )
    missing = [stem for stem in stems if stem not in matched]
    if missing:
        raise GsbenchError(
            f"no prediction for {len(missing)} of {len(stems)} samples in {where}: "
            f"{_list_names(missing)}"
        )
    return matched


def _has_ground_truth(manifest: Manifest, split: str, samples: Sequence[Sample]) -> None:
    unlabelled = [s.stem for s in samples if s.label is None]
    if unlabelled:
        raise GsbenchError(
            f"{manifest.root / 'manifest.json'}: split {split!r} has no ground truth for "
            f"{_list_names(unlabelled)}"
        )


def plan_prediction_dir(
    pred_dir: str | os.PathLike, manifest: Manifest, split: str = "val"
) -> list[PredictionPair]:
    """Pair every sample of ``split`` with its prediction file under ``pred_dir``.

    Instance maps are included only for a dataset whose description evaluates the iIoU
    (Cityscapes) and only when every sample of the split has one (iIoU needs all of them).
    """
    samples = manifest.split(split)
    if not samples:
        raise GsbenchError(f"{manifest.root / 'manifest.json'}: split {split!r} is empty")
    _has_ground_truth(manifest, split, samples)
    files = list_prediction_files(pred_dir)
    matched = match_prediction_files(
        files, [s.stem for s in samples], where=f"{pred_dir} (split {split!r})"
    )
    described = DATASETS.get(manifest.dataset)
    with_instances = described is not None and described.iiou and all(
        s.instance is not None for s in samples
    )
    return [
        PredictionPair(
            stem=s.stem,
            prediction=matched[s.stem],
            label=manifest.path(s.label),
            instance=manifest.path(s.instance) if with_instances else None,
            height=s.height,
            width=s.width,
        )
        for s in samples
    ]


def read_prediction(path: Path) -> np.ndarray:
    """A prediction as a 2-D label array; palette PNGs (mmsegmentation's Cityscapes
    ``format_only`` output: labelIds with the Cityscapes colours as palette) give their indices."""
    return read_label_indices(path)


def check_lossless(pairs: Sequence[PredictionPair]) -> None:
    """Refuse any prediction that is not a PNG file, told by its first bytes (not its name):
    JPEG's lossy compression changes labels along every region border (and a JPEG saved under
    a .png name is no better), and PNG is what the official tools and mmsegmentation write."""
    for pair in pairs:
        if png_header(pair.prediction) is None:
            try:
                kind = image_kind(pair.prediction)
            except OSError as exc:
                raise GsbenchError(f"{pair.prediction}: cannot be read ({exc.strerror})") from None
            what = f"a {kind} image" if kind not in (None, "PNG") else "not a PNG file"
            raise GsbenchError(
                f"{pair.prediction}: {what}; predictions must be lossless PNG label maps "
                "(lossy compression changes the labels)")


def check_prediction_sizes(pairs: Sequence[PredictionPair]) -> None:
    """Refuse a wrongly sized prediction before any scoring starts, from the PNG headers and
    the sizes in the manifest (the decoded images are checked against the GT again later)."""
    for pair in pairs:
        if pair.height is None or pair.width is None:
            continue
        size = png_size(pair.prediction)
        if size is not None and size != (pair.height, pair.width):
            raise GsbenchError(
                f"{pair.prediction}: prediction is {size[0]}x{size[1]} but sample {pair.stem} is "
                f"{pair.height}x{pair.width} (HxW)"
            )


# --- conversion ---------------------------------------------------------------------------------
def _train_id_lut(num_classes: int) -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[:num_classes] = np.arange(num_classes, dtype=np.uint8)
    return lut


def prediction_lut(pred_format: str, dataset: str, num_classes: int) -> np.ndarray:
    """The 256-entry table taking a prediction's values to trainIds, 255 for no class.

    ``trainid``: values ``>= num_classes`` become 255. ``labelid``: the dataset's raw ids,
    through its label table (:attr:`~gsbench.data.description.DatasetDescription.labels`); for
    Cityscapes, labelIds without a trainId (0 "unlabeled", 9 "parking", ...) become 255; for
    ADE20K, value v becomes v - 1 and 0 ("other") becomes 255; for COCO-Stuff 164k the map
    values id - 1, for COCO-Stuff 10k the ids of its ``S`` maps (0 = unlabeled). The metrics
    count 255 in a prediction as a wrong answer, never as ignore, as the official Cityscapes
    evaluator does.
    """
    if pred_format == "trainid":
        return _train_id_lut(num_classes)
    if pred_format == "labelid":
        if dataset not in DATASETS:
            raise GsbenchError(
                f"--pred-format labelid: no label-id table for dataset {dataset!r} "
                f"(known: {', '.join(DATASETS)})"
            )
        return DATASETS[dataset].labels.to_train
    raise GsbenchError(f"unknown --pred-format {pred_format!r} (use {' or '.join(PRED_FORMATS)})")


def prediction_to_train_ids(pred: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """A prediction as uint8 trainIds through ``lut`` (see :func:`prediction_lut`)."""
    if pred.dtype != np.uint8:
        # 16-bit PNGs: anything above 255 is no class in any format.
        pred = np.minimum(pred, IGNORE_INDEX).astype(np.uint8)
    return cv2.LUT(pred, lut)


#: More than this fraction of a prediction's pixels outside the evaluated classes means the
#: prediction is in the other --pred-format (or no label map at all).
UNFIT_FRACTION = 0.5


def check_format_fits(pair: PredictionPair, raw: np.ndarray, pred: np.ndarray,
                      pred_format: str, dataset: str, num_classes: int) -> None:
    """Stop when most pixels of a prediction (``raw`` as read, ``pred`` its trainIds) are no
    evaluated class under ``pred_format``: one line naming the other format and what it
    would give."""
    outside = np.count_nonzero(pred == IGNORE_INDEX) / pred.size
    if outside <= UNFIT_FRACTION:
        return
    other = next(f for f in PRED_FORMATS if f != pred_format)
    try:
        converted = prediction_to_train_ids(raw, prediction_lut(other, dataset, num_classes))
        share = np.count_nonzero(converted == IGNORE_INDEX) / pred.size
        hint = f"; as --pred-format {other} {share:.0%} would be"
    except GsbenchError:  # no label-id table for this dataset
        hint = ""
    raise GsbenchError(
        f"{pair.prediction}: {outside:.0%} of its pixels are no evaluated class as --pred-format "
        f"{pred_format}{hint}; are these {other} maps? (--pred-format {other})")


def load_pair(
    pair: PredictionPair, lut: np.ndarray, fit: tuple[str, str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read one pair as (prediction trainIds, ground-truth trainIds, instanceIds or None);
    ``fit`` = (pred_format, dataset, num_classes) checks the format fits
    (:func:`check_format_fits`)."""
    gt = read_label(pair.label)
    if gt.dtype != np.uint8:
        raise GsbenchError(f"{pair.label}: ground truth must be uint8 trainIds, got {gt.dtype}")
    pred = read_prediction(pair.prediction)
    if pred.shape != gt.shape:
        raise GsbenchError(
            f"{pair.prediction}: prediction is {pred.shape[0]}x{pred.shape[1]} but the ground "
            f"truth {pair.label.name} is {gt.shape[0]}x{gt.shape[1]} (HxW)"
        )
    instance = None
    if pair.instance is not None:
        instance = read_label(pair.instance)
        if instance.shape != gt.shape:
            raise GsbenchError(
                f"{pair.instance}: instance map is {instance.shape[0]}x{instance.shape[1]} but the "
                f"ground truth is {gt.shape[0]}x{gt.shape[1]} (HxW)"
            )
    train_ids = prediction_to_train_ids(pred, lut)
    if fit is not None:
        check_format_fits(pair, pred, train_ids, *fit)
    return train_ids, gt, instance


# --- accumulation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Chunk:
    config: MetricsConfig
    lut: np.ndarray
    pairs: tuple[PredictionPair, ...]
    fit: tuple[str, str, int] | None = None


def _score_chunk(chunk: _Chunk):
    metrics = new_metrics(chunk.config)
    for pair in chunk.pairs:
        pred, gt, instance = load_pair(pair, chunk.lut, chunk.fit)
        try:
            metrics.update(pred, gt, instance)
        except GsbenchError as exc:  # e.g. a GT value outside the classes: name the files
            raise GsbenchError(f"{pair.label} (prediction {pair.prediction.name}): {exc}") from None
    return metrics


def _init_worker() -> None:
    # One process per core already; nested OpenCV thread pools would only contend.
    cv2.setNumThreads(1)


#: Pairs below which scoring stays in this process. A worker is a fresh interpreter (spawn:
#: a fork could copy OpenCV's or PyTorch's thread pool half-alive and hang), about 0.3 s of CPU
#: to start; from 32 Cityscapes-sized pairs on (about 0.05 s each) the start-up is a small part
#: of each worker's share and the workers pay for themselves.
MIN_PAIRS_FOR_WORKERS = 32


def accumulate_metrics(
    pairs: Sequence[PredictionPair],
    config: MetricsConfig,
    lut: np.ndarray,
    *,
    workers: int = 2,
    on_progress: ProgressCallback | None = None,
    fit: tuple[str, str, int] | None = None,
):
    """Score ``pairs`` in ``workers`` processes and return the merged accumulator; ``lut``
    takes prediction values to trainIds (:func:`prediction_lut`); ``fit`` = (pred_format,
    dataset, num_classes) checks each prediction's format (:func:`check_format_fits`).

    The pairs are cut into fixed chunks of :data:`CHUNK_SIZE`, each scored into its own
    accumulator, and the chunk accumulators are merged in order, so the result is identical for
    any number of workers. Fewer than :data:`MIN_PAIRS_FOR_WORKERS` pairs are scored here; the
    workers are all gone when this returns, also after an error.
    """
    if workers < 1:
        raise GsbenchError(f"--workers must be at least 1, got {workers}")
    chunks = [
        _Chunk(config, lut, tuple(pairs[i : i + CHUNK_SIZE]), fit)
        for i in range(0, len(pairs), CHUNK_SIZE)
    ]
    total = new_metrics(config)
    done = 0
    if on_progress is not None:
        on_progress(0, len(pairs))

    def merge(part) -> None:
        nonlocal done
        total.merge(part)
        done += CHUNK_SIZE
        if on_progress is not None:
            on_progress(min(done, len(pairs)), len(pairs))

    if workers == 1 or len(pairs) < MIN_PAIRS_FOR_WORKERS:
        for chunk in chunks:
            merge(_score_chunk(chunk))
        return total

    tracker = resource_tracker._resource_tracker
    tracker_was_running = getattr(tracker, "_pid", None) is not None
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)), mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
    )
    try:
        futures: list[Future] = [pool.submit(_score_chunk, chunk) for chunk in chunks]
        for future in futures:
            merge(future.result())
    finally:
        # On an error (or Ctrl-C) drop the chunks not yet started instead of scoring them all.
        pool.shutdown(wait=True, cancel_futures=True)
        # The pool started multiprocessing's resource tracker, a process of its own that would
        # outlive this one and stay behind as a zombie where nothing reaps orphans: end and
        # reap it with the pool (unless something else in this process had started it).
        if not tracker_was_running and hasattr(tracker, "_stop"):
            tracker._stop()
    return total


def evaluate_prediction_dir(
    pred_dir: str | os.PathLike,
    data: str | os.PathLike,
    *,
    split: str = "val",
    pred_format: str = "trainid",
    radii: Sequence[int] = DEFAULT_RADII,
    crop_factors: Sequence[int] | None = None,
    fscore_convention: str = "gscnn",
    workers: int = 2,
    verify: bool = False,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """All metrics of the predictions in ``pred_dir`` on ``split`` of the prepared dataset
    ``data``, as the metrics.json dict (scores in percent) plus ``dataset`` and ``split``.

    ``radii=()`` skips boundary F, ``crop_factors=()`` the crops; ``crop_factors=None`` means
    :func:`~gsbench.evaluation.metrics_config.default_crop_factors` of the dataset. Before any
    scoring: every prediction must be a PNG (:func:`check_lossless`) of its sample's size, the
    radii and crops must fit the images, and with ``verify`` the ground truth must match the
    manifest's sha256 sums. A prediction whose pixels are mostly no class under
    ``pred_format`` stops the scoring (:func:`check_format_fits`)."""
    # Option checks before any file is read.
    if pred_format not in PRED_FORMATS:
        raise GsbenchError(
            f"unknown --pred-format {pred_format!r} (use {' or '.join(PRED_FORMATS)})"
        )
    check_fscore_convention(fscore_convention)
    manifest = Manifest.load(data)
    lut = prediction_lut(pred_format, manifest.dataset, manifest.num_classes)
    pairs = plan_prediction_dir(pred_dir, manifest, split)
    check_lossless(pairs)
    check_prediction_sizes(pairs)
    config = MetricsConfig.for_dataset(
        manifest, radii=radii, crop_factors=crop_factors, fscore_convention=fscore_convention,
        with_instances=pairs[0].instance is not None,
    )
    samples = manifest.split(split)
    config.check_image_sizes((s.height, s.width) for s in samples if s.height and s.width)
    if verify:  # the ground truth read (a sample's missing files are skipped)
        manifest.verify(samples, ("label", "instance"))
    metrics = accumulate_metrics(pairs, config, lut, workers=workers, on_progress=on_progress,
                                 fit=(pred_format, manifest.dataset, manifest.num_classes))
    return {"dataset": manifest.dataset, "split": split, **metrics.compute()}
