"""Speed of the metrics on one realistic 1024x2048 pair, on ONE core, against slow references
measured in the same run.

    python benchmarks/bench_metrics.py            # slow boundary reference on the full image, once
    python benchmarks/bench_metrics.py --quick    # slow reference on a 256x512 crop, x16 by area

Prints: boundary F (19 classes x radii 3/5/9/12) median time vs a skimage-style reference
(per class and radius: DAVIS boundary maps + scipy binary_dilation with a digital disk, as the
official GSCNN evaluation does), checking both give the same scores; confusion matrix median
time vs a naive np.unique-based count; and one full ``SegmentationMetrics.update``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/torch start their thread pools

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy.ndimage import binary_dilation  # noqa: E402

from gsbench.data.cityscapes import CITYSCAPES_CLASS_NAMES  # noqa: E402
from gsbench.metrics import SegmentationMetrics, boundary_fscore, confusion_matrix  # noqa: E402

NUM_CLASSES = 19
RADII = (3, 5, 9, 12)


def synthetic_pair(seed: int = 0, height: int = 1024, width: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """A street-like GT (smooth regions, thin poles, small objects, void border and ego band) and a
    prediction with wobbly boundaries, missed thin objects and 0.1 % salt noise."""
    rng = np.random.default_rng(seed)
    fields = rng.random((NUM_CLASSES, height // 64, width // 64)).astype(np.float32)
    fields = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in fields])
    gt = fields.argmax(0).astype(np.uint8)
    gt[: height // 3][gt[: height // 3] % 3 == 0] = 10  # sky on top
    gt[2 * height // 3 :][gt[2 * height // 3 :] % 2 == 0] = 0  # road at the bottom
    for _ in range(40):  # poles
        x, w = rng.integers(0, width), rng.integers(3, 9)
        top = rng.integers(0, height // 2)
        gt[top : top + rng.integers(100, 500), x : x + w] = 5
    for _ in range(60):  # signs, persons, cars
        y, x = rng.integers(0, height - 40), rng.integers(0, width - 80)
        h, w = rng.integers(10, 120), rng.integers(8, 200)
        gt[y : y + h, x : x + w] = rng.choice([6, 7, 11, 12, 13, 14, 17, 18])
    gt[-80:] = 255  # ego vehicle
    gt[:, :4] = 255  # rectification border
    wobble = rng.random((NUM_CLASSES, height // 16, width // 16)).astype(np.float32) * 0.2
    wobble = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in wobble])
    onehot = np.zeros((NUM_CLASSES, height, width), np.float32)
    valid = gt < NUM_CLASSES
    onehot[gt[valid], *np.nonzero(valid)] = 1.0
    blurred = np.stack([cv2.GaussianBlur(c, (0, 0), 3) for c in onehot])
    pred = (blurred + wobble).argmax(0).astype(np.uint8)
    noise = rng.random(gt.shape) < 0.001
    pred[noise] = rng.integers(0, NUM_CLASSES, int(noise.sum()))
    return pred, gt


def _seg2bmap(mask: np.ndarray) -> np.ndarray:
    east, south, south_east = np.zeros_like(mask), np.zeros_like(mask), np.zeros_like(mask)
    east[:, :-1], south[:-1, :], south_east[:-1, :-1] = mask[:, 1:], mask[1:, :], mask[1:, 1:]
    boundary = (mask ^ east) | (mask ^ south) | (mask ^ south_east)
    boundary[-1, :] = mask[-1, :] ^ east[-1, :]
    boundary[:, -1] = mask[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def slow_boundary_fscore(pred, gt, num_classes, radii, ignore_index=255) -> np.ndarray:
    """The official evaluation's way: per class and radius, dilate both boundary maps."""
    scores = np.zeros((num_classes, len(radii)))
    valid = gt != ignore_index
    for c in range(num_classes):
        pred_b, gt_b = _seg2bmap((pred == c) & valid), _seg2bmap((gt == c) & valid)
        n_pred, n_gt = pred_b.sum(), gt_b.sum()
        for i, radius in enumerate(radii):
            y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
            disk = x * x + y * y <= radius * radius
            if n_pred == 0 or n_gt == 0:
                p, r = (1.0 if n_pred == 0 else 0.0), (1.0 if n_gt == 0 else 0.0)
                p, r = (1.0, 1.0) if n_pred == n_gt == 0 else (p, r)
            else:
                p = (pred_b & binary_dilation(gt_b, disk)).sum() / n_pred
                r = (gt_b & binary_dilation(pred_b, disk)).sum() / n_gt
            scores[c, i] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return scores


