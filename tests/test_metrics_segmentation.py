"""SegmentationMetrics: the metrics.json schema, consistency with the parts, merge, state,
all_reduce across two torch.distributed processes, and clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gsbench.data.cityscapes import CITYSCAPES_CLASS_NAMES
from gsbench.errors import GsbenchError
from gsbench.metrics import BoundaryFScore, ConfusionMatrix, CropMIoU, SegmentationMetrics

NAMES = ("a", "b", "c", "d")
RADII = (1, 3)
FACTORS = (0, 50, 200)


def _pairs(seed: int, count: int, shape=(32, 64), num_classes=4):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        gt = np.repeat(rng.integers(0, num_classes - 1, (shape[0] // 8, shape[1] // 8)), 8, 0).repeat(8, 1)
        gt = gt.astype(np.uint8)
        gt[: shape[0] // 8] = 255
        # The last class appears nowhere (IoU undefined -> None in the JSON).
        pred = np.where(rng.random(shape) < 0.8, gt, rng.integers(0, num_classes - 1, shape)).astype(np.uint8)
        pairs.append((pred, gt))
    return pairs


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{key}/").items()}
    return {prefix: tree}


def assert_results_close(actual: dict, expected: dict) -> None:
    """Same keys and values; floats to 1e-12 relative (sums taken in another order)."""
    actual, expected = _flatten(actual), _flatten(expected)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert math.isclose(actual[key], value, rel_tol=1e-12), key
        else:
            assert actual[key] == value, key


def _metrics(**kwargs) -> SegmentationMetrics:
    options = {"radii": RADII, "crop_factors": FACTORS}
    options.update(kwargs)
    return SegmentationMetrics(4, NAMES, **options)


def test_schema_percent_and_consistency_with_parts():
    pairs = _pairs(0, 3)
    metrics = _metrics()
    confusion, boundary, crops = ConfusionMatrix(4), BoundaryFScore(4, RADII), CropMIoU(4, FACTORS)
    for pred, gt in pairs:
        metrics.update(pred, gt)
        confusion.update(pred, gt)
        boundary.update(pred, gt)
        crops.update(pred, gt)
    result = metrics.compute()
    json.dumps(result, allow_nan=False)  # valid JSON: nan became None
    assert list(result) == [
        "miou", "pixel_acc", "mean_acc", "per_class_iou", "boundary_f", "boundary_f_per_class",
        "crop_miou", "num_images", "fscore_convention", "radii",
    ]
    scores = confusion.compute()
    assert result["miou"] == 100 * scores["miou"]
    assert result["pixel_acc"] == 100 * scores["pixel_acc"]
    assert result["mean_acc"] == 100 * scores["mean_acc"]
    assert result["per_class_iou"]["d"] is None
    assert [result["per_class_iou"][n] for n in NAMES[:3]] == [100 * v for v in scores["per_class_iou"][:3]]
    assert result["boundary_f"] == {str(r): 100 * v for r, v in zip(RADII, boundary.compute()["mean"])}
    assert result["boundary_f_per_class"]["3"]["b"] == 100 * boundary.compute()["per_class"][1, 1]
    assert result["crop_miou"] == {k: 100 * v for k, v in crops.compute().items()}
    assert result["num_images"] == 3 and result["radii"] == [1, 3] and result["fscore_convention"] == "gscnn"


def test_parts_can_be_switched_off():
    metrics = _metrics(radii=(), crop_factors=())
    for pred, gt in _pairs(1, 2):
        metrics.update(pred, gt)
    result = metrics.compute()
    assert result["boundary_f"] == {} and result["boundary_f_per_class"] == {} and result["crop_miou"] == {}
    assert result["radii"] == [] and "iiou" not in result and result["num_images"] == 2
    assert set(metrics.state_dict()) == {"images", "confusion.matrix"}


def test_merge_and_state_dict_round_trip_equal_one_pass():
    pairs = _pairs(2, 5)
    whole, first, second = (_metrics(fscore_convention="strict") for _ in range(3))
    for i, (pred, gt) in enumerate(pairs):
        whole.update(pred, gt)
        (first if i < 2 else second).update(pred, gt)
    first.merge(second)
    assert_results_close(first.compute(), whole.compute())  # float sums in another order
    restored = _metrics(fscore_convention="strict")
    restored.load_state_dict({k: v.tolist() for k, v in whole.state_dict().items()})  # plain data ok
    assert restored.compute() == whole.compute()
    with pytest.raises(GsbenchError, match="state keys"):
        _metrics(radii=()).load_state_dict(whole.state_dict())
    with pytest.raises(GsbenchError, match="cannot merge"):
        whole.merge(_metrics(crop_factors=(0,)))


def test_instances_give_iiou_keys_and_flags_are_checked():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 19, (16, 32)).astype(np.uint8)
    instance = np.where(gt == 13, 26 * 1000 + 1, 7).astype(np.int32)  # one car instance
    metrics = SegmentationMetrics(19, CITYSCAPES_CLASS_NAMES, radii=(), crop_factors=(), with_instances=True)
    metrics.update(gt, gt, instance)
    result = metrics.compute()
    assert result["iiou"] == 100.0
    assert result["per_class_iiou"]["car"] == 100.0 and result["per_class_iiou"]["bus"] is None
    with pytest.raises(GsbenchError, match="no instance map"):
        metrics.update(gt, gt)
    with pytest.raises(GsbenchError, match=r"instance map shape \(2, 2\)"):
        metrics.update(gt, gt, np.zeros((2, 2), np.int32))
    with pytest.raises(GsbenchError, match="with_instances=True"):
        SegmentationMetrics(19, CITYSCAPES_CLASS_NAMES).update(gt, gt, instance)
    with pytest.raises(GsbenchError, match="19 Cityscapes classes"):
        SegmentationMetrics(4, NAMES, with_instances=True)


def test_bad_inputs_name_the_shapes_and_keys():
    metrics = _metrics()
    with pytest.raises(GsbenchError, match=r"\(32, 64\).*\(32, 60\)"):
        metrics.update(np.zeros((32, 64), np.uint8), np.zeros((32, 60), np.uint8))
    with pytest.raises(GsbenchError, match="3 class names"):
        SegmentationMetrics(4, NAMES[:3])
    with pytest.raises(GsbenchError, match="convention"):
        _metrics(fscore_convention="davis")
    with pytest.raises(GsbenchError, match="crop factor 460 leaves nothing of a 8x16"):
        _metrics(crop_factors=(0, 460)).update(np.zeros((8, 16), np.uint8), np.zeros((8, 16), np.uint8))


def _distributed_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        metrics = _metrics()
        for pred, gt in _pairs(4, 4)[rank::world_size]:
            metrics.update(pred, gt)
        metrics.all_reduce()
        if rank == 0:
            with open(out_file, "w") as f:
                json.dump(metrics.compute(), f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_over_two_processes_equals_one_process(tmp_path):
    torch_mp = pytest.importorskip("torch.multiprocessing")
    out_file = tmp_path / "metrics.json"
    torch_mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    single = _metrics()
    for pred, gt in _pairs(4, 4):
        single.update(pred, gt)
    assert_results_close(json.loads(out_file.read_text()), json.loads(json.dumps(single.compute())))
