"""Input checks and state plumbing shared by the metric accumulators."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gsbench.errors import GsbenchError


def check_num_classes(num_classes: int, ignore_index: int) -> None:
    if not 1 <= int(num_classes) <= 255:
        raise GsbenchError(f"num_classes must be in [1, 255] (uint8 trainIds), got {num_classes}")
    if not num_classes <= int(ignore_index) <= 255:
        raise GsbenchError(
            f"ignore_index must be in [num_classes, 255] = [{num_classes}, 255], got {ignore_index}"
        )


def as_label_map(array: np.ndarray, name: str) -> np.ndarray:
    """A 2-D uint8 trainId map. Other integer dtypes are converted: in a prediction a value
    outside [0, 255] becomes 255 (no class); in a ground truth it is an error."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise GsbenchError(f"{name} must be a 2-D label map, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise GsbenchError(f"{name} must hold integer trainIds, got dtype {array.dtype}")
    outside = (array < 0) | (array > 255)
    if name == "ground truth" and outside.any():
        raise GsbenchError(f"{name} holds value {int(array[outside][0])}, outside the uint8 range of trainIds")
    return np.where(outside, 255, array).astype(np.uint8)


def check_same_shape(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise GsbenchError(f"prediction shape {pred.shape} does not match ground truth shape {gt.shape}")


def load_arrays(target: dict[str, np.ndarray], state: Mapping[str, np.ndarray], owner: str) -> None:
    """Copy ``state`` into ``target`` in place, insisting on the same keys, shapes and kinds."""
    if set(state) != set(target):
        raise GsbenchError(
            f"{owner} state keys {sorted(state)} do not match the expected {sorted(target)}"
        )
    for key, current in target.items():
        value = np.asarray(state[key])
        if value.shape != current.shape:
            raise GsbenchError(
                f"{owner} state '{key}' has shape {value.shape}, expected {current.shape}"
            )
        target[key] = value.astype(current.dtype, copy=True)


def all_reduce_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Sum every array across torch.distributed processes, in place (no-op when not initialised)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    for key, value in arrays.items():
        tensor = torch.from_numpy(np.array(value, copy=True))
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        arrays[key] = tensor.numpy().reshape(value.shape).astype(value.dtype, copy=False)


class ArrayState:
    """Checkpoint and multi-process plumbing of an accumulator whose whole state is the numpy
    arrays in ``self._state`` (counts and sums, so merging processes is a sum)."""

    _state: dict[str, np.ndarray]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {key: value.copy() for key, value in self._state.items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        load_arrays(self._state, state, type(self).__name__)

    def all_reduce(self) -> None:
        all_reduce_arrays(self._state)
