"""Benchmark `gsbench eval --pred-dir`: every metric for 500 Cityscapes-sized pairs.

Generates 500 1024x2048 ground-truth / prediction pairs once (smooth random label maps with
curved region borders, ignore blobs and prediction errors along the borders), then times the
full :func:`gsbench.evaluation.pred_dir.evaluate_prediction_dir` call: file matching, PNG
decoding, mIoU, accuracies, boundary F at 3/5/9/12 px and crop mIoU at 0..400, in ``--workers``
processes.

Reference measured in the same run: the official Cityscapes evaluator
(``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling.evaluateImgLists``, mIoU only,
no iIoU) on the first ``--reference-images`` pairs written as labelIds, extrapolated linearly
to all pairs. gsbench is also run on that subset (labelId predictions) so the two mIoUs can be
compared, and gsbench's mIoU-only time on those same files is printed beside the official one.

    python benchmarks/bench_eval.py                    # 500 pairs, 2 workers
    python benchmarks/bench_eval.py --images 50 --cache bench-data   # keep the generated data
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from gsbench.data.cityscapes import CITYSCAPES_CLASS_NAMES, CITYSCAPES_TRAIN_TO_LABEL
from gsbench.data.manifest import Manifest, Sample
from gsbench.evaluation.pred_dir import evaluate_prediction_dir
from gsbench.io import write_png

CITIES = ("frankfurt", "lindau", "munster")


def stem_of(index: int) -> str:
    return f"{CITIES[index % 3]}_{index // 3:06d}_{(index * 37) % 1000:06d}"


def _smooth_field(rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A smooth random field in [0, 1): a coarse uniform grid, upsampled bicubically."""
    coarse = rng.random(cells).astype(np.float32)
    return cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def synthetic_pair(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(GT, prediction) trainId maps: regions from two quantised smooth fields; the prediction
    sees slightly perturbed fields (errors along borders) and some swapped regions."""
    rng = np.random.default_rng(seed)
    size = (height, width)
    coarse = (max(height // 256, 2), max(width // 256, 2))
    fine = (max(height // 32, 2), max(width // 32, 2))
    rows = _smooth_field(rng, coarse, size) + 0.15 * _smooth_field(rng, fine, size)
    cols = _smooth_field(rng, coarse, size)
    void = _smooth_field(rng, fine, size) > 0.9
    swapped = _smooth_field(rng, coarse, size) > 0.85
    wobble = 0.02 * (_smooth_field(rng, fine, size) - 0.5)

    def labels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        band_a = np.clip((a * 5).astype(np.int32), 0, 6)
        band_b = np.clip((b * 4).astype(np.int32), 0, 3)
        return ((band_a * 4 + band_b) % 19).astype(np.uint8)

    gt = labels(rows, cols)
    pred = labels(rows + wobble, cols - wobble)
    pred[swapped] = (pred[swapped] + 1) % 19
    gt[void] = 255
    return gt, pred


def _write_pair(job: tuple[int, int, int, str, str]) -> None:
    index, height, width, data_dir, pred_dir = job
    gt, pred = synthetic_pair(index, height, width)
    stem = stem_of(index)
    write_png(Path(data_dir) / "labels" / f"{stem}_trainIds.png", gt)
    write_png(Path(pred_dir) / f"{stem}_leftImg8bit.png", pred)


def generate(root: Path, images: int, reference_images: int, height: int, width: int, workers: int):
    """Write the prepared folder (labels + manifest), trainId predictions and the labelId
    copies of the reference subset; skipped when ``root`` already holds them."""
    data_dir, pred_dir = root / "data", root / "preds"
    ref_gt_dir, ref_pred_dir = root / "reference_gt", root / "reference_preds"
    samples = [
        Sample(stem=stem_of(i), image=f"images/{stem_of(i)}.png",
               label=f"labels/{stem_of(i)}_trainIds.png", edge=None, instance=None,
               height=height, width=width)
        for i in range(images)
    ]
    manifest = Manifest(dataset="cityscapes", num_classes=19,
                        class_names=list(CITYSCAPES_CLASS_NAMES), ignore_index=255,
                        splits={"val": samples, "subset": samples[:reference_images]}, root=data_dir)
    marker = root / f"complete-{images}-{reference_images}-{height}x{width}"
    if marker.exists():
        return data_dir, pred_dir, ref_gt_dir, ref_pred_dir
    jobs = [(i, height, width, str(data_dir), str(pred_dir)) for i in range(images)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_write_pair, jobs, chunksize=8)
    manifest.save()
    for i in range(reference_images):
        stem = stem_of(i)
        gt = cv2.imread(str(data_dir / "labels" / f"{stem}_trainIds.png"), cv2.IMREAD_UNCHANGED)
        pred = cv2.imread(str(pred_dir / f"{stem}_leftImg8bit.png"), cv2.IMREAD_UNCHANGED)
        # trainId 255 -> labelId 0 ("unlabeled", ignored by the official evaluator)
        write_png(ref_gt_dir / f"{stem}_gtFine_labelIds.png", CITYSCAPES_TRAIN_TO_LABEL[gt])
        write_png(ref_pred_dir / f"{stem}_gtFine_labelIds.png", CITYSCAPES_TRAIN_TO_LABEL[pred])
    marker.touch()
    return data_dir, pred_dir, ref_gt_dir, ref_pred_dir


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes): unlike wall
    time it does not grow when other programs compete for the cores."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def official_miou(pred_dir: Path, gt_dir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds, mIoU in percent) of the official evaluator on the pairs."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = official.args
    args.evalInstLevelScore = False  # its iIoU path calls np.in1d (gone in NumPy 2.4)
    args.JSONOutput = False
    args.quiet = True
    gts = sorted(str(p) for p in gt_dir.glob("*.png"))
    preds = [str(pred_dir / Path(g).name) for g in gts]
    start, cpu = time.perf_counter(), cpu_seconds()
    result = official.evaluateImgLists(preds, gts, args)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return seconds, cpu, 100 * float(result["averageScoreClasses"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reference-images", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the generated pairs in this folder (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gsbench-bench-eval-") as tmp:
        root = args.cache if args.cache is not None else Path(tmp)
        start = time.perf_counter()
        data_dir, pred_dir, ref_gt_dir, ref_pred_dir = generate(
            root, args.images, args.reference_images, args.height, args.width, args.workers
        )
        print(f"data: {args.images} pairs of {args.height}x{args.width} "
              f"ready in {time.perf_counter() - start:.1f} s")

        start, cpu = time.perf_counter(), cpu_seconds()
        metrics = evaluate_prediction_dir(pred_dir, data_dir, workers=args.workers)
        ours, ours_cpu = time.perf_counter() - start, cpu_seconds() - cpu

        ref_seconds, ref_cpu, ref_miou = official_miou(ref_pred_dir, ref_gt_dir)
        # Like for like: gsbench on the same labelId files, mIoU only, one process.
        start = time.perf_counter()
        subset = evaluate_prediction_dir(ref_pred_dir, data_dir, split="subset",
                                         pred_format="labelid", radii=(), crop_factors=(),
                                         workers=1)
        subset_seconds = time.perf_counter() - start
        load = os.getloadavg()[0]

    n, k = args.images, args.reference_images
    extrapolated = ref_seconds / k * n
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{multiprocessing.cpu_count()} cores, workers={args.workers}, "
          f"1-min load average at the end {load:.1f} (other processes slow both timings)")
    print(f"gsbench eval, all metrics (mIoU, acc, boundary F @ {metrics['radii']} px, "
          f"{len(metrics['crop_miou'])} crops), {n} pairs: {ours:.1f} s wall "
          f"({1000 * ours / n:.0f} ms/pair), {ours_cpu:.1f} s CPU ({1000 * ours_cpu / n:.0f} ms/pair)")
    print(f"official evaluator, mIoU only, {k} pairs: {ref_seconds:.2f} s wall "
          f"({1000 * ref_seconds / k:.0f} ms/pair, 1 process), {ref_cpu:.2f} s CPU "
          f"({1000 * ref_cpu / k:.0f} ms/pair) -> {extrapolated:.1f} s wall for {n} (extrapolated)")
    print(f"ratio gsbench all metrics / official mIoU only: wall {ours / extrapolated:.2f}, "
          f"CPU per pair {ours_cpu / n / (ref_cpu / k):.2f}")
    print(f"expected wall time on {args.workers} idle cores: {ours_cpu / args.workers:.0f} s "
          "(CPU time / workers)")
    print(f"mIoU only, same {k} labelId pairs, 1 process: gsbench {subset_seconds:.2f} s vs "
          f"official {ref_seconds:.2f} s (ratio {subset_seconds / ref_seconds:.2f})")
    print(f"mIoU on the {k}-pair subset: gsbench {subset['miou']:.6f}, official {ref_miou:.6f}")
    print(f"mIoU {metrics['miou']:.2f}, boundary F {metrics['boundary_f']}")


if __name__ == "__main__":
    main()
