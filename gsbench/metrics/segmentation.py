"""All evaluation metrics of the papers in one accumulator, producing the metrics.json schema."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from gsbench.data.cityscapes import CITYSCAPES_INSTANCE_TRAIN_IDS, CITYSCAPES_NUM_CLASSES
from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError
from gsbench.metrics._common import all_reduce_arrays, as_label_map, check_same_shape, load_arrays
from gsbench.metrics.boundary import CONVENTIONS, DEFAULT_RADII, BoundaryFScore
from gsbench.metrics.confusion import ConfusionMatrix
from gsbench.metrics.crops import DEFAULT_CROP_FACTORS, CropMIoU
from gsbench.metrics.instance import InstanceIoU


def _percent(value: float) -> float | None:
    """Score as a percentage; nan (undefined) becomes None so the result is valid JSON."""
    value = float(value)
    return None if math.isnan(value) else 100.0 * value


class SegmentationMetrics:
    """mIoU, pixel and mean accuracy, boundary F, crop mIoU and (optionally) iIoU together.

    ``update(pred, gt, instance=None)`` per image (uint8 trainIds, 255 = ignore in the GT;
    ``instance``: the raw Cityscapes instanceIds map, required iff ``with_instances``),
    ``merge`` across workers, ``all_reduce`` across torch.distributed processes, and
    ``compute()`` -> the metrics.json dict (scores in percent, nan -> None). ``radii=()`` or
    ``crop_factors=()`` switch those parts off (fast validation during training).
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str],
        radii: Iterable[int] = DEFAULT_RADII,
        crop_factors: Iterable[int] = DEFAULT_CROP_FACTORS,
        fscore_convention: str = "gscnn",
        with_instances: bool = False,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.class_names = tuple(class_names)
        if len(self.class_names) != num_classes:
            raise GsbenchError(f"{len(self.class_names)} class names given for {num_classes} classes")
        if fscore_convention not in CONVENTIONS:
            raise GsbenchError(f"fscore convention must be one of {CONVENTIONS}, got '{fscore_convention}'")
        if with_instances and num_classes != CITYSCAPES_NUM_CLASSES:
            raise GsbenchError(f"iIoU needs the 19 Cityscapes classes, got num_classes={num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.fscore_convention = fscore_convention
        self.with_instances = bool(with_instances)
        self.confusion = ConfusionMatrix(num_classes, ignore_index)
        radii = tuple(radii)
        crop_factors = tuple(crop_factors)
        self.boundary = BoundaryFScore(num_classes, radii, fscore_convention, ignore_index) if radii else None
        self.crops = CropMIoU(num_classes, crop_factors, ignore_index) if crop_factors else None
        self.instances = InstanceIoU(ignore_index) if with_instances else None
        self._state = {"images": np.zeros((), np.int64)}

    @property
    def radii(self) -> tuple[int, ...]:
        return self.boundary.radii if self.boundary else ()

    @property
    def crop_factors(self) -> tuple[int, ...]:
        return self.crops.factors if self.crops else ()

    def _parts(self) -> dict[str, object]:
        parts = {
            "confusion": self.confusion,
            "boundary": self.boundary,
            "crops": self.crops,
            "instances": self.instances,
        }
        return {name: part for name, part in parts.items() if part is not None}

    def update(self, pred: np.ndarray, gt: np.ndarray, instance: np.ndarray | None = None) -> None:
        pred = as_label_map(pred, "prediction")
        gt = as_label_map(gt, "ground truth")
        check_same_shape(pred, gt)
        if self.with_instances and instance is None:
            raise GsbenchError("iIoU was requested (with_instances=True) but no instance map was given")
        if instance is not None and not self.with_instances:
            raise GsbenchError("an instance map was given but iIoU is off (pass with_instances=True)")
        if instance is not None and np.shape(instance) != gt.shape:
            raise GsbenchError(f"instance map shape {np.shape(instance)} does not match ground truth shape {gt.shape}")
        # The crop rings' confusion matrices add up to the whole image's: one bincount for both.
        if self.crops is not None:
            matrix = self.crops.update(pred, gt)
            self.confusion.add(matrix)
        else:
            matrix = self.confusion.update(pred, gt)
        if self.boundary is not None:
            self.boundary.update(pred, gt)
        if self.instances is not None:
            self.instances.update(pred, gt, instance, matrix)
        self._state["images"] += 1

    def _check_compatible(self, other: SegmentationMetrics) -> None:
        mine = (self.num_classes, self.radii, self.crop_factors, self.with_instances, self.ignore_index)
        theirs = (other.num_classes, other.radii, other.crop_factors, other.with_instances, other.ignore_index)
        if mine != theirs:
            raise GsbenchError(
                "cannot merge metrics with (classes, radii, crop factors, instances, ignore) "
                f"{theirs} into {mine}"
            )

    def merge(self, other: SegmentationMetrics) -> None:
        self._check_compatible(other)
        for name, part in self._parts().items():
            part.merge(other._parts()[name])
        self._state["images"] += other._state["images"]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat dict of numpy arrays, keys ``part.name`` (e.g. ``confusion.matrix``)."""
        state = {"images": self._state["images"].copy()}
        for name, part in self._parts().items():
            state.update({f"{name}.{key}": value for key, value in part.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        expected = self.state_dict()
        if set(state) != set(expected):
            raise GsbenchError(f"metrics state keys {sorted(state)} do not match the expected {sorted(expected)}")
        for name, part in self._parts().items():
            prefix = f"{name}."
            part.load_state_dict({key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)})
        load_arrays(self._state, {"images": state["images"]}, "SegmentationMetrics")

    def all_reduce(self) -> None:
        """Sum the state across torch.distributed processes (no-op when not initialised)."""
        for part in self._parts().values():
            part.all_reduce()
        all_reduce_arrays(self._state)

    def compute(self) -> dict[str, object]:
        scores = self.confusion.compute()
        names = self.class_names
        result: dict[str, object] = {
            "miou": _percent(scores["miou"]),
            "pixel_acc": _percent(scores["pixel_acc"]),
            "mean_acc": _percent(scores["mean_acc"]),
            "per_class_iou": {name: _percent(v) for name, v in zip(names, scores["per_class_iou"])},
            "boundary_f": {},
            "boundary_f_per_class": {},
            "crop_miou": {},
        }
        if self.boundary is not None:
            boundary = self.boundary.compute()
            for i, radius in enumerate(self.radii):
                result["boundary_f"][str(radius)] = _percent(boundary["mean"][i])
                result["boundary_f_per_class"][str(radius)] = {
                    name: _percent(v) for name, v in zip(names, boundary["per_class"][:, i])
                }
        if self.crops is not None:
            result["crop_miou"] = {factor: _percent(v) for factor, v in self.crops.compute().items()}
        if self.instances is not None:
            instances = self.instances.compute()
            result["iiou"] = _percent(instances["iiou"])
            result["per_class_iiou"] = {
                names[train_id]: _percent(instances["per_class_iiou"][train_id])
                for train_id in CITYSCAPES_INSTANCE_TRAIN_IDS
            }
        result["num_images"] = int(self._state["images"])
        result["fscore_convention"] = self.fscore_convention
        result["radii"] = list(self.radii)
        return result