def naive_confusion(pred, gt, num_classes, ignore_index=255) -> np.ndarray:
    """np.unique over gt * 256 + pred (the official evaluator's Python fallback)."""
    valid = gt != ignore_index
    encoded = gt[valid].astype(np.int64) * 256 + pred[valid]
    values, counts = np.unique(encoded, return_counts=True)
    matrix = np.zeros((num_classes, num_classes + 1), np.int64)
    np.add.at(matrix, (values // 256, np.minimum(values % 256, num_classes)), counts)
    return matrix


def median_time(function, repeats: int) -> tuple[float, float]:
    """Median (CPU seconds of this process, wall seconds). With one thread the CPU time is the
    cost on one free core; the wall time also counts waiting for a core on a busy machine."""
    cpu, wall = [], []
    for _ in range(repeats):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        function()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return statistics.median(cpu), statistics.median(wall)


def once(function) -> tuple[float, float]:
    return median_time(function, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="slow reference on a 256x512 crop, x16")
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    pred, gt = synthetic_pair()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, 1 thread used")
    print(f"pair: {gt.shape[0]}x{gt.shape[1]}, {np.mean(gt == 255):.1%} void, "
          f"pixel accuracy {np.mean(pred[gt != 255] == gt[gt != 255]):.1%}")

    fast = boundary_fscore(pred, gt, NUM_CLASSES, RADII)
    fast_cpu, fast_wall = median_time(lambda: boundary_fscore(pred, gt, NUM_CLASSES, RADII), args.repeats)
    if args.quick:
        crop = (slice(384, 640), slice(768, 1280))
        scale = gt.size / gt[crop].size
        result = {}
        slow_cpu, slow_wall = once(
            lambda: result.update(slow=slow_boundary_fscore(pred[crop], gt[crop], NUM_CLASSES, RADII))
        )
        slow_cpu, slow_wall = slow_cpu * scale, slow_wall * scale
        same = np.allclose(result["slow"], boundary_fscore(pred[crop], gt[crop], NUM_CLASSES, RADII).fscore, atol=1e-12)
        how = "256x512 crop once, x16 by area"
    else:
        result = {}
        slow_cpu, slow_wall = once(lambda: result.update(slow=slow_boundary_fscore(pred, gt, NUM_CLASSES, RADII)))
        same = np.allclose(result["slow"], fast.fscore, atol=1e-12)
        how = "full image once"
    print(f"boundary F 19x4: fast median {fast_cpu * 1e3:.1f} ms CPU ({fast_wall * 1e3:.1f} ms wall); "
          f"reference ({how}) {slow_cpu:.1f} s CPU ({slow_wall:.1f} s wall); "
          f"ratio {slow_cpu / fast_cpu:.0f}x CPU; same scores: {same}")
    print(f"  mean F (%) at radii {RADII}: {np.round(100 * fast.fscore.mean(0), 2).tolist()}")

    fast_cm = median_time(lambda: confusion_matrix(pred, gt, NUM_CLASSES), 4 * args.repeats)
    slow_cm = median_time(lambda: naive_confusion(pred, gt, NUM_CLASSES), 5)
    same_cm = np.array_equal(confusion_matrix(pred, gt, NUM_CLASSES), naive_confusion(pred, gt, NUM_CLASSES))
    print(f"confusion matrix: fast median {fast_cm[0] * 1e3:.1f} ms CPU ({fast_cm[1] * 1e3:.1f} ms wall); "
          f"np.unique reference {slow_cm[0] * 1e3:.1f} ms CPU ({slow_cm[1] * 1e3:.1f} ms wall); "
          f"ratio {slow_cm[0] / fast_cm[0]:.1f}x CPU; same counts: {same_cm}")

    def all_metrics() -> None:
        metrics = SegmentationMetrics(NUM_CLASSES, CITYSCAPES_CLASS_NAMES)
        metrics.update(pred, gt)

    all_cpu, all_wall = median_time(all_metrics, args.repeats)
    print(f"SegmentationMetrics.update (mIoU + boundary F 19x4 + 9 crops): median "
          f"{all_cpu * 1e3:.1f} ms CPU ({all_wall * 1e3:.1f} ms wall)")


if __name__ == "__main__":
    main()
