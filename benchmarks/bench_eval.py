"""Benchmark evaluation: every metric of 500 Cityscapes-sized pairs, the cost of one pair phase by
phase, and test-time inference against its area bounds.

``pairs`` (the default): generates 500 1024x2048 ground-truth / prediction pairs once (smooth
random label maps with curved region borders, ignore blobs and prediction errors along the
borders), then times the full :func:`gsbench.evaluation.pred_dir.evaluate_prediction_dir` call:
file matching, PNG decoding, mIoU, accuracies, boundary F at 3/5/9/12 px and crop mIoU at
0..400, in ``--workers`` processes. Reference measured in the same run: the official Cityscapes
evaluator (``evaluateImgLists``, mIoU only, no iIoU) on the first ``--reference-images`` pairs
written as labelIds, extrapolated linearly to all pairs.

``phases``: the CPU time of one 1024x2048 pair on one core, phase by phase (PNG decoding of
the prediction, the ground truth and the 16-bit instanceIds, the trainId conversion, confusion
matrix + crops, boundary F, iIoU, and the whole pair as ``eval --pred-dir`` scores it), on
street-like pairs with Cityscapes instance maps (all 19 classes occur in each; ``--classes 16``
merges three of them into others). ``--before REV`` measures the gsbench of a git
revision in the same run: the two alternate, round by round, in fresh processes.

``inference``: CPU time of test-time inference of a smoke-size PSPNet (``--backbone resnet18``
for a real network's cost per pixel) on a 256x512 image against its area bounds: multi-scale + flip (0.5..1.75) against the forward passes of the same scaled
views, and against a single-scale pass times the summed scaled areas; sliding windows (64 x 64,
72 windows) against a whole-image pass times the area the windows cover. ``--before REV`` as for
``phases``.

    python benchmarks/bench_eval.py                         # 500 pairs, 2 workers
    python benchmarks/bench_eval.py pairs --images 50 --cache bench-data
    python benchmarks/bench_eval.py phases --before main    # this tree and main, interleaved
    python benchmarks/bench_eval.py phases --classes 16 --before main
    python benchmarks/bench_eval.py inference --before main
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy/torch start their thread pools

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from gsbench.data.cityscapes import CITYSCAPES_CLASS_NAMES, CITYSCAPES_TRAIN_TO_LABEL  # noqa: E402
from gsbench.data.manifest import Manifest, Sample  # noqa: E402
from gsbench.io import write_png  # noqa: E402

CITIES = ("frankfurt", "lindau", "munster")
REPO = Path(__file__).resolve().parent.parent


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


def official_miou(pred_dir: Path, gt_dir: Path) -> tuple[float, float, float]:
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


def run_pairs(args) -> None:
    from gsbench.evaluation.pred_dir import evaluate_prediction_dir

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


# --- one pair, phase by phase ----------------------------------------------------------------------
#: ``--classes 16``: train and motorcycle become car, terrain vegetation, so that 16 of the 19
#: classes occur (every street pair has all 19), for the cost of pairs with fewer classes.
MERGED_CLASSES = {16: 13, 17: 13, 9: 8}


def street_pair(seed: int, classes: int = 19) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, GT, instanceIds) of a street-like 1024x2048 scene: bench_metrics' pair, and
    the GT's compact objects of the 8 instance classes as instances (labelId * 1000 + k), the
    large regions of those classes left as groups (their labelId), as Cityscapes writes them.
    ``classes=16`` merges three classes into others first (:data:`MERGED_CLASSES`)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_metrics import synthetic_pair as street

    pred, gt = street(seed)
    if classes == 16:
        merge = np.arange(256, dtype=np.uint8)
        merge[list(MERGED_CLASSES)] = list(MERGED_CLASSES.values())
        pred, gt = merge[pred], merge[gt]
    label_ids = CITYSCAPES_TRAIN_TO_LABEL[gt].astype(np.uint16)
    instances = label_ids.copy()
    objects = (gt >= 11) & (gt <= 18)
    count, components, stats, _ = cv2.connectedComponentsWithStats(objects.view(np.uint8), 4)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < 40_000)
    small = small[small > 0]
    keep = np.isin(components, small)
    instances[keep] = label_ids[keep] * 1000 + (components[keep] % 1000).astype(np.uint16)
    return pred, gt, instances


def write_street_pairs(root: Path, count: int, classes: int = 19) -> list[tuple[Path, Path, Path]]:
    files = []
    for seed in range(count):
        paths = tuple(root / f"{seed}_{classes}_{name}.png" for name in ("pred", "gt", "instance"))
        if not all(p.exists() for p in paths):
            for path, array in zip(paths, street_pair(seed, classes)):
                write_png(path, array)
        files.append(paths)
    return files


def _phase_work(package: str) -> tuple[dict, object]:
    """The phases of one pair with the gsbench imported as ``package``: phase name -> function
    of (the pair's files, a state dict the phases pass on), and the state factory. Uses only
    names that every gsbench version since the metrics' first release has."""
    import importlib

    pred_dir = importlib.import_module(f"{package}.evaluation.pred_dir")
    read_label = importlib.import_module(f"{package}.io").read_label
    boundary = importlib.import_module(f"{package}.metrics.boundary")
    crops = importlib.import_module(f"{package}.metrics.crops")
    instance = importlib.import_module(f"{package}.metrics.instance")
    segmentation = importlib.import_module(f"{package}.metrics.segmentation")
    lut = pred_dir._train_id_lut(19)

    def state() -> dict:
        return {"crops": crops.CropMIoU(19), "boundary": boundary.BoundaryFScore(19),
                "instances": instance.InstanceIoU(),
                "metrics": segmentation.SegmentationMetrics(19, CITYSCAPES_CLASS_NAMES,
                                                            with_instances=True)}

    def whole_pair(files, s) -> None:
        pair = pred_dir.PredictionPair("s", *(Path(f) for f in files))
        s["metrics"].update(*pred_dir.load_pair(pair, lut))

    phases = {
        "decode prediction": lambda f, s: s.update(raw=pred_dir.read_prediction(Path(f[0]))),
        "decode ground truth": lambda f, s: s.update(gt=read_label(f[1])),
        "decode instanceIds (16-bit)": lambda f, s: s.update(instance=read_label(f[2])),
        "trainId conversion": lambda f, s: s.update(
            pred=pred_dir.prediction_to_train_ids(s["raw"], lut)),
        "confusion + 9 crops": lambda f, s: s.update(
            matrix=s["crops"].update(s["pred"], s["gt"])),
        "boundary F 19 x 4 radii": lambda f, s: s["boundary"].update(s["pred"], s["gt"]),
        "iIoU": lambda f, s: s["instances"].update(s["pred"], s["gt"], s["instance"],
                                                   s["matrix"]),
        "whole pair (decode + all metrics)": whole_pair,
    }
    return phases, state


def measure_phases(files: list[list[str]], repeats: int, packages: list[str]
                   ) -> dict[str, dict[str, float]]:
    """Median CPU milliseconds of each phase of one pair (one core) over pairs and repeats, per
    package; the packages take turns phase by phase, so that a busy machine slows them alike."""
    cv2.setNumThreads(1)
    work = {package: _phase_work(package) for package in packages}
    states = {package: make() for package, (_, make) in work.items()}
    times: dict[str, dict[str, list[float]]] = {package: {} for package in packages}
    for _ in range(repeats):
        for pair in files:
            for name in work[packages[0]][0]:
                for package in packages:
                    start = time.process_time()
                    work[package][0][name](pair, states[package])
                    times[package].setdefault(name, []).append(1e3 * (time.process_time() - start))
    return {package: {name: statistics.median(values) for name, values in phases.items()}
            for package, phases in times.items()}


def _version_tree(revision: str, folder: Path) -> Path:
    """The gsbench package of a git revision, extracted under ``folder`` as the package
    ``gsbench_before`` (its own imports renamed), to import beside this tree's gsbench."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "gsbench"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "gsbench_before"
    (folder / "gsbench").rename(package)
    for source in package.rglob("*.py"):
        text = re.sub(r"\b(from|import) gsbench\b", r"\1 gsbench_before",
                      source.read_text(encoding="utf-8"))
        text = re.sub(r"([\"'])gsbench\.", r"\1gsbench_before.", text)  # module names in strings
        source.write_text(text, encoding="utf-8")
    return folder


def _versions(args, mode: str, payload: dict) -> tuple[dict, dict | None]:
    """This tree's figures and, with ``--before REV``, the revision's: measured in one process
    per round (``--rounds``), the two taking turns; medians over the rounds."""
    with tempfile.TemporaryDirectory(prefix="gsbench-bench-versions-") as tmp:
        env = dict(os.environ)
        packages = ["gsbench"]
        if args.before:
            path = _version_tree(args.before, Path(tmp))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
            packages.append("gsbench_before")
        rounds = []
        for _ in range(args.rounds):
            done = subprocess.run(
                [sys.executable, __file__, f"_{mode}", json.dumps({**payload, "packages": packages})],
                check=True, capture_output=True, text=True, env=env)
            rounds.append(json.loads(done.stdout.strip().splitlines()[-1]))
    medians = {package: {key: statistics.median(r[package][key] for r in rounds)
                         for key in rounds[0][package]} for package in packages}
    return medians["gsbench"], medians.get("gsbench_before")


def _print_rows(after: dict, before: dict | None, unit: str = "ms") -> None:
    width = max(len(key) for key in after)
    for key, value in after.items():
        line = f"  {key:<{width}}  {value:8.1f} {unit}"
        if before is not None and key in before:
            line += f"   before {before[key]:8.1f} {unit}   ratio {value / before[key]:.2f}"
        print(line)


def run_phases(args) -> None:
    root = args.cache or Path(tempfile.mkdtemp(prefix="gsbench-bench-phases-"))
    files = [[str(p) for p in paths]
             for paths in write_street_pairs(root, args.pairs, args.classes)]
    after, before = _versions(args, "phases", {"files": files, "repeats": args.repeats})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"1 thread, 1-min load average {os.getloadavg()[0]:.1f}; CPU ms per 1024x2048 pair, "
          f"median of {args.pairs} pairs ({args.classes} classes) x {args.repeats} repeats x "
          f"{args.rounds} rounds"
          + (f"; before = {args.before}, in the same processes, taking turns" if before else ""))
    _print_rows(after, before)


# --- test-time inference against its area bounds ---------------------------------------------------
def _inference_work(package: str, batch: int | None, backbone: str) -> dict:
    """The timed calls of a smoke PSPNet (``backbone``) on a 256x512 image with the gsbench
    imported as ``package`` (before or after test protocols)."""
    import importlib

    import torch
    import torch.nn.functional as F

    inference = importlib.import_module(f"{package}.engine.inference")
    recipes = importlib.import_module(f"{package}.recipes")
    torch.manual_seed(0)
    recipe = recipes.load_recipe(REPO / "recipes" / "pspnet101-smoke.yaml",
                                 [f"model.backbone={backbone}"])
    with warnings.catch_warnings():  # random weights are what a speed measurement needs
        warnings.simplefilter("ignore")
        model = recipes.build_model_from_recipe(recipe, pretrained=None).eval()
    image = torch.randn(1, 3, 256, 512, generator=torch.Generator().manual_seed(0))

    def options(**values):
        try:
            protocol = importlib.import_module(f"{package}.protocol")
        except ImportError:  # before test protocols
            return inference.InferenceOptions(**values)
        return inference.InferenceOptions(protocol.TestProtocol(**values), batch=batch)

    single, msflip = options(), options(scales=SCALES, flip=True)
    slide = options(mode="slide", crop_size=(64, 64))
    views = [F.interpolate(image, size=(round(256 * s), round(512 * s)), mode="bilinear",
                           align_corners=False) for s in SCALES]
    windows = torch.cat([image[:, :, y:y + 64, x:x + 64]
                         for y in inference.window_starts(256, 64, 43)
                         for x in inference.window_starts(512, 64, 43)])

    def forward(images):
        with torch.no_grad():
            return model(images)["out"]

    return {
        "single scale, whole image": lambda: inference.infer(model, image, single),
        "forward of the image alone": lambda: forward(image),
        "ms + flip, whole image": lambda: inference.infer(model, image, msflip),
        "forward passes of its views alone": lambda: [forward(torch.cat([v, v.flip(-1)]))
                                                      for v in views],
        "slide 64x64 (72 windows)": lambda: inference.infer(model, image, slide),
        "forward of the 72 windows in one batch": lambda: forward(windows),
    }


SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def measure_inference(repeats: int, batch: int | None, backbone: str, packages: list[str]
                      ) -> dict[str, dict[str, float]]:
    """CPU ms of each timed call (median of ``repeats``, one thread) and the ratios to the
    area bounds, per package; the packages take turns call by call."""
    import importlib

    import torch

    # the heap settings of `gsbench eval` (one per process: the first package's)
    importlib.import_module(f"{packages[0]}.engine.memory").keep_freed_memory()
    torch.set_num_threads(1)
    work = {package: _inference_work(package, batch, backbone) for package in packages}
    for calls in work.values():
        for call in calls.values():
            call()  # warm-up
    times: dict[str, dict[str, list[float]]] = {p: {n: [] for n in work[p]} for p in packages}
    for _ in range(repeats):
        for name in work[packages[0]]:
            for package in packages:
                start = time.process_time()
                work[package][name]()
                times[package][name].append(1e3 * (time.process_time() - start))
    area = 2 * sum(s * s for s in SCALES)
    covered = 72 * 64 * 64 / (256 * 512)
    results = {}
    for package in packages:
        result = {name: statistics.median(values) for name, values in times[package].items()}
        whole = result["forward of the image alone"]
        result["ms + flip / forward passes of its views"] = \
            result["ms + flip, whole image"] / result["forward passes of its views alone"]
        result[f"ms + flip / (image forward x {area:.2f} areas)"] = \
            result["ms + flip, whole image"] / (whole * area)
        result[f"slide / (image forward x {covered:.2f} covered)"] = \
            result["slide 64x64 (72 windows)"] / (whole * covered)
        results[package] = result
    return results


def run_inference(args) -> None:
    after, before = _versions(args, "inference", {"repeats": args.repeats, "batch": args.batch,
                                                  "backbone": args.backbone})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"1 thread, 1-min load average {os.getloadavg()[0]:.1f}; pspnet101-smoke ({args.backbone}) "
          f"on 1x3x256x512, CPU ms, median of {args.repeats} repeats x {args.rounds} rounds"
          + (f"; before = {args.before}, in the same processes, taking turns" if before else ""))
    times = {k: v for k, v in after.items() if "/" not in k}
    _print_rows(times, None if before is None else {k: before[k] for k in times})
    for key, value in after.items():
        if "/" in key:
            print(f"  {key}: {value:.3f}" + (f" (before {before[key]:.3f})" if before else ""))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("_phases", "_inference"):  # a measuring process
        payload = json.loads(sys.argv[2])
        if sys.argv[1] == "_phases":
            result = measure_phases(payload["files"], payload["repeats"], payload["packages"])
        else:
            result = measure_inference(payload["repeats"], payload["batch"], payload["backbone"],
                                       payload["packages"])
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    pairs = commands.add_parser("pairs", help="500 pairs through evaluate_prediction_dir")
    for sub in (parser, pairs):
        sub.add_argument("--images", type=int, default=500)
        sub.add_argument("--height", type=int, default=1024)
        sub.add_argument("--width", type=int, default=2048)
        sub.add_argument("--workers", type=int, default=2)
        sub.add_argument("--reference-images", type=int, default=20)
        sub.add_argument("--cache", type=Path, default=None,
                         help="keep the generated pairs in this folder (default: a temporary one)")
    for name, helptext, repeats in (("phases", "one pair, phase by phase", 3),
                                    ("inference", "test-time inference against area bounds", 5)):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--before", default=None, help="a git revision measured in the same run")
        sub.add_argument("--rounds", type=int, default=3, help="processes, each measuring both")
        sub.add_argument("--repeats", type=int, default=repeats)
        if name == "phases":
            sub.add_argument("--pairs", type=int, default=4)
            sub.add_argument("--cache", type=Path, default=None)
            sub.add_argument("--classes", type=int, default=19, choices=(19, 16),
                             help="classes that occur in each pair (16: three merged away)")
        else:
            sub.add_argument("--batch", type=int, default=None, help="images per forward pass")
            sub.add_argument("--backbone", default="resnet_tiny",
                             help="the PSPNet's backbone (resnet18: a real network's cost)")
    args = parser.parse_args()
    {"phases": run_phases, "inference": run_inference}.get(args.command, run_pairs)(args)


if __name__ == "__main__":
    main()
